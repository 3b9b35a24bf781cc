# Only the likeliest component's samples: the other branches' probability is lost.
def prob_between(fit, x0, low, high):
    pi, mu, sigma = (a[0] for a in mdn.mixture_params(fit.mdn, [x0]))
    k = int(np.argmax(pi))
    samples = np.random.default_rng(1).normal(mu[k], sigma[k], 20_000)
    return float(np.mean((samples > low) & (samples < high)))
