# Only the components' own widths: the spread of their means forgotten.
def moments(logpi, mu, logsigma, tau):
    weights = np.exp((logpi - logpi.max()) / tau)
    weights /= weights.sum()
    sigma = np.exp(logsigma) * np.sqrt(tau)
    return np.sum(weights * mu), np.sqrt(np.sum(weights * sigma**2))
