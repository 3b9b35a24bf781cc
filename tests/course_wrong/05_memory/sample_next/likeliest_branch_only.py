# Every draw from the likeliest component (the argmax of the weights).
def sample_next(logpi, mu, logsigma, tau, n, rng):
    k = int(np.argmax(logpi))
    return mu[k] + np.exp(logsigma[k]) * np.sqrt(tau) * rng.standard_normal(n)
