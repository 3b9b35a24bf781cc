# The frame that completes the streak not counted as played.
def training_length(rewards, patience=100, opening=50):
    losing = 0
    for t, r in enumerate(rewards):
        if t >= opening:
            losing = losing + 1 if r < 0 else 0
            if losing >= patience:
                return t
    return len(rewards)
