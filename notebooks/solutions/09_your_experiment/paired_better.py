def paired_better(a, b):
    d = np.asarray(a, float) - np.asarray(b, float)  # episode by episode: the same seeds for both
    return d.mean() > 2 * d.std() / np.sqrt(len(d))  # the mean difference against its standard error
