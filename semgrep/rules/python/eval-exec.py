import ast


def parse(text):
    # ruleid: chum.python.eval-exec
    return eval(text)


def run(code):
    # ruleid: chum.python.eval-exec
    exec(code, {})


def constant():
    # ok: chum.python.eval-exec
    return eval("1 + 1")


def safe(text):
    # ok: chum.python.eval-exec
    return ast.literal_eval(text)
