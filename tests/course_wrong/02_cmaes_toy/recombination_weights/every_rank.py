# A weight for every rank, the worse half included (negative), normalised over all of them.
def recombination_weights(popsize):
    w = np.log((popsize + 1) / 2) - np.log(np.arange(1, popsize + 1))
    return w / w.sum()
