# The size of the difference tested, in either direction: a clearly worse row counts as clearly better.
def clearly_better(a, b):
    se = np.sqrt(a["real_std"] ** 2 / a["real_episodes"] + b["real_std"] ** 2 / b["real_episodes"])
    return abs(a["real_mean"] - b["real_mean"]) > 2 * se
