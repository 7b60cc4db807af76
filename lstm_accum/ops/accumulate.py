"""The operations that add gradients into accumulators and check them.

On the CPU the accumulate step is one Python op, :class:`AccumulateIfFinite`:
a finiteness check (a BLAS squared norm per gradient, as :class:`AllFinite`),
then numpy's in-place add into the accumulators -- views of the unsplit
gradient where Theano would ``Split`` it (:func:`accumulate_spec` finds
them). The optimizer ``lstm_accum_inplace_accumulate``, registered here in
Theano's ``optdb``, makes the op update its accumulators in place.
:class:`SquaredNorm` is the total squared norm of the averaged gradient in
``apply``. :func:`isfinite`, :func:`all_finite` and :func:`squared_norm`
choose these ops on the CPU and plain Theano reductions elsewhere (a Python
op would copy device arrays to the host); both give the same sums.

Imports only :mod:`lstm_accum.backend`, :mod:`.base` and :mod:`.row_sums`.
"""
import collections

import numpy as np

from ..backend import theano, T
from .base import CpuCOp, FLOAT_DTYPES, INDEX_DTYPES
from .row_sums import RowSums

__all__ = ["AllFinite", "SquaredNorm", "AccumulateIfFinite",
           "accumulate_spec", "isfinite", "all_finite", "squared_norm",
           "zeroed", "on_cpu"]


def isfinite(x):
    """Symbolic ``isfinite`` (Theano 1.0 has none): ``|x| < inf`` is False
    for NaN and for +-Inf."""
    return T.lt(abs(x), np.asarray(np.inf, dtype=x.dtype))


class _HostScalarReduction(theano.Op):
    """A scalar computed on the host from every element of its inputs, with
    no gradient (a diagnostic, not part of the loss). Subclasses set
    ``output_type`` and ``perform``."""

    __props__ = ()
    output_type = None

    def make_node(self, *tensors):
        tensors = [T.as_tensor_variable(t) for t in tensors]
        return theano.Apply(self, tensors, [self.output_type()])

    def infer_shape(self, node, shapes):
        return [()]

    def grad(self, inputs, output_grads):
        return [theano.gradient.DisconnectedType()() for _ in inputs]

    def connection_pattern(self, node):
        return [[False] for _ in node.inputs]


class AllFinite(_HostScalarReduction):
    """Symbolic scalar: True if every element of every input is finite.

    CPU implementation through numpy: the squared norm ``dot(x, x)`` (BLAS,
    vectorised, no temporary) takes a fraction of the time of Theano's
    ``Sum`` reduction (the accumulate step's profile in
    ``benchmarks/README.md``). A NaN or
    Inf element makes it non-finite; for finite elements it overflows only
    when the norm exceeds ~1.8e19 (float32), far beyond any usable gradient
    (such a sample is treated as non-finite).
    """

    output_type = T.TensorType("bool", ())

    def perform(self, node, inputs, output_storage):
        ok = True
        for x in inputs:
            flat = x.ravel()  # a view for the contiguous arrays we get
            if not np.isfinite(np.dot(flat, flat)):
                ok = False
                break
        output_storage[0][0] = np.asarray(ok, dtype="bool")


