# The standard deviations of single episodes compared, not the standard errors of the means.
def clearly_better(a, b):
    return a["real_mean"] - b["real_mean"] > 2 * np.sqrt(a["real_std"] ** 2 + b["real_std"] ** 2)
