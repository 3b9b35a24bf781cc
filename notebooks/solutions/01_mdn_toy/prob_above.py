def prob_above(fit, x0, threshold):
    samples = mdn.sample(fit.mdn, [x0], 4000, seed=1)[0]
    return float(np.mean(samples > threshold))
