# The temperature applied to the widths only: the weights stay softmax(logpi).
def moments(logpi, mu, logsigma, tau):
    weights = np.exp(logpi - logpi.max())
    weights /= weights.sum()
    sigma = np.exp(logsigma) * np.sqrt(tau)
    mean = np.sum(weights * mu)
    return mean, np.sqrt(np.sum(weights * (sigma**2 + mu**2)) - mean**2)
