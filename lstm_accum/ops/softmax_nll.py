"""Softmax cross-entropy with a bias, as one compiled pass each way (CPU).

The output layer of a language model computes, for every token ``n`` with
target ``y_n``, ``nll_n = -log softmax(x_n W + b)[y_n]``.  Theano's fused
operation for it (``crossentropy_softmax_argmax_1hot_with_bias``) runs scalar
C loops, and its gradient is a second scalar operation plus a separate
``Sum`` over the rows for the bias.  :class:`SoftmaxNLL` and
:class:`SoftmaxNLLGrad` compute the same numbers with vectorised loops:

* forward, per row: ``z = logits + b``; ``m = max(z)``; ``e = exp(z - m)``
  written into the softmax output and summed (``s``); the row scaled by
  ``1 / s``; ``nll = log(s) - (z[y] - m)``.  The maximum is subtracted
  first, so the loss and the softmax are finite for any finite logits;
* backward, per row: ``dlogits = g * (softmax - onehot(y))`` and, in the
  same pass, ``db += dlogits`` (the bias gradient, the sum over rows).

The matrix product ``x W`` stays outside (Theano's ``Dot22``, BLAS): the
operations take the logits *without* the bias.

Accuracy: in float32, ``exp`` is a Cephes polynomial (within 2 ulps,
:mod:`lstm_accum.ops.base`) and the sums are kept in double: the softmax
denominators, and the bias gradient (in blocks of 16 float32 rows), whose
float32 sums over thousands of rows lose their low bits.  Both agree with
Theano's operation, which sums in double too, to float32 rounding
(``tests/test_softmax_nll.py``, ``tests/test_c_math_float32.py``).

Speed: in float32 about ten times Theano's operation
(``benchmarks/softmax_nll.py``); float64 uses the C library's scalar
``exp``.

The C code is in ``c_code/``: ``softmax_nll.c`` (the loops, C++ templates
over the value and the index type) and one file per operation for its node
(``softmax_nll_forward.c``, ``softmax_nll_grad.c``).

Both operations have a NumPy ``perform`` (Theano's Python linker uses it)
and no GPU implementation.
"""
import numpy as np

from ..backend import theano, T
from .base import FLOAT_DTYPES, INDEX_DTYPES, CpuCOp, NodeRewrite

__all__ = ["SoftmaxNLL", "SoftmaxNLLLoss", "SoftmaxNLLGrad",
           "SoftmaxNLLAndGrad", "softmax_nll"]

_VERSION = 7


def softmax_nll(logits, b, y):
    """Negative log-likelihood of the targets under ``softmax(logits + b)``.

    ``nll_n = logsumexp(z_n) - z_n[y_n]`` with ``z = logits + b``.

    Parameters
    ----------
    logits : Theano matrix ``(N, V)``, float32 or float64
        Scores without the bias (e.g. ``features.dot(W)``).
    b : Theano vector ``(V,)``
        The bias (cast to the dtype of ``logits``).
    y : Theano vector ``(N,)``, int32 or int64
        Target classes, in ``[0, V)``.

    Returns
    -------
    Theano vector ``(N,)``
        One loss per row, in the dtype of ``logits``.  Differentiable with
        respect to ``logits`` and ``b``.

    Raises
    ------
    TypeError
        At build time, for wrong numbers of dimensions or dtypes.
    ValueError
        When run: a target outside ``[0, V)``, or ``b`` and ``y`` whose
        lengths do not match ``logits``.

    Examples
    --------
    >>> import numpy as np
    >>> from lstm_accum.backend import theano, T
    >>> x, b, y = T.dmatrix(), T.dvector(), T.ivector()
    >>> f = theano.function([x, b, y], softmax_nll(x, b, y))
    >>> f(np.zeros((1, 4)), np.zeros(4), np.array([2], "int32"))
    array([1.38629436])
    """
    return SoftmaxNLL()(logits, b, y)[0]


def _float_var(x, dtype=None, what="logits"):
    x = T.as_tensor_variable(x)
    if dtype is None:
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError("SoftmaxNLL: %s must be float32 or float64, got "
                            "%s" % (what, x.dtype))
    elif x.dtype != dtype:
        x = T.cast(x, dtype)
    return x


