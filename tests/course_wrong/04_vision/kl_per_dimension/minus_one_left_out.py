# The "- 1" left out of the KL.
def kl_per_dimension(mu, logvar):
    return (0.5 * (mu**2 + np.exp(logvar) - logvar)).mean(axis=0)
