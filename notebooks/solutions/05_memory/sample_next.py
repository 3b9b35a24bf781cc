def sample_next(logpi, mu, logsigma, tau, n, rng):
    weights = np.exp((logpi - logpi.max()) / tau)  # pi'_k proportional to exp(log pi_k / tau)
    weights /= weights.sum()
    k = rng.choice(len(weights), size=n, p=weights)
    return mu[k] + np.exp(logsigma[k]) * np.sqrt(tau) * rng.standard_normal(n)
