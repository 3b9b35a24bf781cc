# rng.integers(hold_min, hold_max) never draws hold_max itself: holds of 1 to 9 frames.
def held_actions(n, sample, rng, hold_min=1, hold_max=10):
    actions = []
    while len(actions) < n:
        action = sample(rng)
        actions.extend([action] * int(rng.integers(hold_min, hold_max)))
    return actions[:n]
