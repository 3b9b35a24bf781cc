# One Gaussian with the mixture's mean and standard deviation: right moments, wrong shape (samples between branches).
def sample_mixture(pi, mu, sigma, n, rng):
    mean = np.sum(pi * mu)
    std = np.sqrt(np.sum(pi * (sigma**2 + mu**2)) - mean**2)
    return mean + std * rng.standard_normal(n)