def _index_var(y, op):
    y = T.as_tensor_variable(y)
    if y.dtype not in INDEX_DTYPES:
        raise TypeError("%s: targets y must be int32 or int64, got %s; use "
                        "T.cast(y, 'int32')" % (op, y.dtype))
    return y


def _check_ndim(op, named):
    for what, v, nd in named:
        if v.ndim != nd:
            raise TypeError("%s: %s must have %d dimension(s), got %d (%s)"
                            % (op, what, nd, v.ndim, v.type))


def _check_targets(op, y, V):
    """ValueError naming the first target outside ``[0, V)``."""
    bad = np.flatnonzero((y < 0) | (y >= V))
    if bad.size:
        n = int(bad[0])
        raise ValueError(
            "%s: target %d (row %d) is out of range for V = %d classes "
            "(targets must be in [0, %d))" % (op, int(y[n]), n, V, V))


class _SimdReductionCOp(CpuCOp):
    """The base of both ops: their loops reduce with ``#pragma omp simd``;
    with ``team=True`` (set by :mod:`lstm_accum.ops.team`'s rewrite) they
    share their rows (forward) or columns (backward) out to the team of
    threads of ``c_code/team.c``, with the same results."""

    __props__ = ("team",)
    c_version = _VERSION

    def __init__(self, team=False):
        self.team = bool(team)

    def c_node_macros(self, node):
        return [("LSTM_ACCUM_TEAM", "true" if self.team else "false"),
                ("LSTM_ACCUM_SOFTMAX_OUT", str(len(node.outputs) - 1))]

    def c_compile_args(self):
        # -fopenmp-simd: the "#pragma omp simd reduction" of the max and of
        # the sum of the loops (without it GCC keeps float reductions
        # sequential); no OpenMP runtime is involved.
        return super().c_compile_args() + ["-fopenmp-simd"]


class SoftmaxNLL(_SimdReductionCOp):
    """Softmax cross-entropy of ``logits + b`` against integer targets.

    Inputs: ``logits (N, V)``, ``b (V,)``, ``y (N,)``.  Outputs: ``nll (N,)``
    and the softmax ``(N, V)``, the latter kept for the gradient
    (:class:`SoftmaxNLLGrad`); a cost may use it too (its gradient is then
    added symbolically).
    Use :func:`softmax_nll` for the loss alone.
    """
    c_files = ("team.c", "softmax_nll.c", "softmax_nll_forward.c")
    func_name = "APPLY_SPECIFIC(softmax_nll)"

    def make_node(self, logits, b, y):
        logits = _float_var(logits)
        b = _float_var(b, logits.dtype)
        y = _index_var(y, "SoftmaxNLL")
        _check_ndim("SoftmaxNLL", (("logits", logits, 2), ("b", b, 1),
                                   ("y", y, 1)))
        return theano.Apply(self, [logits, b, y],
                            [T.vector(dtype=logits.dtype),
                             T.matrix(dtype=logits.dtype)])

    def infer_shape(self, node, shapes):
        xs = shapes[0]
        return [(xs[0],), xs]

    def perform(self, node, inputs, outputs):
        x, b, y = inputs
        N, V = x.shape
        if b.shape != (V,) or y.shape != (N,):
            raise ValueError(
                "SoftmaxNLL: inconsistent shapes: logits %s, b %s, y %s "
                "(expected b (V,) and y (N,) for logits (N, V))"
                % (x.shape, b.shape, y.shape))
        _check_targets("SoftmaxNLL", y, V)
        softmax = len(outputs) > 1      # SoftmaxNLLLoss has none
        if N == 0:
            outputs[0][0] = np.zeros(0, x.dtype)
            if softmax:
                outputs[1][0] = np.zeros((0, V), x.dtype)
            return
        z = x + b
        m = z.max(axis=1)
        e = np.exp(z - m[:, None])
        s = e.sum(axis=1)
        outputs[0][0] = (np.log(s) - (z[np.arange(N), y] - m)).astype(
            x.dtype)
        if softmax:
            outputs[1][0] = (e / s[:, None]).astype(x.dtype)

    def connection_pattern(self, node):
        # Both outputs depend on logits and b, none on the integer targets.
        return [[True, True], [True, True], [False, False]]

    def L_op(self, inputs, outputs, output_grads):
        from theano.gradient import DisconnectedType
        logits, b, y = inputs
        g_nll, g_sm = output_grads
        sm = outputs[1]
        if isinstance(g_nll.type, DisconnectedType):
            g_nll = T.zeros_like(outputs[0])
        dlogits, db = SoftmaxNLLGrad(self.team)(g_nll, sm, y)
        if not isinstance(g_sm.type, DisconnectedType):
            # A cost that also uses the softmax (rare; the training loss
            # does not): its Jacobian-vector product,
            # d z = sm * (g - sum(sm * g)), added symbolically.
            d_sm = sm * (g_sm - (sm * g_sm).sum(axis=1, keepdims=True))
            dlogits = dlogits + d_sm
            db = db + d_sm.sum(axis=0)
        return [dlogits, db, DisconnectedType()()]