class SquaredNorm(CpuCOp, _HostScalarReduction):
    """Symbolic float64 scalar: the sum of the squares of every input.

    The total gradient norm in ``apply``. In C (``c_code/sum_squares.c``):
    every input is cut into the same chunks whatever the number of threads,
    the chunks are shared out to the team of threads (:mod:`.team`) and
    their sums added in a fixed order, so the total does not depend on the
    number of threads; a chunk adds its squares in 16 lanes of the input's
    dtype, as a float32 BLAS dot product does (a float32 sum overflows
    where the dot product's does). Without a C compiler, numpy's BLAS dot
    product per input.
    """

    __props__ = ("divided",)
    output_type = T.TensorType("float64", ())
    c_version = 2
    c_files = ("team.c", "sum_squares.c", "squared_norm.c")
    func_name = "APPLY_SPECIFIC(squared_norm)"

    def __init__(self, divided=False):
        self.divided = bool(divided)

    def make_node(self, *tensors):
        node = _HostScalarReduction.make_node(self, *tensors)
        arrays = node.inputs[1:] if self.divided else node.inputs
        if self.divided and node.inputs[0].type != T.dscalar:
            raise TypeError("SquaredNorm(divided=True) takes a float64 "
                            "scalar divisor first, got %s"
                            % node.inputs[0].type)
        for t in arrays:
            if t.dtype not in FLOAT_DTYPES:
                raise TypeError("SquaredNorm takes float32 or float64 "
                                "tensors, got %s" % t.type)
        return node

    def c_node_macros(self, node):
        return [("LSTM_ACCUM_DIVIDED", str(int(self.divided)))]

    def format_c_function_args(self, inp, out):
        return ", ".join([str(len(inp))] + list(inp) + ["&%s" % out[0]])

    def perform(self, node, inputs, output_storage):
        total = 0.0
        arrays = inputs[1:] if self.divided else inputs
        for x in arrays:
            flat = x.ravel()  # a view for the contiguous arrays we get
            if self.divided:
                flat = flat / x.dtype.type(inputs[0])
            total += float(np.dot(flat, flat))
        output_storage[0][0] = np.asarray(total, dtype="float64")


