# The whole generation sent as one task: one worker plays it all while the others wait.
def evaluate_on_cluster(client, run, settings, jobs):
    def play_all(jobs):
        return [nb.play_job(run, settings, params, seeds) for params, seeds in jobs]

    return client.submit(play_all, jobs).result()