class SoftmaxNLLLoss(_SimdReductionCOp):
    """:class:`SoftmaxNLL`'s ``nll`` alone, for graphs that use neither its
    softmax nor its gradient (scoring, evaluation).

    The same numbers, bit for bit; each row's exponentials stay in a
    row of scratch instead of an ``(N, V)`` output that is written, scaled
    and thrown away.  Not built directly: the rewrite
    ``lstm_accum_softmax_loss`` (this module, in Theano's ``fast_run``)
    puts it in place of every :class:`SoftmaxNLL` whose softmax has no
    client.  No gradient.
    """
    c_files = SoftmaxNLL.c_files
    func_name = SoftmaxNLL.func_name

    def make_node(self, logits, b, y):
        full = SoftmaxNLL(self.team).make_node(logits, b, y)
        return theano.Apply(self, full.inputs, [full.outputs[0].type()])

    def infer_shape(self, node, shapes):
        return [(shapes[0][0],)]

    perform = SoftmaxNLL.perform

    def grad(self, inputs, output_grads):
        return [theano.gradient.grad_not_implemented(self, k, x)
                for k, x in enumerate(inputs)]


def _loss_alone(node):
    """``[nll]`` of a :class:`SoftmaxNLLLoss` for a :class:`SoftmaxNLL`
    node whose softmax has no client, else None."""
    if type(node.op) is SoftmaxNLL and not node.outputs[1].clients:
        return [SoftmaxNLLLoss(node.op.team)(*node.inputs), None]
    return None


class SoftmaxNLLGrad(_SimdReductionCOp):
    """Gradient of :class:`SoftmaxNLL` with respect to the logits and bias.

    Inputs: ``g (N,)`` (the gradient of the loss with respect to ``nll``),
    the softmax ``sm (N, V)`` of the forward pass and the targets ``y (N,)``.
    Outputs: ``dlogits = g[:, None] * (sm - onehot(y))`` ``(N, V)`` and
    ``db = dlogits.sum(axis=0)`` ``(V,)``, summed in double precision.
    """
    c_files = ("team.c", "softmax_nll.c", "softmax_nll_grad.c")
    func_name = "APPLY_SPECIFIC(softmax_nll_grad)"

    def make_node(self, g, sm, y):
        sm = _float_var(sm, what="the softmax")
        g = _float_var(g, sm.dtype)
        y = _index_var(y, "SoftmaxNLLGrad")
        _check_ndim("SoftmaxNLLGrad", (("g", g, 1), ("sm", sm, 2),
                                       ("y", y, 1)))
        return theano.Apply(self, [g, sm, y],
                            [T.matrix(dtype=sm.dtype),
                             T.vector(dtype=sm.dtype)])

    def infer_shape(self, node, shapes):
        ss = shapes[1]
        return [ss, (ss[1],)]

    def perform(self, node, inputs, outputs):
        g, sm, y = inputs
        N, V = sm.shape
        if g.shape != (N,) or y.shape != (N,):
            raise ValueError(
                "SoftmaxNLLGrad: inconsistent shapes: g %s, softmax %s, y %s "
                "(expected g (N,) and y (N,) for a softmax (N, V))"
                % (g.shape, sm.shape, y.shape))
        _check_targets("SoftmaxNLLGrad", y, V)
        d = g[:, None] * sm
        rows = np.arange(N)
        d[rows, y] = g * (sm[rows, y] - 1)
        outputs[0][0] = d.astype(sm.dtype)
        outputs[1][0] = d.sum(axis=0, dtype=np.float64).astype(sm.dtype)


