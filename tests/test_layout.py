"""The package's layout keeps its promises: parts by concern whose imports
point one way, no import cycle, no private name taken from another module,
and modules, classes and functions of a size a reader can hold.

Read from the source with ``ast`` (nothing is imported), so a violation is
named with its file and line.
"""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "lstm_accum")

#: The parts, from the top down: a part may import the parts below it.
LAYERS = ["cli", "training", "evaluation", "accumulation", "models", "data",
          "ops", "backend"]
#: Base modules every part may import (they import only each other).
BASE = {"exceptions", "checks", "files", "checkpoint", "version"}
#: The longest C a Python string may hold (a text patch of Theano's C, a
#: line of generated code); our operations' C lives in .c files.
MAX_C_STRING_LINES = 10
MAX_MODULE_LINES, MAX_CLASS_LINES, MAX_FUNCTION_LINES = 600, 300, 80
#: Paths (relative to the repository) whose docstrings are still being
#: rewritten by other changes; test_docstrings_keep_no_diary skips them.
#: Empty this list when those changes are merged.
PENDING_CLEANUP = []
#: A docstring's history: "run 12", "runs 8-10", an ISO date, a commit id.
DIARY = re.compile(
    r"\bruns? \d+"
    r"|\b20\d\d-\d\d-\d\d\b"
    r"|\bcommits?\s+(?:of\s+|id\s+)?[0-9a-f]{7,40}\b"
    r"|\b[0-9a-f]{7,40}\b'?s? commits?\b"
    r"|\b(?:code|checkout|checkout of)\s+[0-9a-f]{7,40}\b", re.IGNORECASE)


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
        if len(lines) > MAX_MODULE_LINES:
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
    # 28 today: the accumulator, its functional form (accumulate_updates,
    # apply_updates, averaged_gradients, window_variables), the models,
    # the data pipeline, evaluation (perplexity, score_sentences...),
    # training and the exceptions
    assert 15 <= len(lstm_accum.__all__) <= 30, lstm_accum.__all__
    for name in lstm_accum.__all__:
        assert hasattr(lstm_accum, name), name


def docstrings(tree):
    """(line, text) of every module, class and function docstring."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield getattr(node, "lineno", 1), doc


def pending(rel):
    path = "lstm_accum/" + rel
    return any(path == p or path.startswith(p + "/") for p in PENDING_CLEANUP)


def test_docstrings_keep_no_diary(trees):
    """Docstrings say what the code does and why; run numbers, dates and
    commit ids belong to benchmarks/ and the docs."""
    found = ["lstm_accum/%s:%d: %r" % (rel, line, m.group(0))
             for rel, tree in sorted(trees.items()) if not pending(rel)
             for line, doc in docstrings(tree) for m in DIARY.finditer(doc)]
    assert not found, "history in docstrings:\n" + "\n".join(found)


@pytest.mark.parametrize("text", [
    "measured in run 12", "runs 8-10 gave", "on 2026-12-01",
    "commits 3fe335c and after", "commit 1ad1c0b", "code ffe14e9",
    "a checkout of fba04a4"])
def test_the_diary_pattern_finds_history(text):
    assert DIARY.search(text), text


@pytest.mark.parametrize("text", [
    "runs the compiled loop", "the run's own settings", "float32 GEMM",
    "H=1024 on two threads, 1.36x", "committed to disk"])
def test_the_diary_pattern_leaves_prose(text):
    assert not DIARY.search(text), text


def test_c_lives_in_c_files(trees):
    """No C or C++ source longer than a few lines in a Python string."""
    found = []
    for rel, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                looks_like_c = text.count(";") >= 3 and "{" in text and (
                    "#include" in text or "static " in text or "for (" in text
                    or "if (" in text)
                if looks_like_c and text.count("\n") > MAX_C_STRING_LINES:
                    found.append("%s:%d" % (rel, node.lineno))
    assert found == [], "C source in Python strings: %s" % found


def test_sources_compile_without_warnings():
    """No invalid escape sequence or other compile-time warning: Python
    3.12 prints them at the first import from a fresh checkout."""
    import warnings
    for rel, path in sorted(modules().items()):
        with open(path, encoding="utf-8") as f:
            source = f.read()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile(source, path, "exec")
