def split_evenly(items, parts):
    parts = min(parts, len(items))
    size, extra = divmod(len(items), parts)  # the first `extra` slices get one item more
    pieces, start = [], 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        pieces.append(items[start:stop])
        start = stop
    return pieces
