# The best half averaged with equal weights, the recombination weights ignored.
def new_mean(mean, sigma, X, f, weights):
    best = X[np.argsort(f)][: len(weights)]
    return best.mean(axis=0)
