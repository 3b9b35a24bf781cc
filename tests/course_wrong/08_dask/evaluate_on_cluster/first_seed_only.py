# Only each job's first seed played.
def evaluate_on_cluster(client, run, settings, jobs):
    n = len(jobs)
    futures = client.map(nb.play_job, [run] * n, [settings] * n, [p for p, _ in jobs], [s[:1] for _, s in jobs])
    return client.gather(futures)
