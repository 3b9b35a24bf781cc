def mdn_nll(log_pi, mu, sigma, y):
    y = y.reshape(-1, 1)  # a column, so that y_n meets all K components of row n
    log_normal = -0.5 * ((y - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)  # ln N(y | mu_k, sigma_k^2)
    return -torch.logsumexp(log_pi + log_normal, dim=1).mean()  # ln sum_k exp(ln pi_k + ln N_k), averaged over rows
