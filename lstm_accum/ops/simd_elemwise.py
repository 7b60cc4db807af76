"""The elementwise loops of the apply step, compiled so that they vectorise.

The apply step (average the accumulators, run the update rule, keep the
result only for a good window) is a dozen Theano ``Elemwise`` nodes per
parameter, over every element of every parameter.  Theano compiles a
contiguous ``Elemwise`` as one loop over references to the elements, with
the broadcast scalars (learning rate, the window's ``ok``) read through
pointers at each element and, for the in-place nodes, an output that is an
input.  GCC keeps such a loop scalar: at our default ``gcc.cxxflags=-O1``
it does not try, and at ``-O3``, inside Theano's large generated function,
it does not vectorise it either.

:class:`SimdElemwise` is the same ``Elemwise``: Theano's allocation,
in-place pattern, shape checks, broadcasting and strided fallback, and the
same scalar C code (:class:`SimdComposite` wraps the node's scalar
operation as a ``Composite``).  Only its contiguous case differs: it calls
a ``noinline`` function whose loop takes the broadcast scalars by value
and is ``#pragma GCC ivdep`` (every element is read before it is
written, in place or not, and no element depends on another); the
function's frame is made here from the node's scalar code, its loop and
attributes are macros of ``c_code/simd_elemwise.c``.  From 2^16 elements
up the elements are shared out to the team of threads of
``c_code/team.c`` (each element's arithmetic is the same on any thread).  Under our default
flags that function alone is compiled at ``-O3`` (GCC's ``optimize``
attribute; the rest of the module keeps ``-O1``) without contracting
``a * b + c`` into one rounding (FMA), as Theano's loops at ``-O1``;
under a level the user set in ``gcc.cxxflags``, the user's flags decide,
as for Theano's loops.  The same IEEE operations in the same order:
results are bit-identical to Theano's loops (``tests/test_simd_elemwise.py``:
adagrad, adam, rmsprop, momentum).  A 1M-parameter Adam apply runs about
four times as fast (``benchmarks/README.md``).

The same rewrite joins a value that several formulas read (the averaged
gradient, Adagrad's squared gradient, Adam's moments), which Theano's
fusion leaves as a node of its own, with its readers and theirs, into one
``SimdElemwise`` with several outputs (:func:`merged_loops`): one pass over
a parameter's elements instead of one per node.  Every input is read
before any output is written, in the vectorised loop and in Theano's
strided one, so outputs can take the places of inputs that other outputs
read.

``include_simd_elemwise(mode)`` adds the rewrite to a compile mode; the
apply step uses it on the CPU.  It runs after Theano's in-place passes and
keeps each node's in-place pattern.
"""
import functools
import hashlib
import inspect

from ..backend import theano, T
from .base import (NodeRewrite, c_sections, cxxflags_defaulted,
                   loop_compile_args)

__all__ = ["SimdComposite", "SimdElemwise", "simd_elemwise",
           "include_simd_elemwise", "SIMD_ELEMWISE"]

_VERSION = 3
#: The optimizer's name in Theano's optdb (a tag of its own: not in
#: ``fast_run``, so only modes that include it run it).
SIMD_ELEMWISE = "lstm_accum_simd_elemwise"
_NO_FAIL = "LSTM_ACCUM_SIMD_NO_FAIL"
#: The team (the threads that share a loop's elements) and the loop's
#: macros.
_C_FILES = ("team.c", "simd_elemwise.c")


def _fits(node):
    """Whether an elementwise node's inputs and outputs are matrices or
    higher of the outputs' shape or broadcast scalars, none of them float16
    or complex (the flat loop's case).  Vectors (biases: small) stay in
    Theano's loops, which saves compiling a second module per formula."""
    pattern = node.outputs[0].broadcastable
    variables = list(node.inputs) + list(node.outputs)
    return (node.outputs[0].ndim > 1 and not all(pattern)
            and all(v.dtype != "float16" and not v.dtype.startswith("complex")
                    for v in variables)
            and all(v.broadcastable == pattern or all(v.broadcastable)
                    for v in variables))


