"""Two directives that generate pages from the code, so they cannot drift.

``.. lstm-accum-cli::``
    The ``lstm-accum`` command line: for the program and for each
    subcommand, a section with its description and its ``--help`` text,
    taken from :func:`lstm_accum.cli.program.build_parser` at build time.
``.. lstm-accum-api::``
    The API reference: every name in ``lstm_accum.__all__``, then each
    subpackage's other public names (its ``__all__``), through autodoc.

A name of ``lstm_accum.__all__`` that no page documents is a warning (an
error under ``-W``). A Python cross-reference that Sphinx cannot resolve is
looked up in the code: if it names an object documented under another name
(``lstm_accum.accumulation.window.window_variables`` is documented as
``lstm_accum.window_variables``) it links there; if it names a real object or
module of ``lstm_accum`` that the reference leaves out (a private helper, a
module), it is set as code without a link; if it names nothing that
exists, the warning stands: a broken reference fails the build.
"""
import argparse
import importlib
import inspect
import os
import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

LOG = logging.getLogger(__name__)

#: Modules whose names the API reference leaves out (none), and constants
#: that are not API (a checkpoint key).
NOT_DOCUMENTED_YET = set()
NOT_DOCUMENTED_NAMES = {"SIZE_KEY"}

#: The subpackages in the API reference, from the top of the layout down.
SUBPACKAGES = ["accumulation", "models", "data", "evaluation", "training",
               "cli", "checkpoint", "exceptions"]


def _help(parser):
    # The same text at any terminal width.
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "78"
    try:
        return parser.format_help()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


class CommandLine(SphinxDirective):
    """Render ``lstm-accum --help`` and each subcommand's ``--help``."""

    def run(self):
        from lstm_accum.cli.program import build_parser
        parser = build_parser()
        result = [nodes.paragraph(text=parser.description),
                  nodes.literal_block(text=_help(parser))]
        for name, sub in _subparsers(parser):
            section = nodes.section(ids=["command-" + name])
            section += nodes.title(text="%s %s" % (parser.prog, name))
            if sub.description:
                section += nodes.paragraph(text=sub.description)
            block = nodes.literal_block(text=_help(sub))
            block["language"] = "text"
            section += block
            result.append(section)
        return result


def _public(module):
    """The module's ``__all__``, or else the classes and functions of
    ``lstm_accum`` it imports, in their order there."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, obj in vars(module).items()
            if not name.startswith("_") and not inspect.ismodule(obj)
            and (inspect.isclass(obj) or inspect.isfunction(obj))
            and getattr(obj, "__module__", "").startswith("lstm_accum")]


def _api_source():
    import lstm_accum
    top = list(lstm_accum.__all__)
    lines = ["The public API", "--------------", "",
             "Everything in ``lstm_accum.__all__``, importable as "
             "``from lstm_accum import NAME``.", "",
             ".. module:: lstm_accum", ""]
    for name in top:
        obj = getattr(lstm_accum, name)
        kind = "autoclass" if isinstance(obj, type) else "autofunction"
        lines += [".. %s:: lstm_accum.%s" % (kind, name), ""]
    for part in SUBPACKAGES:
        module = __import__("lstm_accum." + part, fromlist=["__all__"])
        rest = [n for n in _public(module) if n not in top
                and n not in NOT_DOCUMENTED_NAMES and getattr(
                    getattr(module, n), "__module__", "") not in
                NOT_DOCUMENTED_YET]
        title = "``lstm_accum.%s``" % part
        lines += [title, "-" * len(title), "",
                  ".. automodule:: lstm_accum.%s" % part,
                  "   :no-members:", ""]
        for name in rest:
            obj = getattr(module, name)
            if isinstance(obj, type):
                kind = "autoclass"
            elif callable(obj):
                kind = "autofunction"
            else:
                kind = "autodata"
            lines += [".. %s:: lstm_accum.%s.%s" % (kind, part, name), ""]
    return lines


class ApiReference(SphinxDirective):
    """Autodoc directives for every public name, generated."""

    def run(self):
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(_api_source(),
                                                        "<lstm-accum-api>"),
                                 node)
        return node.children


def check_public_names(app, env):
    """Warn about a name of ``lstm_accum.__all__`` that no page documents."""
    import lstm_accum
    documented = env.get_domain("py").objects
    for name in lstm_accum.__all__:
        if "lstm_accum." + name not in documented:
            LOG.warning("lstm_accum.%s is public but not documented", name)


def _lookup(path):
    """The object a dotted path names (a module or an attribute of one), or
    raise LookupError."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            raise LookupError(path)
        return obj
    raise LookupError(path)


def _contexts(node):
    """Module and class prefixes a short reference may be relative to: the
    page's current module and class, and the module that holds the
    docstring (from its source name, "docstring of lstm_accum.x.y.f")."""
    found = []
    module, cls = node.get("py:module"), node.get("py:class")
    if module and cls:
        found.append(module + "." + cls)
    if module:
        found.append(module)
    match = re.search(r"docstring of ([\w.]+)", node.source or "")
    if match:
        parts = match.group(1).split(".")
        found += [".".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]
    out = []
    for prefix in found:
        parts = prefix.split(".")
        for n in range(len(parts), 0, -1):
            candidate = ".".join(parts[:n])
            if candidate not in out:
                out.append(candidate)
    return out


#: The documented objects by id, computed once all pages are read (ids
#: are of this process: never kept in the pickled environment).
_DOCUMENTED = {}


def _forget_documented(app, env):
    _DOCUMENTED.clear()


def _documented_objects(env):
    """id(object) -> its documented name, for the python domain's objects."""
    table = {}
    for name in env.get_domain("py").objects:
        try:
            table.setdefault(id(_lookup(name)), name)
        except Exception:
            pass
    return table


def resolve_in_code(app, env, node, contnode):
    """Resolve a Python reference Sphinx did not find (see the module
    docstring); None keeps the warning."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip(".~")
    candidates = [target] + [c + "." + target for c in _contexts(node)]
    for path in candidates:
        if not path.startswith("lstm_accum"):
            continue
        try:
            obj = _lookup(path)
        except Exception:
            continue
        if _DOCUMENTED.get("table") is None:
            _DOCUMENTED["table"] = _documented_objects(env)
        name = _DOCUMENTED["table"].get(id(obj))
        if name is not None:
            objtype = env.get_domain("py").objects[name].objtype
            role = {"function": "func", "method": "meth",
                    "attribute": "attr", "module": "mod",
                    "exception": "exc"}.get(objtype, objtype)
            return env.get_domain("py").resolve_xref(
                env, node["refdoc"], app.builder, role, name, node, contnode)
        return contnode            # a real name, not in the reference
    return None


def setup(app):
    app.add_directive("lstm-accum-cli", CommandLine)
    app.add_directive("lstm-accum-api", ApiReference)
    app.connect("env-check-consistency", check_public_names)
    app.connect("env-updated", _forget_documented)
    app.connect("missing-reference", resolve_in_code)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
