# ruleid: chum.python.mutable-default-arg
def append(item, items=[]):
    items.append(item)
    return items


# ruleid: chum.python.mutable-default-arg
def tally(word, counts={}):
    counts[word] = counts.get(word, 0) + 1
    return counts


# ok: chum.python.mutable-default-arg
def append_safely(item, items=None):
    items = [] if items is None else items
    items.append(item)
    return items