class SimdComposite(theano.scalar.Composite):
    """A ``Composite`` scalar operation with a loop for contiguous arrays.

    Theano's ``Elemwise`` calls :meth:`c_code_contiguous` for its case of
    C- (or Fortran-) contiguous inputs and outputs; every other case, and
    the scalar code itself, are the ``Composite``'s.
    """

    def _loop(self, node, name):
        """``(function name, C source)`` of the contiguous loop, or None
        when this node does not fit it (its dtypes or broadcasting)."""
        if not _fits(node):
            return None
        if not hasattr(node.tag, "fake_node"):
            node.op.prepare_node(node, None, None, "c")
        # The scalar code's helpers are named after nodename + "_scalar_".
        task = self.c_code(
            node.tag.fake_node, name,
            ["a%d_" % k for k in range(len(node.inputs))],
            ["r%d_" % k for k in range(len(node.outputs))],
            {"fail": _NO_FAIL})
        if _NO_FAIL in task:
            return None          # code that can fail stays in Theano's loop
        params, load, store = ["npy_intp n_"], [], []
        fields, shifted = [], []      # the team's job: members, arguments
        for k, var in enumerate(node.inputs):
            ctype = var.type.dtype_specs()[1]
            if all(var.broadcastable):
                params.append("const %s a%d_" % (ctype, k))
                shifted.append("j_->a%d_" % k)
            else:
                params.append("const %s* p%d_" % (ctype, k))
                load.append("const %s a%d_ = p%d_[i_];" % (ctype, k, k))
                shifted.append("j_->p%d_ + s0_" % k)
            fields.append(params[-1].replace("const ", "", 1) + ";")
        for k, var in enumerate(node.outputs):
            ctype = var.type.dtype_specs()[1]
            params.append("%s* q%d_" % (ctype, k))
            load.append("%s r%d_;" % (ctype, k))
            store.append("q%d_[i_] = r%d_;" % (k, k))
            fields.append(params[-1] + ";")
            shifted.append("j_->q%d_ + s0_" % k)
        fname = "lstm_accum_simd_" + name
        # The loop's macros: c_code/simd_elemwise.c.
        attributes = "LSTM_ACCUM_SIMD_FUNCTION" + (
            "_O3" if cxxflags_defaulted() else "")
        source = "%s static void %s(%s)\n{\nLSTM_ACCUM_SIMD_LOOP(n_) {\n" \
            "%s\n{\n%s\n}\n%s\n}\n}\n" % (
                attributes, fname, ", ".join(params), "\n".join(load), task,
                "\n".join(store))
        # The team's share of the elements: the same loop on a range.
        source += "LSTM_ACCUM_SIMD_WORK(%s, %s, %s)\n" % (
            fname, " ".join(fields), ", ".join(shifted))
        return fname, source

    def c_code(self, node, name, inames, onames, sub):
        # With several outputs, an output may be an input that another
        # output still reads (in place): every input is copied first, as
        # the contiguous loop does, for Theano's strided loop too.
        if len(onames) == 1:
            return super(SimdComposite, self).c_code(node, name, inames,
                                                     onames, sub)
        copies = ["%s %s_in%d = %s;" % (v.type.dtype_specs()[1], name, k, i)
                  for k, (v, i) in enumerate(zip(node.inputs, inames))]
        names = ["%s_in%d" % (name, k) for k in range(len(inames))]
        return "{\n%s\n%s}\n" % ("\n".join(copies), super(
            SimdComposite, self).c_code(node, name, names, onames, sub))

    def c_support_code_apply(self, node, name):
        inner = super(SimdComposite, self).c_support_code_apply(node, name)
        loop = self._loop(node, name)
        return inner + ("\n" + loop[1] if loop else "")

    def c_code_contiguous(self, node, name, inames, onames, sub):
        # node: the Elemwise's Apply (tensor variables); Theano names this
        # case nodename + "_scalar_contig_", the support code
        # nodename + "_scalar_".
        from theano.gof.utils import MethodNotDefined
        if name.endswith("contig_"):
            name = name[:-len("contig_")]
        loop = self._loop(node, name)
        if loop is None:
            raise MethodNotDefined()
        args = ["PyArray_SIZE(%s)" % onames[0]]
        for var, c in zip(node.inputs, inames):
            args.append("((dtype_%s*)PyArray_DATA(%s))%s" % (
                c, c, "[0]" if all(var.broadcastable) else ""))
        args += ["(dtype_%s*)PyArray_DATA(%s)" % (c, c) for c in onames]
        return ("{\n%s_job job_ = {%s};\nlstm_accum_team_run(%s_work, "
                "&job_, LSTM_ACCUM_SIMD_TEAM(job_.n_));\n}\n" % (
                    loop[0], ", ".join(args), loop[0]))

    def c_code_cache_version(self):
        # Theano keys a versioned module by its version, not its source:
        # the hash of the code that writes the loop is part of it.
        inner = super(SimdComposite, self).c_code_cache_version()
        return (("simd", _VERSION, _loop_hash()),) + inner if inner else ()


