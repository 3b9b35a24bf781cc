# The variance sigma^2 used where the standard deviation belongs.
def sample_mixture(pi, mu, sigma, n, rng):
    k = rng.choice(len(pi), size=n, p=pi)
    return mu[k] + sigma[k] ** 2 * rng.standard_normal(n)
