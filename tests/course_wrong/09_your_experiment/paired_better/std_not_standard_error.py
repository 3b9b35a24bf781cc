# The standard deviation of the differences, not the standard error of their mean (no division by sqrt(n)).
def paired_better(a, b):
    d = np.asarray(a, float) - np.asarray(b, float)
    return d.mean() > 2 * d.std()
