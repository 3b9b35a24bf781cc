# The step that ends the dream not counted.
def dream_score(done_prob, threshold=0.5):
    over = np.flatnonzero(np.asarray(done_prob) > threshold)
    return int(over[0]) if len(over) else len(done_prob)
