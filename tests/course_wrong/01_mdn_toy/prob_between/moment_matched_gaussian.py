# Samples from one Gaussian with the mixture's mean and std: it puts probability into the gap between branches.
def prob_between(fit, x0, low, high):
    pi, mu, sigma = (a[0] for a in mdn.mixture_params(fit.mdn, [x0]))
    pi = pi / pi.sum()
    mean = np.sum(pi * mu)
    std = np.sqrt(np.sum(pi * (sigma**2 + mu**2)) - mean**2)
    samples = np.random.default_rng(1).normal(mean, std, 20_000)
    return float(np.mean((samples > low) & (samples < high)))
