"""Shared plumbing of our C operations, and the loading of their C files.

The C and C++ source of every operation is in ``lstm_accum/ops/c_code/``,
loaded the way Theano's own operations load theirs: :class:`CpuCOp` is a
``theano.gof.COp`` whose files are split at their ``#section`` markers
(``support_code``, ``support_code_apply``, ...), and whose node calls the
function ``APPLY_SPECIFIC(name)`` of its ``support_code_apply`` section with
the node's inputs and the addresses of its outputs.  Each section starts
with a ``#line`` directive, so that a compile error names the ``.c`` file
and the line a person can open.

Code is made generic one way: C++ templates over the value type (and the
index type), instantiated per node with the types of Theano's ``COp``
macros (``DTYPE_INPUT_0``, ``TYPENUM_OUTPUT_0``, ...) that the
``support_code_apply`` section receives.  An op's own constants (the fused
LSTM's ``grad_clipping``) are macros of a small prologue generated per node
(:meth:`CpuCOp.c_node_macros`).  Templates rather than Python substitution:
the files are C++ that an editor, a compiler and a reviewer read as such,
and one function serves float and double.

:class:`CpuCOp` takes care of three things that are easy to get wrong:

* compile flags: the loops are compiled at ``-O3`` with
  ``-fno-trapping-math`` (without it GCC keeps the selects of the loops as
  branches and does not vectorise them), even under our default
  ``gcc.cxxflags=-O1 -g0``, but never against a level the user chose;
* the compile cache: Theano reuses a compiled module whose *source* is the
  same even when its flags or version differ, so both are stamped into the
  source;
* arrays: ``c_code/support.c`` has ``lstm_accum_prepare_output``, which
  reuses a C-contiguous output of the right shape and type, and
  ``lstm_accum_contiguous``/``lstm_accum_release`` for the inputs.

``c_code/support.c`` also has branch-free, vectorisable ``lstm_accum_exp``
and ``lstm_accum_tanh`` for float (Cephes' polynomials, within 2 ulps of the
exact value; ``tests/test_c_math_float32.py``) and the C library's for
double.
"""
import functools
import hashlib
import os

from ..backend import DEFAULT_FLAGS, DEFAULTED, theano
from .mkl import load_mkl

__all__ = ["CpuCOp", "C_CODE_DIR", "c_sections", "unavailable_reason",
           "FLOAT_DTYPES", "INDEX_DTYPES", "loop_compile_args",
           "cxxflags_defaulted", "NodeRewrite"]

#: The directory of our operations' C files (package data).
C_CODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "c_code")
#: The file every :class:`CpuCOp` loads first.
SUPPORT_FILE = "support.c"

#: The dtypes our C operations take for real values and for indices.
FLOAT_DTYPES = ("float32", "float64")
INDEX_DTYPES = ("int32", "int64")


def unavailable_reason():
    """Why our C operations cannot run here, or None when they can.

    Returns
    -------
    str or None
        E.g. ``'device cuda (our C operations run on the CPU)'``.
    """
    if not theano.config.cxx:
        return "no C++ compiler (theano.config.cxx is empty)"
    if not theano.config.device.startswith("cpu"):
        return "device %s (our C operations run on the CPU)" % (
            theano.config.device,)
    return None


class NodeRewrite(theano.gof.Optimizer):
    """A graph pass that replaces every node for which ``replace(node)``
    gives new outputs (None: the node stays), in topological order.

    Parameters
    ----------
    replace : callable, or a tuple of them
        ``replace(node) -> list of variables or None``; an output whose
        entry is None is not replaced (it must have no client).  Or a
        dict ``{old variable: new variable}``, for a rewrite that replaces
        the outputs of other nodes too; it is left out if it would break
        the order of in-place work.  Of a tuple, the first whose
        replacement is made.
    reason : str
        The name the replacements are recorded under (the pass's tag in
        Theano's ``optdb``).
    """

    def __init__(self, replace, reason):
        super(NodeRewrite, self).__init__()
        self.replace = replace if isinstance(replace, tuple) else (replace,)
        self.reason = reason

    def add_requirements(self, fgraph):
        fgraph.attach_feature(theano.gof.toolbox.ReplaceValidate())

    def apply(self, fgraph):
        for node in fgraph.toposort():
            if node not in fgraph.apply_nodes:
                continue
            for replace in self.replace:
                if self._made(fgraph, node, replace(node)):
                    break

    def _made(self, fgraph, node, new):
        if new is None:
            return False
        if not isinstance(new, dict):
            fgraph.replace_all_validate(
                [(old, v) for old, v in zip(node.outputs, new)
                 if v is not None], reason=self.reason)
            return True
        try:
            fgraph.replace_all_validate(list(new.items()), reason=self.reason)
        except theano.gof.InconsistencyError:
            return False      # an order of in-place work it would break
        return True


def loop_compile_args():
    """Compile flags of modules whose loops must vectorise."""
    return ["-ftree-vectorize", "-fno-trapping-math"]


def cxxflags_defaulted():
    """Whether ``gcc.cxxflags`` is our default (``-O1 -g0``,
    backend/flags.py), not a level the user chose: only then do our loops
    pick their own optimisation level."""
    return "gcc.cxxflags" in DEFAULTED


