def new_mean(mean, sigma, X, f, weights):
    best = X[np.argsort(f)][: len(weights)]  # the best mu candidates, best first (lower f is better)
    steps = (best - mean) / sigma  # y_i = (x_i:lambda - m) / sigma
    return mean + sigma * (weights @ steps)  # Eqs. (41)-(42)