class SoftmaxNLLAndGrad(_SimdReductionCOp):
    """:class:`SoftmaxNLL` and its :class:`SoftmaxNLLGrad` for a gradient
    of one with respect to every ``nll`` (a summed loss), in one pass.

    Inputs: ``logits (N, V)``, ``b (V,)``, ``y (N,)``.  Outputs: ``nll
    (N,)``, ``dlogits = softmax - onehot(y)`` ``(N, V)`` and ``db``, the
    sum of ``dlogits`` over the rows.  The same numbers, bit for bit: each
    block of 16 rows runs the forward's loop and then the backward's on
    rows still in cache, so the softmax is never written out and read
    back.  Not built directly: the rewrite ``lstm_accum_softmax_and_grad``
    (this module, in Theano's ``fast_run``) puts it in place of a
    :class:`SoftmaxNLL` whose softmax feeds only a :class:`SoftmaxNLLGrad`
    of a constant one, as the gradient of a sum of the losses does.  No
    gradient of its own.
    """
    c_files = ("team.c", "softmax_nll.c", "softmax_nll_and_grad.c")
    func_name = "APPLY_SPECIFIC(softmax_nll_and_grad)"

    def make_node(self, logits, b, y):
        full = SoftmaxNLL(self.team).make_node(logits, b, y)
        nll, dlogits = full.outputs
        return theano.Apply(self, full.inputs,
                            [nll.type(), dlogits.type(), full.inputs[1].type()])

    def infer_shape(self, node, shapes):
        xs = shapes[0]
        return [(xs[0],), xs, (xs[1],)]

    def perform(self, node, inputs, outputs):
        x, b, y = inputs
        nll, sm, grads = [None], [None], ([None], [None])
        SoftmaxNLL.perform(self, node, inputs, [nll, sm])
        SoftmaxNLLGrad.perform(self, node, [np.ones_like(nll[0]), sm[0], y],
                               grads)
        outputs[0][0], outputs[1][0], outputs[2][0] = \
            nll[0], grads[0][0], grads[1][0]

    def grad(self, inputs, output_grads):
        return [theano.gradient.grad_not_implemented(self, k, x)
                for k, x in enumerate(inputs)]


def _is_one(g):
    """Whether ``g`` is a constant one, filled to a vector (``Alloc``) or
    not: the gradient of a plain sum."""
    if g.owner is not None and isinstance(g.owner.op, T.Alloc):
        g = g.owner.inputs[0]
    try:
        return T.get_scalar_constant_value(g, elemwise=False) == 1
    except T.NotScalarConstantError:
        return False


def _with_grad(node):
    """``{old: new}`` putting a :class:`SoftmaxNLLAndGrad` in place of a
    :class:`SoftmaxNLL` node whose softmax feeds only a
    :class:`SoftmaxNLLGrad` of a constant one and the same targets; else
    None."""
    if type(node.op) is not SoftmaxNLL:
        return None
    clients = node.outputs[1].clients
    if len(clients) != 1 or clients[0][0] == "output":
        return None
    grad = clients[0][0]
    g, sm, y = grad.inputs
    if type(grad.op) is not SoftmaxNLLGrad or clients[0][1] != 1 or \
            y is not node.inputs[2] or not _is_one(g):
        return None
    nll, dlogits, db = SoftmaxNLLAndGrad(node.op.team)(
        *node.inputs, return_list=True)
    return {node.outputs[0]: nll, grad.outputs[0]: dlogits,
            grad.outputs[1]: db}


#: The rewrites' names in Theano's optdb (in ``fast_run``).
WITH_GRAD = "lstm_accum_softmax_and_grad"
LOSS_ALONE = "lstm_accum_softmax_loss"
# Before the team's rewrite (98), which gives the new node its threads.
theano.compile.optdb.register(LOSS_ALONE, NodeRewrite(_loss_alone, LOSS_ALONE),
                              97, "fast_run")
theano.compile.optdb.register(WITH_GRAD, NodeRewrite(_with_grad, WITH_GRAD),
                              96.9, "fast_run")
