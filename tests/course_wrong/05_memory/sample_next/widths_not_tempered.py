# The temperature applied to the weights only: the components keep their width.
def sample_next(logpi, mu, logsigma, tau, n, rng):
    weights = np.exp((logpi - logpi.max()) / tau)
    weights /= weights.sum()
    k = rng.choice(len(weights), size=n, p=weights)
    return mu[k] + np.exp(logsigma[k]) * rng.standard_normal(n)
