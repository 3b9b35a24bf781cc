# The opening zoom counted too: the losing streak starts at frame 0.
def training_length(rewards, patience=100, opening=50):
    losing = 0
    for t, r in enumerate(rewards):
        losing = losing + 1 if r < 0 else 0
        if losing >= patience:
            return t + 1
    return len(rewards)
