# sigma updated from the length of the old path, before this generation's step was added to it.
def step_size(es, y_w):
    inv_sqrt_C = es.B @ np.diag(1 / es.D) @ es.B.T
    p_sigma = (1 - es.c_sigma) * es.p_sigma + np.sqrt(es.c_sigma * (2 - es.c_sigma) * es.mu_eff) * (inv_sqrt_C @ y_w)
    growth = es.c_sigma / es.d_sigma * (np.linalg.norm(es.p_sigma) / es.chi_n - 1)
    return p_sigma, es.sigma * np.exp(min(1.0, growth))
