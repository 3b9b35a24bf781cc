# A common mistake: the work done in this process (right values, but nothing ran on the cluster).
def on_cluster(client, f, xs):
    return [f(x) for x in xs]
