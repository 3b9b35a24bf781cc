# One hold length drawn once and used for every action.
def held_actions(n, sample, rng, hold_min=1, hold_max=10):
    hold = int(rng.integers(hold_min, hold_max + 1))
    actions = []
    while len(actions) < n:
        actions.extend([sample(rng)] * hold)
    return actions[:n]
