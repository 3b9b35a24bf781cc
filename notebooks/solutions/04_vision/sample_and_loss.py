def sample_and_loss(vision, x, mu, logvar, eps):
    z = mu + torch.exp(0.5 * logvar) * eps  # sigma = exp(logvar / 2): the standard deviation
    x_hat = vision.decode(z)
    r_loss = ((x - x_hat) ** 2).sum(dim=(1, 2, 3))  # squared error, summed over 3 x 64 x 64 numbers per frame
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(dim=1)  # KL(N(mu, sigma^2) || N(0, I)) per frame
    return z, (r_loss + kl.clamp(min=0.5 * mu.shape[1])).mean()  # floored per frame, then the mean over frames
