# A common mistake: equal weights for the best half.
def recombination_weights(popsize):
    mu = popsize // 2
    return np.full(mu, 1.0 / mu)
