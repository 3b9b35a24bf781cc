def one_generation(es, agent, settings, cfg, generation):
    candidates = es.ask()  # cfg.pop parameter vectors
    scores = run_jobs(agent, settings, generation_jobs(cfg, candidates, generation))  # every candidate plays
    fitness = np.array([s.mean() for s in scores])  # its mean score over its tracks
    es.tell(candidates, (-fitness).tolist())  # pycma minimises: the best score must be the lowest number
    return fitness
