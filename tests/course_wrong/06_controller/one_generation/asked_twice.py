# The candidates asked for again at tell time: pycma is told the scores of candidates that never played.
def one_generation(es, agent, settings, cfg, generation):
    scores = run_jobs(agent, settings, generation_jobs(cfg, es.ask(), generation))
    fitness = np.array([s.mean() for s in scores])
    es.tell(es.ask(), (-fitness).tolist())
    return fitness
