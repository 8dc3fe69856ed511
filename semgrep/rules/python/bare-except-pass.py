def load(path):
    # ruleid: chum.python.bare-except-pass
    try:
        return open(path).read()
    except:
        pass


def load_or_none(path):
    # ok: chum.python.bare-except-pass
    try:
        return open(path).read()
    except FileNotFoundError:
        return None
