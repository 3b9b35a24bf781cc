# Summed over the frames instead of averaged.
def kl_per_dimension(mu, logvar):
    return (0.5 * (mu**2 + np.exp(logvar) - 1 - logvar)).sum(axis=0)
