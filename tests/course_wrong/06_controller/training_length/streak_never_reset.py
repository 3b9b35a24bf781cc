# Negative frames counted in total after the opening, never reset by a tile.
def training_length(rewards, patience=100, opening=50):
    losing = 0
    for t, r in enumerate(rewards):
        if t >= opening and r < 0:
            losing += 1
            if losing >= patience:
                return t + 1
    return len(rewards)
