# The steps whose probability is under the threshold counted, as if the dream went on after a death.
def dream_score(done_prob, threshold=0.5):
    return int(np.sum(np.asarray(done_prob) <= threshold))
