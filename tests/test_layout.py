"""The package's layout keeps its promises: parts by concern whose imports
point one way, no import cycle, no private name taken from another module,
and modules, classes and functions of a size a reader can hold.

Read from the source with ``ast`` (nothing is imported), so a violation is
named with its file and line.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "lstm_accum")

#: The parts, from the top down: a part may import the parts below it.
LAYERS = ["cli", "training", "evaluation", "accumulation", "models", "data",
          "ops", "backend"]
#: Base modules every part may import (they import only each other).
BASE = {"exceptions", "checks", "files", "checkpoint", "version"}
#: Modules that are mostly C source in string templates.
C_TEMPLATES = {"ops/fused_lstm.py", "ops/softmax_nll.py"}
MAX_MODULE_LINES, MAX_CLASS_LINES, MAX_FUNCTION_LINES = 600, 300, 80


def modules():
    found = {}
    for dirpath, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, PACKAGE).replace(os.sep, "/")
                found[rel] = path
    return found


def dotted(rel):
    parts = rel[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ["lstm_accum"] + parts


def imports(rel, tree):
    """(line, imported module as a dotted list, names) of package imports."""
    here = dotted(rel)
    package = here if rel.endswith("__init__.py") else here[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "lstm_accum":
                target = node.module.split(".")
            else:
                continue
            names = [a.name for a in node.names]
            # "from . import x" imports the module x
            if not node.module:
                for n in names:
                    yield node.lineno, target + [n], []
            else:
                yield node.lineno, target, names
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "lstm_accum":
                    yield node.lineno, a.name.split("."), []


def part_of(mod):
    """The part ('cli', ..., 'base') of a dotted module name."""
    if len(mod) < 2:
        return "top"
    return "base" if mod[1] in BASE else mod[1]


def rank(part):
    return len(LAYERS) if part == "base" else LAYERS.index(part)


@pytest.fixture(scope="module")
def trees():
    return {rel: ast.parse(open(path, encoding="utf-8").read(), path)
            for rel, path in modules().items()}


def test_every_module_belongs_to_a_known_part(trees):
    for rel in trees:
        mod = dotted(rel)
        assert part_of(mod) in LAYERS + ["base", "top"], rel


def test_imports_point_down(trees):
    wrong = []
    for rel, tree in trees.items():
        me = part_of(dotted(rel))
        if me == "top":
            continue
        for line, target, _ in imports(rel, tree):
            other = part_of(target)
            if other == "top" and target == ["lstm_accum"]:
                other = "top"
            if other == me:
                continue
            if other == "top" or rank(other) < rank(me) or \
                    (me == "base" and other != "base"):
                wrong.append("%s:%d imports %s" % (rel, line,
                                                   ".".join(target)))
    assert not wrong, "imports that point up:\n" + "\n".join(wrong)


def test_no_import_cycle(trees):
    graph = {}
    known = {".".join(dotted(rel)) for rel in trees}
    for rel, tree in trees.items():
        edges = set()
        for _, target, _ in imports(rel, tree):
            name = ".".join(target)
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]   # from pkg.mod import name
            edges.add(name)
        me = ".".join(dotted(rel))
        edges.discard(me)
        graph[me] = edges
    # a package's __init__ importing its own modules is how it re-exports;
    # a module importing its own package's __init__ back would be a cycle
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue            # a package importing its own module
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: %s" % cycles


def test_no_private_names_across_modules(trees):
    wrong = []
    for rel, tree in trees.items():
        for line, target, names in imports(rel, tree):
            wrong.extend("%s:%d takes %s from %s" % (rel, line, n,
                                                     ".".join(target))
                         for n in names if n.startswith("_")
                         and n != "__version__")
    assert not wrong, "\n".join(wrong)


def code_lines(node, source_lines):
    """Lines of a definition that are neither blank, comments nor its
    docstring."""
    doc = ast.get_docstring(node, clean=False)
    first = node.body[0]
    skip = set()
    if doc is not None and isinstance(first, ast.Expr):
        skip = set(range(first.lineno, first.end_lineno + 1))
    count = 0
    for n in range(node.lineno, node.end_lineno + 1):
        text = source_lines[n - 1].strip()
        if text and not text.startswith("#") and n not in skip:
            count += 1
    return count


def test_sizes(trees):
    too_big = []
    for rel, tree in trees.items():
        lines = open(modules()[rel], encoding="utf-8").read().splitlines()
        if len(lines) > MAX_MODULE_LINES and rel not in C_TEMPLATES:
            too_big.append("%s: %d lines (module)" % (rel, len(lines)))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_CLASS_LINES:
                    too_big.append("%s:%d class %s: %d lines"
                                   % (rel, node.lineno, node.name, n))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = code_lines(node, lines)
                if n > MAX_FUNCTION_LINES:
                    too_big.append("%s:%d def %s: %d code lines"
                                   % (rel, node.lineno, node.name, n))
    assert not too_big, "\n".join(too_big)


def test_each_part_says_what_it_owns(trees):
    for part in LAYERS:
        doc = ast.get_docstring(trees[part + "/__init__.py"])
        assert doc and "TODO" not in doc and len(doc.split()) >= 25, part


def test_public_api_fits_a_screen():
    import lstm_accum
    # 26: score_sentences joined perplexity and sample_sentences, the
    # other ways to apply a trained model
    assert 15 <= len(lstm_accum.__all__) <= 26, lstm_accum.__all__
    for name in lstm_accum.__all__:
        assert hasattr(lstm_accum, name), name