@functools.lru_cache(maxsize=None)
def _loop_hash():
    source = "".join(inspect.getsource(f) for f in (
        SimdComposite.c_code, SimdComposite._loop,
        SimdComposite.c_code_contiguous)) + "".join(
            code for name in _C_FILES for _, code in c_sections(name))
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


class SimdElemwise(T.Elemwise):
    """``Elemwise`` of a :class:`SimdComposite`, whose loop is compiled at
    ``-O3``."""

    def c_compile_args(self):
        # No errno: sqrt vectorises (Theano's own default flags say so too).
        # Under our default -O1, Theano's loops round each operation: ours
        # too, no contraction of a * b + c into one rounding (FMA).  Under a
        # level the user chose, the user's flags decide, as for Theano's.
        args = loop_compile_args() + ["-fno-math-errno"]
        if cxxflags_defaulted():
            args.append("-ffp-contract=off")
        return args

    def c_support_code(self):
        # Theano reuses a module whose source is the same, whatever its
        # flags: the flags are part of the source.
        return "/* %s v%d, flags: %s */\n%s%s" % (
            __name__, _VERSION, " ".join(self.c_compile_args()),
            "".join(code for name in _C_FILES
                    for _, code in c_sections(name)),
            super(SimdElemwise, self).c_support_code())


def _as_composite(node):
    """The node's scalar operation as a :class:`SimdComposite`."""
    op = node.op.scalar_op
    if isinstance(op, theano.scalar.Composite):
        return SimdComposite(op.inputs, op.outputs)
    xs = [theano.scalar.get_scalar_type(v.dtype).make_variable()
          for v in node.inputs]
    return SimdComposite(xs, op.make_node(*xs).outputs)


def _scalar_outputs(op, args):
    """The outputs of the scalar operation ``op`` applied to the scalar
    variables ``args``; a ``Composite``'s own graph, copied onto them."""
    if isinstance(op, theano.scalar.Composite):
        equiv = theano.gof.graph.clone_get_equiv(
            op.inputs, op.outputs, memo=dict(zip(op.inputs, args)))
        return [equiv[v] for v in op.outputs]
    return op.make_node(*args).outputs


def _plain(node):
    return type(node.op) is T.Elemwise and not node.op.openmp and \
        len(node.outputs) == 1 and _fits(node)


def _group(node, deep):
    """``node`` and the plain same-shaped ``Elemwise`` nodes that read its
    output (``deep``: and theirs, on and on; else only if nothing else
    reads it), in the graph's order, if they are three or more nodes and
    none of them reads, through nodes outside, what another computes; else
    None."""
    group, k = [node], 0
    pattern = node.outputs[0].broadcastable
    while k < len(group) and (deep or k == 0):
        for client, _ in group[k].outputs[0].clients:
            if client != "output" and client not in group and \
                    _plain(client) and \
                    client.outputs[0].broadcastable == pattern:
                group.append(client)
            elif not deep and client != "output" and client not in group:
                return None   # read by another kind of node too
        k += 1
    if deep:
        group += _siblings(group, pattern)
    if len(group) < 3:
        return None
    made = {n.outputs[0] for n in group}
    outside = [v for n in group for v in n.inputs if v not in made]
    if made & set(theano.gof.graph.ancestors(outside)):
        return None
    order = []
    while len(order) < len(group):
        order += [n for n in group if n not in order and all(
            v not in made or v.owner in order for v in n.inputs)]
    return order


