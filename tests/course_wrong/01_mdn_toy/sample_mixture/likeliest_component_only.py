# Every sample from the likeliest component only.
def sample_mixture(pi, mu, sigma, n, rng):
    k = int(np.argmax(pi))
    return mu[k] + sigma[k] * rng.standard_normal(n)