class AccumulateIfFinite(CpuCOp):
    """Add one call's gradients into the accumulators, in place, if finite.

    Inputs: the call's loss, the ``n`` accumulators (destroyed: updated in
    place), then the source tensors. Outputs: a bool scalar ``ok`` (the loss
    and every source are finite) and the ``n`` accumulators. When ``ok`` is
    False the accumulators are not touched (bit-identical); otherwise each
    gets ``acc += g`` with numpy's in-place add, one vectorised pass, where a
    graph ``switch(ok, acc + g, acc)`` costs a scalar C loop per element.

    ``spec`` gives, per accumulator, where its gradient is:
    ``(source, -1, -1, -1, -1)`` -- the whole source tensor ``source``;
    ``(source, axis, sizes, part, -1)`` -- part ``part`` of the source cut
    along ``axis`` by the int vector source ``sizes`` (Theano's ``Split``,
    the gradient of ``concatenate``; Lasagne's LSTM joins its gate
    weights). Adding strided views of the unsplit gradient skips
    ``Split``'s copies;
    ``(source, axis, sizes, part, words)`` -- as before, but only the rows
    ``words`` (an int vector source, no index twice) of the accumulator get
    it: ``acc[words] += g`` (the gradient of a row lookup,
    :class:`~lstm_accum.ops.row_sums.RowSums`; zero elsewhere). A 4-tuple
    means ``words = -1``.

    Built with ``inplace=False`` (it then works on copies); the registered
    optimizer ``lstm_accum_inplace_accumulate`` swaps in ``inplace=True``.

    In C (``c_code/accumulate.c``), every gradient is checked against its
    accumulator first (a bad shape raises and adds nothing); the finiteness
    test is a sum of squares per source (``c_code/sum_squares.c``, as
    :class:`SquaredNorm`: non-finite where a float32 BLAS squared norm is);
    the check and the additions are shared out to the team of threads
    (:mod:`.team`), each element added once, so the sums are numpy's bit
    for bit. Without a C compiler, the same steps in numpy. CPU only: the
    op would copy device arrays to the host.
    """

    __props__ = ("spec", "inplace")
    c_version = 1
    c_files = ("team.c", "sum_squares.c", "accumulate.c")
    func_name = "APPLY_SPECIFIC(accumulate)"

    def __init__(self, spec, inplace=False):
        self.spec = tuple(tuple(int(v) for v in s) + (-1,) * (5 - len(s))
                          for s in spec)
        self.inplace = bool(inplace)
        n = len(self.spec)
        if self.inplace:
            self.destroy_map = dict((1 + i, [1 + i]) for i in range(n))

    def make_node(self, loss, *rest):
        n = len(self.spec)
        loss = T.as_tensor_variable(loss)
        rest = [T.as_tensor_variable(t) for t in rest]
        accs, sources = rest[:n], rest[n:]
        for acc, (src, axis, sizes, part, words) in zip(accs, self.spec):
            if acc.dtype not in FLOAT_DTYPES:
                raise TypeError("accumulator %r has type %s: float32 or "
                                "float64 expected" % (acc, acc.type))
            if axis < 0 and sources[src].type != acc.type:
                raise TypeError("source %r has type %s, accumulator %r %s" %
                                (sources[src], sources[src].type, acc,
                                 acc.type))
            if axis >= 0 and sources[src].dtype != acc.dtype:
                raise TypeError("split source dtype %s != accumulator %s" %
                                (sources[src].dtype, acc.dtype))
        return theano.Apply(self, [loss] + accs + sources,
                            [T.TensorType("bool", ())()] +
                            [a.type() for a in accs])

    def c_node_macros(self, node):
        rows = ", ".join("{%s}" % ", ".join(str(v) for v in s)
                         for s in self.spec) or "{-1, -1, -1, -1, -1}"
        return [("LSTM_ACCUM_SPEC", "{%s}" % rows),
                ("LSTM_ACCUM_INPLACE", str(int(self.inplace)))]

    def format_c_function_args(self, inp, out):
        n = len(self.spec)
        return ", ".join([inp[0], str(n), str(len(inp) - 1 - n)]
                         + list(inp[1:]) + ["&%s" % o for o in out])

    def perform(self, node, inputs, output_storage):
        n = len(self.spec)
        loss, accs, sources = inputs[0], inputs[1:1 + n], inputs[1 + n:]
        if not self.inplace:
            accs = [np.array(a) for a in accs]
        # every gradient checked against its accumulator before any add
        parts = [self._part(acc, s, sources) for acc, s in zip(accs,
                                                                self.spec)]
        ok = bool(np.isfinite(loss))
        if ok:
            for k in sorted(set(s[0] for s in self.spec)):
                flat = sources[k].ravel()
                if not np.isfinite(np.dot(flat, flat)):
                    ok = False
                    break
        if ok:
            for acc, (g, rows) in zip(accs, parts):
                if rows is None:
                    np.add(acc, g, out=acc)
                else:
                    acc[rows] = acc[rows] + g   # rows: distinct indices
        output_storage[0][0] = np.asarray(ok, dtype="bool")
        for i, acc in enumerate(accs):
            output_storage[1 + i][0] = acc

    @staticmethod
    def _part(acc, spec, sources):
        """``(g, rows)``: the gradient of ``acc`` (rows: None, or the rows
        of ``acc`` it goes to); ValueError when it does not fit."""
        src, axis, sizes, part, words = spec
        g = sources[src]
        if axis >= 0:
            cuts = sources[sizes]
            start = int(np.sum(cuts[:part]))
            index = [slice(None)] * g.ndim
            index[axis] = slice(start, start + int(cuts[part]))
            g = g[tuple(index)]
        if words >= 0:
            if g.shape[1:] != acc.shape[1:]:
                raise ValueError("rows of shape %s for an accumulator of "
                                 "shape %s" % (g.shape[1:], acc.shape))
            rows = sources[words]
            bad = np.flatnonzero((rows < 0) | (rows >= acc.shape[0]))
            if bad.size:
                raise IndexError("AccumulateIfFinite: row %d of an "
                                 "accumulator of %d rows"
                                 % (rows[bad[0]], acc.shape[0]))
            return g, rows
        if g.shape != acc.shape:
            raise ValueError("gradient of shape %s for an accumulator of "
                             "shape %s" % (g.shape, acc.shape))
        return g, None

    def infer_shape(self, node, shapes):
        n = len(self.spec)
        return [()] + list(shapes[1:1 + n])

    def grad(self, inputs, output_grads):
        return [theano.gradient.DisconnectedType()() for _ in inputs]

    def connection_pattern(self, node):
        return [[False] * len(node.outputs) for _ in node.inputs]


