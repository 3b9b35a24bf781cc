def training_length(rewards, patience=100, opening=50):
    losing = 0
    for t, r in enumerate(rewards):
        if t >= opening:
            losing = losing + 1 if r < 0 else 0
            if losing >= patience:
                return t + 1  # this frame was played
    return len(rewards)
