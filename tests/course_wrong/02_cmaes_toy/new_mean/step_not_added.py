# The weighted step returned on its own, not added to the old mean.
def new_mean(mean, sigma, X, f, weights):
    best = X[np.argsort(f)][: len(weights)]
    return sigma * (weights @ ((best - mean) / sigma))
