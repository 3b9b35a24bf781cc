# Equal weights for the best half: the best candidate pulls no harder than the worst selected one.
def recombination_weights(popsize):
    mu = popsize // 2
    return np.full(mu, 1.0 / mu)
