# The last hold not cut short: more than n actions.
def held_actions(n, sample, rng, hold_min=1, hold_max=10):
    actions = []
    while len(actions) < n:
        action = sample(rng)
        actions.extend([action] * int(rng.integers(hold_min, hold_max + 1)))
    return actions
