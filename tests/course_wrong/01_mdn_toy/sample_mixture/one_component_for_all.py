# One component drawn once, and all n samples taken from it.
def sample_mixture(pi, mu, sigma, n, rng):
    k = rng.choice(len(pi), p=pi)
    return mu[k] + sigma[k] * rng.standard_normal(n)
