# A common mistake: slices of the rounded-up size, which leave the last one short (10 in 4: 3, 3, 3, 1).
def split_evenly(items, parts):
    size = -(-len(items) // parts)
    return [items[i:i + size] for i in range(0, len(items), size)]
