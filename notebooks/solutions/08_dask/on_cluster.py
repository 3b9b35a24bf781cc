def on_cluster(client, f, xs):
    futures = client.map(f, xs)  # one task per x, run by the workers
    return client.gather(futures)  # the results, in the order of xs
