def moments(logpi, mu, logsigma, tau):
    weights = np.exp((logpi - logpi.max()) / tau)
    weights /= weights.sum()  # pi'
    sigma = np.exp(logsigma) * np.sqrt(tau)  # sigma'
    mean = np.sum(weights * mu)
    return mean, np.sqrt(np.sum(weights * (sigma**2 + mu**2)) - mean**2)
