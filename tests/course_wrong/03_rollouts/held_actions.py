# A common mistake: a new random action every frame.
def held_actions(n, sample, rng, hold_min=1, hold_max=10):
    return [sample(rng) for _ in range(n)]
