# A new random action every frame: the car shivers in place instead of driving.
def held_actions(n, sample, rng, hold_min=1, hold_max=10):
    return [sample(rng) for _ in range(n)]
