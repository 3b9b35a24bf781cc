# The signed difference averaged: brighter and darker pixels cancel out.
def slider_effects(vision, z, span):
    effects = []
    for j in range(vision.z_dim):
        low, high = z.copy(), z.copy()
        low[j], high[j] = -span, span
        effects.append(abs((decode(vision, low).astype(float) - decode(vision, high).astype(float)).mean()))
    return np.array(effects)
