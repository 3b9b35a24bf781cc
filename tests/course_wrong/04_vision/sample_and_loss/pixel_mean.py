# The squared error averaged over the pixels instead of summed: the reconstruction term becomes tiny.
def sample_and_loss(vision, x, mu, logvar, eps):
    z = mu + torch.exp(0.5 * logvar) * eps
    r_loss = ((x - vision.decode(z)) ** 2).mean(dim=(1, 2, 3))
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(dim=1)
    return z, (r_loss + kl.clamp(min=0.5 * mu.shape[1])).mean()
