# Averaged over the dimensions (axis 1) instead of the frames: one number per frame.
def kl_per_dimension(mu, logvar):
    return (0.5 * (mu**2 + np.exp(logvar) - 1 - logvar)).mean(axis=1)
