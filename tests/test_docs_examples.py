"""Every Python example of README.md and docs/*.rst runs, as written.

The Python blocks of a page (Markdown fences whose language starts with
``py``; reStructuredText ``code-block``/``code``/``sourcecode`` directives
in a Python language) run in order, in one namespace per page, in an empty
temporary directory, like a reader pasting them into one session. A block
that is not meant to run is marked on the line before it -- ``<!--
example: no-run -->`` in Markdown, ``.. example: no-run`` in
reStructuredText -- and such blocks are rare (``MAX_NO_RUN``). The
examples use tiny sizes and write their own small files: no network, no
corpus download.
"""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_RUN = "example: no-run"
#: At most this many blocks may be marked no-run, over all pages.
MAX_NO_RUN = 3

_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
_DIRECTIVE = re.compile(r"^(\s*)\.\. (?:code-block|code|sourcecode)::\s*(\S*)")


def _is_python(language):
    return language.lower().startswith("py")


def _marked(lines, i):
    """Whether the last non-blank line before line ``i`` is the marker."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    return j >= 0 and NO_RUN in lines[j]


def markdown_blocks(text):
    """``(line, code, runs)`` of the Python fences of a Markdown text."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, language, start = m.group(1), m.group(2), i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        if _is_python(language):
            yield start + 2, "\n".join(body) + "\n", not _marked(lines, start)


def rst_blocks(text):
    """``(line, code, runs)`` of the Python code directives of a
    reStructuredText text."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        m = _DIRECTIVE.match(line)
        if not m or not _is_python(m.group(2) or "python"):
            continue
        indent = len(m.group(1))
        i = start + 1
        # the directive's options (":linenos:" ...), then a blank line
        while i < len(lines) and lines[i].strip().startswith(":"):
            i += 1
        first = None
        while i < len(lines):
            here = lines[i]
            if here.strip() and len(here) - len(here.lstrip()) <= indent:
                break
            if here.strip() and first is None:
                first = i
            i += 1
        if first is None:
            continue
        # dedent by the first code line's indentation
        width = len(lines[first]) - len(lines[first].lstrip())
        code = "\n".join(x[width:] for x in lines[first:i]).rstrip() + "\n"
        yield first + 1, code, not _marked(lines, start)


def blocks(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return list((markdown_blocks if path.endswith(".md") else rst_blocks)(
        text))


def run_page(path, page_blocks):
    """Run the page's blocks in order in one namespace; a traceback names
    the page (``path``) and its line."""
    namespace = {"__name__": "__docs_example__"}
    for line, code, runs in page_blocks:
        if not runs:
            continue
        # pad so that a traceback's line numbers are the page's
        source = "\n" * (line - 1) + code
        exec(compile(source, path, "exec"), namespace)


def pages():
    found = [os.path.join(ROOT, "README.md")]
    found += sorted(glob.glob(os.path.join(ROOT, "docs", "*.rst")))
    return found


def _rel(path):
    return os.path.relpath(path, ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("path", pages(), ids=_rel)
def test_page_examples_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_page(path, blocks(path))


def test_the_examples_are_there():
    """The README shows the accumulator, the functional form and the
    composition with a Lasagne rule; the docs' pages hold examples too; and
    few blocks are excused from running."""
    readme = [code for _, code, runs in blocks(pages()[0]) if runs]
    assert len(readme) >= 3, readme
    joined = "".join(readme)
    for name in ("GradientAccumulator(", "accumulate_updates(",
                 "apply_updates(", "averaged_gradients(",
                 "lasagne.updates.adam("):
        assert name in joined, name
    every = [b for path in pages() for b in blocks(path)]
    assert sum(runs for _, _, runs in every) >= 15
    assert sum(not runs for _, _, runs in every) <= MAX_NO_RUN


# -- the extraction and the runner fail a wrong example -----------------------
WRONG_MD = """Text.

```python
x = 1 + 1
```

<!-- example: no-run -->
```python
raise RuntimeError("never runs")
```

```py
assert x == 3, "a wrong example"
```
"""

WRONG_RST = """Text.

.. code-block:: python

   x = 1 + 1
   if x:
       y = x

.. example: no-run

.. code-block:: python

   raise RuntimeError("never runs")

Some prose.

.. code-block:: python
   :caption: wrong

   assert y == 3, "a wrong example"

::

   not python, not run
"""


def test_markdown_extraction():
    found = list(markdown_blocks(WRONG_MD))
    assert [(line, runs) for line, _, runs in found] == [
        (4, True), (9, False), (13, True)]
    assert found[0][1] == "x = 1 + 1\n"


def test_rst_extraction():
    found = list(rst_blocks(WRONG_RST))
    assert [(line, runs) for line, _, runs in found] == [
        (5, True), (13, False), (20, True)]
    assert found[0][1] == "x = 1 + 1\nif x:\n    y = x\n"


@pytest.mark.parametrize("text, extract", [(WRONG_MD, markdown_blocks),
                                           (WRONG_RST, rst_blocks)])
def test_a_wrong_example_fails(text, extract):
    with pytest.raises(AssertionError, match="a wrong example"):
        run_page("planted", list(extract(text)))
