# The unpaired standard error: the episodes' own spread, which the pairing would cancel, counted in.
def paired_better(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    se = np.sqrt(a.std() ** 2 / len(a) + b.std() ** 2 / len(b))
    return a.mean() - b.mean() > 2 * se
