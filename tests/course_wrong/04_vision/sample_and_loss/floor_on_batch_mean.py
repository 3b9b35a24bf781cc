# The floor applied to the batch's mean KL instead of each frame's.
def sample_and_loss(vision, x, mu, logvar, eps):
    z = mu + torch.exp(0.5 * logvar) * eps
    r_loss = ((x - vision.decode(z)) ** 2).sum(dim=(1, 2, 3))
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(dim=1)
    return z, r_loss.mean() + kl.mean().clamp(min=0.5 * mu.shape[1])
