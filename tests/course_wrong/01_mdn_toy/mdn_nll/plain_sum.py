# The mixture summed outside log space: exact for near points, -ln 0 = inf for a point far from every component.
def mdn_nll(log_pi, mu, sigma, y):
    y = y.reshape(-1, 1)
    density = torch.exp(-0.5 * ((y - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return -torch.log((log_pi.exp() * density).sum(dim=1)).mean()
