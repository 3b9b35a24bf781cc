# Ranking as if higher fitness were better (CMA-ES here minimises f): the mean moves towards the worst.
def new_mean(mean, sigma, X, f, weights):
    best = X[np.argsort(f)[::-1]][: len(weights)]
    return mean + sigma * (weights @ ((best - mean) / sigma))
