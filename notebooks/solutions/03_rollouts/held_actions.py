def held_actions(n, sample, rng, hold_min=1, hold_max=10):
    actions = []
    while len(actions) < n:
        action = sample(rng)
        hold = int(rng.integers(hold_min, hold_max + 1))  # 1 to 10 frames, each equally likely
        actions.extend([action] * hold)
    return actions[:n]
