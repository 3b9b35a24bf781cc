# Seeds made up on the spot (0, 1, ...) instead of the run's: the candidates play other tracks than training does.
def one_generation(es, agent, settings, cfg, generation):
    candidates = es.ask()
    jobs = [(np.asarray(c, np.float32), list(range(cfg.trials))) for c in candidates]
    fitness = np.array([s.mean() for s in run_jobs(agent, settings, jobs)])
    es.tell(candidates, (-fitness).tolist())
    return fitness
