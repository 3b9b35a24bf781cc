# The two standard errors added, instead of their squares (the variances of the means).
def clearly_better(a, b):
    se = a["real_std"] / np.sqrt(a["real_episodes"]) + b["real_std"] / np.sqrt(b["real_episodes"])
    return a["real_mean"] - b["real_mean"] > 2 * se
