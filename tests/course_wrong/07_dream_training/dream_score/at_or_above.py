# Dead at a probability of exactly the threshold too (>= instead of >).
def dream_score(done_prob, threshold=0.5):
    over = np.flatnonzero(np.asarray(done_prob) >= threshold)
    return int(over[0]) + 1 if len(over) else len(done_prob)
