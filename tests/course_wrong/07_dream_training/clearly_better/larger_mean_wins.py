# The larger mean wins, however noisy.
def clearly_better(a, b):
    return a["real_mean"] > b["real_mean"]
