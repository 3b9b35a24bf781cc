def evaluate_on_cluster(client, run, settings, jobs):
    n = len(jobs)
    futures = client.map(nb.play_job, [run] * n, [settings] * n, [params for params, _ in jobs],
                         [seeds for _, seeds in jobs])  # one task per job, run by the workers
    return [np.asarray(scores) for scores in client.gather(futures)]  # the results, in the order of jobs
