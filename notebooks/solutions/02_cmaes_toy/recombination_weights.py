def recombination_weights(popsize):
    mu = popsize // 2
    w = np.log((popsize + 1) / 2) - np.log(np.arange(1, mu + 1))  # Eq. (49) for the best mu ranks
    return w / w.sum()
