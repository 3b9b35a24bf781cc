def temper(pi, sigma, tau):
    logits = np.log(pi) / tau
    pi_tau = np.exp(logits - logits.max())  # subtracting the largest logit keeps exp() in range
    return pi_tau / pi_tau.sum(), sigma * np.sqrt(tau)
