# The logits multiplied by tau instead of divided: tau < 1 then evens the branches out.
def temper(pi, sigma, tau):
    logits = np.log(pi) * tau
    pi_tau = np.exp(logits - logits.max())
    return pi_tau / pi_tau.sum(), sigma * np.sqrt(tau)
