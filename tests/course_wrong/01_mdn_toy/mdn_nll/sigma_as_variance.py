# sigma taken for the variance: (y - mu)^2 / sigma and ln(sigma) / 2.
def mdn_nll(log_pi, mu, sigma, y):
    y = y.reshape(-1, 1)
    log_normal = -0.5 * (y - mu) ** 2 / sigma - 0.5 * torch.log(sigma) - 0.5 * math.log(2 * math.pi)
    return -torch.logsumexp(log_pi + log_normal, dim=1).mean()
