def sample_mixture(pi, mu, sigma, n, rng):
    k = rng.choice(len(pi), size=n, p=pi)  # a component for every sample, with probabilities pi
    return mu[k] + sigma[k] * rng.standard_normal(n)  # then a draw from that component
