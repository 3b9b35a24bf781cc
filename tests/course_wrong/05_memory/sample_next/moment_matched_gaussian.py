# One Gaussian with the tempered mixture's mean and standard deviation: right moments, wrong shape.
def sample_next(logpi, mu, logsigma, tau, n, rng):
    weights = np.exp((logpi - logpi.max()) / tau)
    weights /= weights.sum()
    sigma = np.exp(logsigma) * np.sqrt(tau)
    mean = np.sum(weights * mu)
    std = np.sqrt(np.sum(weights * (sigma**2 + mu**2)) - mean**2)
    return mean + std * rng.standard_normal(n)
