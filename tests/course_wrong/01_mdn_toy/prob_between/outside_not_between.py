# The fraction outside the interval instead of inside.
def prob_between(fit, x0, low, high):
    samples = mdn.sample(fit.mdn, [x0], 20_000, seed=1)[0]
    return float(np.mean((samples < low) | (samples > high)))
