# Only one side of the sweep: z_j moved to +span and compared with the starting picture.
def slider_effects(vision, z, span):
    start = decode(vision, z).astype(float)
    effects = []
    for j in range(vision.z_dim):
        high = z.copy()
        high[j] = span
        effects.append(np.abs(decode(vision, high).astype(float) - start).mean())
    return np.array(effects)
