# The points' losses summed instead of averaged.
def mdn_nll(log_pi, mu, sigma, y):
    y = y.reshape(-1, 1)
    log_normal = -0.5 * ((y - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
    return -torch.logsumexp(log_pi + log_normal, dim=1).sum()