@functools.lru_cache(maxsize=None)
def c_sections(name):
    """The ``#section`` parts of the C file ``c_code/<name>``.

    Parameters
    ----------
    name : str
        A file name in :data:`C_CODE_DIR`, e.g. ``'fused_lstm.c'``.

    Returns
    -------
    tuple of (str, str)
        ``(section, code)`` in the order of the file; each code opens with
        a ``#line`` directive naming the file and the line it starts on.

    Raises
    ------
    ValueError
        For code before the first ``#section`` marker, an unknown section
        or a file without markers.
    """
    path = os.path.join(C_CODE_DIR, name)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    shown = "lstm_accum/ops/c_code/" + name
    marks = list(theano.gof.COp.section_re.finditer(text))
    if not marks or text[:marks[0].start()].strip():
        raise ValueError("%s: the C code must start with a '#section NAME' "
                         "line (one of %s)"
                         % (path, ", ".join(sorted(theano.gof.COp.SECTIONS))))
    found = []
    for mark, after in zip(marks, marks[1:] + [None]):
        section = mark.group(1)
        if section not in theano.gof.COp.SECTIONS:
            raise ValueError("%s:%d: unknown section %r (expected one of %s)"
                             % (path, text.count("\n", 0, mark.start()) + 1,
                                section,
                                ", ".join(sorted(theano.gof.COp.SECTIONS))))
        body = text[mark.end() + 1:after.start() if after else len(text)]
        first = text.count("\n", 0, mark.end()) + 2
        found.append((section, '#line %d "%s"\n%s' % (first, shown, body)))
    return tuple(found)


class CpuCOp(theano.gof.COp):
    """Base class: C files, BLAS flags, optimisation level, cache.

    Subclasses set ``c_files`` (files of :data:`C_CODE_DIR`, loaded after
    ``support.c``; a section in several files is their concatenation, as
    for Theano's ``COp``), ``func_name`` (the node's call, e.g.
    ``'APPLY_SPECIFIC(fused_lstm)'``: a function of the files'
    ``support_code_apply`` that takes the inputs and the addresses of the
    outputs and returns nonzero, with an exception set, on failure) and
    ``c_version`` (an int, bumped whenever the C code changes).  They may
    define :meth:`c_node_macros`.

    ``c_loops`` is C placed after the files' support code, for code made at
    run time (the tests' probes); our operations keep theirs in files.
    """

    c_files = ()
    c_loops = ""
    c_version = 0
    func_name = None

    def __init__(self):
        # Not COp.__init__, which reads the files again for every instance:
        # the files are the class's, read once (code_sections).
        pass

    @property
    def code_sections(self):
        """``{section: code}`` of ``support.c`` and ``c_files``."""
        return _merged_sections((SUPPORT_FILE,) + tuple(self.c_files))

    def prepare_node(self, node, storage_map, compute_map, impl):
        # team_blas.c uses MKL only if it is loaded, set up for the team,
        # before the node's first product (ops/mkl.py).
        if "team_blas.c" in self.c_files:
            load_mkl()

    def _source_hash(self):
        return _source_hash((SUPPORT_FILE,) + tuple(self.c_files),
                            self.c_loops)

    def c_node_macros(self, node):
        """``(name, value)`` pairs defined as macros around the node's
        ``support_code_apply`` (and undefined after it); none here."""
        return []

    def c_support_code(self):
        from theano.tensor.blas_headers import blas_header_text
        stamp = "/* %s v%d (%s), flags: %s */\n" % (
            type(self).__module__, self.c_version, self._source_hash(),
            " ".join(self.c_compile_args() + ["no:"]
                     + self.c_no_compile_args()))
        return (stamp + blas_header_text()
                + self.code_sections.get("support_code", "") + self.c_loops)

    def c_support_code_apply(self, node, name):
        code = super(CpuCOp, self).c_support_code_apply(node, name)
        macros = self.c_node_macros(node)
        return "\n".join(["#define %s %s" % m for m in macros] + [code]
                         + ["#undef %s" % m[0] for m in macros])

    def c_headers(self):
        return ["<cmath>", "<cstring>", "<cstdlib>"]

    def c_libraries(self):
        from theano.tensor.blas import ldflags
        return ldflags()

    def c_compile_args(self):
        from theano.tensor.blas import ldflags
        return loop_compile_args() + ldflags(libs=False, flags=True)

    def c_no_compile_args(self):
        # Our default -O1 keeps Theano's small modules quick to compile;
        # these loops are much of the training time, so they keep Theano's
        # -O3, unless the user chose a level.
        if cxxflags_defaulted():
            return [f for f in DEFAULT_FLAGS["gcc.cxxflags"].split()
                    if f.startswith("-O")]
        return []

    def c_lib_dirs(self):
        from theano.tensor.blas import ldflags
        return ldflags(libs=False, libs_dir=True)

    def c_header_dirs(self):
        from theano.tensor.blas import ldflags
        return ldflags(libs=False, include_dir=True)

    def c_code_cache_version(self):
        from theano.tensor.blas_headers import blas_header_version
        # The hash of the C code: a change of it without a change of
        # c_version still gets a new module.
        return (self.c_version, self._source_hash()) + tuple(
            blas_header_version())


@functools.lru_cache(maxsize=None)
def _merged_sections(files):
    merged = {}
    for name in files:
        for section, code in c_sections(name):
            merged[section] = merged.get(section, "") + code
    return merged


@functools.lru_cache(maxsize=None)
def _source_hash(files, extra):
    code = "".join(code for name in files for _, code in c_sections(name))
    return hashlib.sha256((code + extra).encode("utf-8")).hexdigest()[:16]