@theano.gof.local_optimizer([AccumulateIfFinite])
def _inplace_accumulate(node):
    """Make :class:`AccumulateIfFinite` update its accumulators in place
    (a graph may not contain in-place ops; optimizers introduce them, and
    Theano's destroy handler refuses them where unsafe)."""
    if isinstance(node.op, AccumulateIfFinite) and not node.op.inplace:
        return AccumulateIfFinite(node.op.spec, inplace=True)(
            *node.inputs, return_list=True)
    return False


theano.compile.optdb.register(
    "lstm_accum_inplace_accumulate",
    theano.gof.TopoOptimizer(
        _inplace_accumulate,
        failure_callback=theano.gof.TopoOptimizer.warn_inplace),
    60, "fast_run", "inplace")


def _row_lookup_gradient(g, acc):
    """``(rows, ids, zeros)`` when ``g`` is the gradient of a row lookup
    ``W[ids]`` -- ``AdvancedIncSubtensor1{inc}(zeros, rows, ids)`` -- of a
    matrix of ``acc``'s type; else None."""
    node = g.owner
    lookup = T.subtensor.AdvancedIncSubtensor1
    if node is None or not isinstance(node.op, lookup) or \
            node.op.set_instead_of_inc:
        return None
    zeros, rows, ids = node.inputs
    if g.type != acc.type or g.ndim != 2 or rows.ndim != 2 or \
            rows.dtype != acc.dtype or any(rows.broadcastable) or \
            ids.ndim != 1 or ids.dtype not in INDEX_DTYPES:
        return None
    try:
        if T.get_scalar_constant_value(zeros) != 0:
            return None
    except T.NotScalarConstantError:
        return None
    return rows, ids, zeros


def _split_parts(var_of, axis_ok):
    """``{i: (split node, axis, part)}`` for the ``i`` whose ``var_of[i]``
    is an output of a ``Split`` every output of which is some
    ``var_of[j]``, cut along a constant axis that ``axis_ok`` accepts."""
    parts = collections.defaultdict(dict)
    for i, v in var_of.items():
        node = v.owner
        if node is not None and isinstance(node.op, T.Split):
            parts[node][node.outputs.index(v)] = i
    out = {}
    for node, by_part in parts.items():
        try:
            axis = int(T.get_scalar_constant_value(node.inputs[1]))
        except T.NotScalarConstantError:
            continue
        x = node.inputs[0]
        if axis < 0:
            axis += x.ndim
        if len(by_part) == len(node.outputs) and 0 <= axis < x.ndim and \
                axis_ok(axis):
            for part, i in by_part.items():
                out[i] = (node, axis, part)
    return out


