# exp(logvar) taken for the standard deviation: that is the variance.
def sample_and_loss(vision, x, mu, logvar, eps):
    z = mu + torch.exp(logvar) * eps
    r_loss = ((x - vision.decode(z)) ** 2).sum(dim=(1, 2, 3))
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(dim=1)
    return z, (r_loss + kl.clamp(min=0.5 * mu.shape[1])).mean()
