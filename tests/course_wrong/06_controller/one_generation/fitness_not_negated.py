# The scores told to pycma as they are: pycma minimises, so the search moves towards the worst drivers.
def one_generation(es, agent, settings, cfg, generation):
    candidates = es.ask()
    scores = run_jobs(agent, settings, generation_jobs(cfg, candidates, generation))
    fitness = np.array([s.mean() for s in scores])
    es.tell(candidates, fitness.tolist())
    return fitness