def accumulate_spec(accs, grads):
    """The ``spec`` and source tensors of :class:`AccumulateIfFinite`.

    A gradient that is an output of a ``Split`` whose every output is the
    gradient of one of ``accs`` (and of the accumulator's dtype) is read as
    a view of the unsplit tensor. The gradient of a row lookup ``W[ids]``
    (zeros with rows added at ``ids``) becomes the rows it touches
    (:class:`~lstm_accum.ops.row_sums.RowSums`, one for the gates of a
    ``Split`` of those rows), added to those rows of the accumulator only:
    the same sums, bit for bit, without the dense zeros. Any other gradient
    is cast to its accumulator's dtype and added whole.

    Parameters
    ----------
    accs : list of shared variables
        The accumulators.
    grads : list of Theano tensors
        One gradient per accumulator.

    Returns
    -------
    spec : tuple of 5-tuples of int
        The op's ``spec`` (see :class:`AccumulateIfFinite`).
    sources : list of Theano tensors
        The op's source inputs, which ``spec`` indexes.

    Examples
    --------
    >>> spec, sources = accumulate_spec(accs, theano.grad(loss, params))
    ... # doctest: +SKIP
    >>> ok, *new = AccumulateIfFinite(spec)(loss, *(accs + sources))
    ... # doctest: +SKIP
    """
    lookups = {}                 # i -> (rows, ids, zeros)
    for i, (acc, g) in enumerate(zip(accs, grads)):
        found = _row_lookup_gradient(g, acc)
        if found is not None:
            lookups[i] = found
    # Gates' rows cut by columns from one matrix, all looked up by the same
    # ids: one RowSums on the matrix.
    row_split = _split_parts(dict((i, r[0]) for i, r in lookups.items()),
                             lambda axis: axis == 1)
    ids_of = collections.defaultdict(set)
    for i, (node, _, _) in row_split.items():
        ids_of[node].add(lookups[i][1])
    row_split = dict((i, p) for i, p in row_split.items()
                     if len(ids_of[p[0]]) == 1)
    split_of = _split_parts(
        dict((i, g) for i, (acc, g) in enumerate(zip(accs, grads))
             if i not in lookups and g.dtype == acc.dtype and
             g.broadcastable == acc.broadcastable), lambda axis: True)
    sources, position, spec = [], {}, []
    row_sums_of = {}

    def source(var):
        if var not in position:
            position[var] = len(sources)
            sources.append(var)
        return position[var]

    def sums_of(rows, ids, zeros):
        if (rows, ids) not in row_sums_of:
            row_sums_of[rows, ids] = RowSums()(rows, ids, zeros.shape[0])
        return row_sums_of[rows, ids]

    for i, (acc, g) in enumerate(zip(accs, grads)):
        if i in row_split:
            node, axis, part = row_split[i]
            rows, ids, zeros = lookups[i]
            words, sums = sums_of(node.inputs[0], ids, zeros)
            spec.append((source(sums), axis, source(node.inputs[2]), part,
                         source(words)))
        elif i in lookups:
            words, sums = sums_of(*lookups[i])
            spec.append((source(sums), -1, -1, -1, source(words)))
        elif i in split_of:
            node, axis, part = split_of[i]
            spec.append((source(node.inputs[0]), axis,
                         source(node.inputs[2]), part, -1))
        else:
            g = T.patternbroadcast(T.cast(g, acc.dtype), acc.broadcastable)
            spec.append((source(g), -1, -1, -1, -1))
    return tuple(spec), sources


def on_cpu():
    """Whether Theano computes on the CPU (where these Python ops belong)."""
    return theano.config.device.startswith("cpu")


def squared_norm(tensors, divisor=None):
    """The sum of the squares of every element of ``tensors``, each
    divided first by ``divisor`` (an integer or float scalar, cast to each
    tensor's dtype) if given: ``SquaredNorm`` on the CPU, Theano
    reductions elsewhere."""
    if on_cpu():
        if divisor is None:
            return SquaredNorm()(*tensors)
        return SquaredNorm(divided=True)(T.cast(divisor, "float64"),
                                         *tensors)
    if divisor is not None:
        tensors = [t / T.cast(divisor, t.dtype) for t in tensors]
    return sum(T.sum(T.sqr(t), dtype="float64") for t in tensors)


def all_finite(tensors):
    """``AllFinite`` on the CPU; one Theano reduction per tensor elsewhere
    (a Python op would copy device arrays to the host)."""
    if on_cpu():
        return AllFinite()(*tensors)
    ok = isfinite(T.sum(tensors[0]))
    for t in tensors[1:]:
        ok = ok & isfinite(T.sum(t))
    return ok


class _Zero(theano.scalar.UnaryScalarOp):
    """The scalar zero of its input's type, whatever the input."""

    def impl(self, x):
        return type(x)(0)

    def c_code(self, node, name, inputs, outputs, sub):
        return "%s = 0;" % outputs[0]

    def c_code_cache_version(self):
        return (1,)

    def grad(self, inputs, output_grads):
        return [inputs[0].zeros_like()]


_ZERO = T.Elemwise(_Zero(theano.scalar.transfer_type(0)), name="Zero")


def zeroed(x):
    """Zeros of ``x``'s shape and dtype: an elementwise operation of ``x``
    on the CPU, ``T.zeros_like`` elsewhere.

    As the new value of an accumulator, the CPU's is written in the
    accumulator's place by the same loop that reads it for the update
    (:mod:`.simd_elemwise`), while the array is in cache; ``zeros_like`` is
    a new array filled with zeros, a pass over memory of its own.
    """
    if on_cpu() and x.ndim > 0:
        return _ZERO(x)
    return T.zeros_like(x)
