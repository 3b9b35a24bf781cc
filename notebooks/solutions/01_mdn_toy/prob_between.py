def prob_between(fit, x0, low, high):
    samples = mdn.sample(fit.mdn, [x0], 20_000, seed=1)[0]  # 20,000 draws of y at x0 from the whole mixture
    return float(np.mean((samples > low) & (samples < high)))