def _siblings(group, pattern):
    """Plain ``Elemwise`` nodes of the same shape outside ``group`` whose
    arrays are all read by ``group`` too (an accumulator's new zeros)."""
    made = {n.outputs[0] for n in group}
    read = {v for n in group for v in n.inputs if v not in made}
    found = []
    for v in read:
        for client, _ in v.clients:
            if client != "output" and client not in group and \
                    client not in found and _plain(client) and \
                    client.outputs[0].broadcastable == pattern and \
                    all(u in read or all(u.broadcastable)
                        for u in client.inputs):
                found.append(client)
    return found


def _merged(group):
    """``{old: new}``: one :class:`SimdElemwise` for the nodes ``group``
    (in the graph's order), with an output for each of their outputs that
    is read outside the group or returned, in the place of the input its
    node wrote over (if no other output takes it)."""
    made = {n.outputs[0] for n in group}
    ins = []
    for n in group:
        ins += [v for v in n.inputs if v not in made and v not in ins]
    xs = [theano.scalar.get_scalar_type(v.dtype).make_variable() for v in ins]
    scalar = dict(zip(ins, xs))
    heads = []
    for n in group:
        scalar[n.outputs[0]], = _scalar_outputs(
            n.op.scalar_op, [scalar[v] for v in n.inputs])
        if any(c == "output" or c not in group
               for c, _ in n.outputs[0].clients):
            heads.append(n)
    pattern = {}
    for k, n in enumerate(heads):
        target = n.inputs[n.op.inplace_pattern[0]] \
            if 0 in n.op.inplace_pattern else None
        if target in ins and ins.index(target) not in pattern.values():
            pattern[k] = ins.index(target)
    merged = SimdElemwise(
        SimdComposite(xs, [scalar[n.outputs[0]] for n in heads]),
        inplace_pattern=pattern).make_node(*ins)
    return {n.outputs[0]: v for n, v in zip(heads, merged.outputs)}


def merged_loops(node, deep=True):
    """``{old: new}`` putting one :class:`SimdElemwise` with several
    outputs in place of ``node`` and the nodes that read its output, and
    theirs (the whole chain of an update rule: the averaged gradient, the
    new state, the new parameter), or None.  With ``deep`` False, only
    ``node``'s direct readers: for when the whole chain cannot be one node
    without a cycle.

    A value used twice (the averaged gradient, Adagrad's squared gradient,
    Adam's new first moment) is an ``Elemwise`` of its own, which Theano's
    fusion does not join to its readers; each is a pass over the
    parameter's elements.  Joined, one loop reads every input once and
    writes every output that is read elsewhere, with the nodes' in-place
    patterns; the same scalar code in the same order, so the same results
    bit for bit.  Elementwise nodes that read nothing but what the group
    reads (an accumulator's zeros, :func:`~lstm_accum.ops.zeroed`) join it
    too.
    """
    if not _plain(node):
        return None
    group = _group(node, deep)
    return None if group is None else _merged(group)


def simd_elemwise(node):
    """The outputs of a :class:`SimdElemwise` equal to the ``Elemwise``
    ``node`` (same inputs, scalar code and in-place pattern), or None when
    the node is not a plain ``Elemwise`` of same-shaped arrays and scalars.
    """
    if type(node.op) is not T.Elemwise or node.op.openmp or \
            not _fits(node):
        return None
    op = SimdElemwise(_as_composite(node),
                      inplace_pattern=dict(node.op.inplace_pattern))
    return op.make_node(*node.inputs).outputs


# After the in-place passes (75) and before the last merge (100).
theano.compile.optdb.register(
    SIMD_ELEMWISE,
    NodeRewrite((merged_loops, functools.partial(merged_loops, deep=False),
                 simd_elemwise), SIMD_ELEMWISE),
    99)


def include_simd_elemwise(mode):
    """``mode`` with :class:`SimdElemwise` loops, when it is a plain Theano
    ``Mode`` compiling C on the CPU; any other mode unchanged."""
    if type(mode) is not theano.compile.mode.Mode or not theano.config.cxx \
            or not theano.config.device.startswith("cpu"):
        return mode
    return mode.including(SIMD_ELEMWISE)
