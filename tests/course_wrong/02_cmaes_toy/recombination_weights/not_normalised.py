# The preliminary weights of Eq. (49), not normalised to sum to 1.
def recombination_weights(popsize):
    mu = popsize // 2
    return np.log((popsize + 1) / 2) - np.log(np.arange(1, mu + 1))
