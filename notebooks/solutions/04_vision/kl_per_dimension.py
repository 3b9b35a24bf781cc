def kl_per_dimension(mu, logvar):
    kl = 0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar)  # (frames, N_z): KL(N(mu, sigma^2) || N(0, 1)) per number
    return kl.mean(axis=0)
