# sigma = exp(logvar / 2) where sigma^2 = exp(logvar) belongs.
def kl_per_dimension(mu, logvar):
    return (0.5 * (mu**2 + np.exp(0.5 * logvar) - 1 - logvar)).mean(axis=0)
