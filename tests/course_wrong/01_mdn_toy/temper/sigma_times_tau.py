# The standard deviations scaled by tau instead of sqrt(tau).
def temper(pi, sigma, tau):
    logits = np.log(pi) / tau
    pi_tau = np.exp(logits - logits.max())
    return pi_tau / pi_tau.sum(), sigma * tau
