# The widths scaled by tau instead of sqrt(tau).
def moments(logpi, mu, logsigma, tau):
    weights = np.exp((logpi - logpi.max()) / tau)
    weights /= weights.sum()
    sigma = np.exp(logsigma) * tau
    mean = np.sum(weights * mu)
    return mean, np.sqrt(np.sum(weights * (sigma**2 + mu**2)) - mean**2)
