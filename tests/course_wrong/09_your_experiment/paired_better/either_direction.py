# The size of the mean difference tested in either direction: a clearly worse controller counts as better.
def paired_better(a, b):
    d = np.asarray(a, float) - np.asarray(b, float)
    return abs(d.mean()) > 2 * d.std() / np.sqrt(len(d))
