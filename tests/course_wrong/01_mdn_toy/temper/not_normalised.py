# The tempered weights not normalised: they no longer sum to 1.
def temper(pi, sigma, tau):
    return np.exp(np.log(pi) / tau), sigma * np.sqrt(tau)
