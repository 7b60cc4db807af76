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

Accuracy: float64 agrees with a SciPy reference to ~1e-15. In float32,
``exp`` is a Cephes polynomial (relative error ~1e-7,
:mod:`lstm_accum.ops.base`) and the sums are kept in double: the softmax
denominators (in float32 they were off by ~1e-6 relative) and the bias
gradient (float32 sums over 4000 rows, V = 2000, were off by ~1e-6 of its
largest element; double sums, in blocks of 16 float32 rows, by ~3e-8, the
final rounding). Both then agree with Theano's operation, which sums in
double too, to ~1e-7.

Speed (``benchmarks/softmax_nll.py``, float32, V = 2000, one core): about
0.6 ns per element forward and 1 ns forward + backward, ~10x Theano's
operation.  float64 uses the C library's scalar ``exp`` and is ~2x.

Both operations have a NumPy ``perform`` (Theano's Python linker uses it)
and no GPU implementation.
"""
import numpy as np

from ..backend import EmptyProps, theano, T
from .base import FLOAT_DTYPES, INDEX_DTYPES, CpuCOp, c_types

__all__ = ["SoftmaxNLL", "SoftmaxNLLGrad", "softmax_nll"]

_VERSION = 5
# No properties, but not the false ``()``: Theano 1.0.5 would take the ops
# as unversioned and compile them again in every process (see
# lstm_accum.backend.patches.EmptyProps, which patches Theano's own ops so).
_NO_PROPS = EmptyProps()


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
    """The base of both ops: their loops reduce with ``#pragma omp simd``."""

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
    __props__ = _NO_PROPS
    c_version = _VERSION

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
        if N == 0:
            outputs[0][0] = np.zeros(0, x.dtype)
            outputs[1][0] = np.zeros((0, V), x.dtype)
            return
        z = x + b
        m = z.max(axis=1)
        e = np.exp(z - m[:, None])
        s = e.sum(axis=1)
        outputs[0][0] = (np.log(s) - (z[np.arange(N), y] - m)).astype(
            x.dtype)
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
        dlogits, db = SoftmaxNLLGrad()(g_nll, sm, y)
        if not isinstance(g_sm.type, DisconnectedType):
            # A cost that also uses the softmax (rare; the training loss
            # does not): its Jacobian-vector product,
            # d z = sm * (g - sum(sm * g)), added symbolically.
            d_sm = sm * (g_sm - (sm * g_sm).sum(axis=1, keepdims=True))
            dlogits = dlogits + d_sm
            db = db + d_sm.sum(axis=0)
        return [dlogits, db, DisconnectedType()()]

    def c_code(self, node, name, inputs, outputs, sub):
        x, b, y = inputs
        nll, sm = outputs
        ctype, typenum, itype = c_types(node.inputs[0], node.inputs[2])
        fail = sub["fail"]
        return """
        {
        PyArrayObject *cx = NULL, *cb = NULL, *cy = NULL;
        int ok = 0;
        npy_intp N, V, bad;
        cx = PyArray_GETCONTIGUOUS(%(x)s);
        cb = PyArray_GETCONTIGUOUS(%(b)s);
        cy = PyArray_GETCONTIGUOUS(%(y)s);
        if (!cx || !cb || !cy)
            goto done_%(name)s;
        N = PyArray_DIMS(cx)[0];
        V = PyArray_DIMS(cx)[1];
        if (PyArray_DIMS(cb)[0] != V || PyArray_DIMS(cy)[0] != N) {
            PyErr_Format(PyExc_ValueError,
                "SoftmaxNLL: inconsistent shapes: logits (%%ld, %%ld), "
                "b (%%ld,), y (%%ld,) (expected b (V,) and y (N,) for "
                "logits (N, V))", (long)N, (long)V,
                (long)PyArray_DIMS(cb)[0], (long)PyArray_DIMS(cy)[0]);
            goto done_%(name)s;
        }
        bad = lstm_accum_first_bad_target(
            N, V, (const %(itype)s*)PyArray_DATA(cy));
        if (bad >= 0) {
            PyErr_Format(PyExc_ValueError,
                "SoftmaxNLL: target %%lld (row %%ld) is out of range for "
                "V = %%ld classes (targets must be in [0, %%ld))",
                (long long)((const %(itype)s*)PyArray_DATA(cy))[bad],
                (long)bad, (long)V, (long)V);
            goto done_%(name)s;
        }
        {
            npy_intp ndims[1] = {N};
            npy_intp sdims[2] = {N, V};
            if (lstm_accum_prepare_output(&%(nll)s, 1, ndims, %(typenum)s)
                || lstm_accum_prepare_output(&%(sm)s, 2, sdims, %(typenum)s))
                goto done_%(name)s;
        }
        lstm_accum_softmax_nll_forward<%(ctype)s, %(itype)s>(
            N, V, (const %(ctype)s*)PyArray_DATA(cx),
            (const %(ctype)s*)PyArray_DATA(cb),
            (const %(itype)s*)PyArray_DATA(cy),
            (%(ctype)s*)PyArray_DATA(%(nll)s),
            (%(ctype)s*)PyArray_DATA(%(sm)s));
        ok = 1;
        done_%(name)s:
        Py_XDECREF(cx); Py_XDECREF(cb); Py_XDECREF(cy);
        if (!ok) { %(fail)s }
        }
        """ % locals()


class SoftmaxNLLGrad(_SimdReductionCOp):
    """Gradient of :class:`SoftmaxNLL` with respect to the logits and bias.

    Inputs: ``g (N,)`` (the gradient of the loss with respect to ``nll``),
    the softmax ``sm (N, V)`` of the forward pass and the targets ``y (N,)``.
    Outputs: ``dlogits = g[:, None] * (sm - onehot(y))`` ``(N, V)`` and
    ``db = dlogits.sum(axis=0)`` ``(V,)``, summed in double precision.
    """
    __props__ = _NO_PROPS
    c_version = _VERSION

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

    def c_code(self, node, name, inputs, outputs, sub):
        g, sm, y = inputs
        dx, db = outputs
        ctype, typenum, itype = c_types(node.inputs[1], node.inputs[2])
        fail = sub["fail"]
        return """
        {
        PyArrayObject *cg = NULL, *csm = NULL, *cy = NULL;
        double* acc = NULL;
        int ok = 0;
        npy_intp N, V, bad;
        cg = PyArray_GETCONTIGUOUS(%(g)s);
        csm = PyArray_GETCONTIGUOUS(%(sm)s);
        cy = PyArray_GETCONTIGUOUS(%(y)s);
        if (!cg || !csm || !cy)
            goto done_%(name)s;
        N = PyArray_DIMS(csm)[0];
        V = PyArray_DIMS(csm)[1];
        if (PyArray_DIMS(cg)[0] != N || PyArray_DIMS(cy)[0] != N) {
            PyErr_Format(PyExc_ValueError,
                "SoftmaxNLLGrad: inconsistent shapes: g (%%ld,), softmax "
                "(%%ld, %%ld), y (%%ld,) (expected g (N,) and y (N,) for a "
                "softmax (N, V))", (long)PyArray_DIMS(cg)[0], (long)N,
                (long)V, (long)PyArray_DIMS(cy)[0]);
            goto done_%(name)s;
        }
        bad = lstm_accum_first_bad_target(
            N, V, (const %(itype)s*)PyArray_DATA(cy));
        if (bad >= 0) {
            PyErr_Format(PyExc_ValueError,
                "SoftmaxNLLGrad: target %%lld (row %%ld) is out of range for "
                "V = %%ld classes (targets must be in [0, %%ld))",
                (long long)((const %(itype)s*)PyArray_DATA(cy))[bad],
                (long)bad, (long)V, (long)V);
            goto done_%(name)s;
        }
        {
            npy_intp xdims[2] = {N, V};
            npy_intp vdims[1] = {V};
            if (lstm_accum_prepare_output(&%(dx)s, 2, xdims, %(typenum)s)
                || lstm_accum_prepare_output(&%(db)s, 1, vdims, %(typenum)s))
                goto done_%(name)s;
        }
        /* scratch: V doubles (the sums), then V values (a block's) */
        acc = (double*)malloc((sizeof(double) + sizeof(%(ctype)s))
                              * (V ? V : 1));
        if (!acc) {
            PyErr_NoMemory();
            goto done_%(name)s;
        }
        lstm_accum_softmax_nll_backward<%(ctype)s, %(itype)s>(
            N, V, (const %(ctype)s*)PyArray_DATA(cg),
            (const %(ctype)s*)PyArray_DATA(csm),
            (const %(itype)s*)PyArray_DATA(cy),
            (%(ctype)s*)PyArray_DATA(%(dx)s),
            (%(ctype)s*)PyArray_DATA(%(db)s), acc, (%(ctype)s*)(acc + V));
        ok = 1;
        done_%(name)s:
        free(acc);
        Py_XDECREF(cg); Py_XDECREF(csm); Py_XDECREF(cy);
        if (!ok) { %(fail)s }
        }
        """ % locals()


# The loops, as C++ templates instantiated for float and double values and
# int32 and int64 targets.  noinline: inlined into Theano's large generated
# function, GCC no longer vectorises them.
_LOOPS = r"""
template <typename I>
static npy_intp lstm_accum_first_bad_target(npy_intp N, npy_intp V,
                                            const I* y)
{
    for (npy_intp n = 0; n < N; ++n)
        if (y[n] < 0 || (npy_intp)y[n] >= V)
            return n;
    return -1;
}

/* nll[n] = log(sum_j exp(z[n, j] - m_n)) - (z[n, y_n] - m_n) and
   sm[n, :] = softmax(z[n, :]), z = x + b, m_n = max_j z[n, j].
   The targets have been checked. */
template <typename T, typename I>
__attribute__((noinline)) static void lstm_accum_softmax_nll_forward(
    npy_intp N, npy_intp V, const T* x, const T* __restrict__ b,
    const I* y, T* nll, T* sm)
{
    for (npy_intp n = 0; n < N; ++n) {
        const T* __restrict__ xr = x + n * V;
        T* __restrict__ sr = sm + n * V;
        T m = xr[0] + b[0];
#pragma omp simd reduction(max:m)
        for (npy_intp j = 0; j < V; ++j) {
            T z = xr[j] + b[j];
            m = z > m ? z : m;
        }
#pragma omp simd
        for (npy_intp j = 0; j < V; ++j)
            sr[j] = lstm_accum_exp(xr[j] + b[j] - m);
        /* Summed in double: in float, the small terms added to the lane
           that holds exp(0) = 1 lose their low bits (the sum was off by
           ~1e-6 relative for logits spread like a language model's).  A
           loop of its own over the (cached) row: summed inside the exp loop,
           GCC repeats exp's range selects on the doubles, 35% slower. */
        double s = 0;
#pragma omp simd reduction(+:s)
        for (npy_intp j = 0; j < V; ++j)
            s += sr[j];
        const T inv = (T)(1.0 / s);
#pragma omp simd
        for (npy_intp j = 0; j < V; ++j)
            sr[j] *= inv;
        const npy_intp t = (npy_intp)y[n];
        nll[n] = (T)(std::log(s) - (double)(xr[t] + b[t] - m));
    }
}

/* d[j] = g * s[j]; part[j] += d[j] for j < len. */
template <typename T>
static inline void lstm_accum_softmax_nll_grad_run(
    npy_intp len, T g, const T* __restrict__ s, T* __restrict__ d,
    T* __restrict__ part)
{
#pragma omp simd
    for (npy_intp j = 0; j < len; ++j) {
        T v = g * s[j];
        d[j] = v;
        part[j] += v;
    }
}

/* db: rows summed in T into part, part added to the double sums every
   LSTM_ACCUM_DB_BLOCK rows.  float32 sums over thousands of rows lose ~1e-6
   relative; double sums row by row took 40% longer than float ones
   (N = 4000, V = 2000), blocks of 16 rows 13%, as accurate. */
#define LSTM_ACCUM_DB_BLOCK 16

/* dx[n, :] = g[n] * (sm[n, :] - onehot(y_n)); db = sum_n dx[n, :].
   The target's element is g * (sm - 1), computed apart so that the rest of
   the row is one branch-free loop.  acc: V doubles, part: V T's (scratch). */
template <typename T, typename I>
__attribute__((noinline)) static void lstm_accum_softmax_nll_backward(
    npy_intp N, npy_intp V, const T* g, const T* sm, const I* y, T* dx,
    T* __restrict__ db, double* __restrict__ acc, T* __restrict__ part)
{
    memset(acc, 0, sizeof(double) * V);
    for (npy_intp n0 = 0; n0 < N; n0 += LSTM_ACCUM_DB_BLOCK) {
        const npy_intp n1 = N - n0 < LSTM_ACCUM_DB_BLOCK ? N
                            : n0 + LSTM_ACCUM_DB_BLOCK;
        memset(part, 0, sizeof(T) * V);
        for (npy_intp n = n0; n < n1; ++n) {
            const T* s = sm + n * V;
            T* d = dx + n * V;
            const T gn = g[n];
            const npy_intp t = (npy_intp)y[n];
            lstm_accum_softmax_nll_grad_run<T>(t, gn, s, d, part);
            d[t] = gn * (s[t] - (T)1);
            part[t] += d[t];
            lstm_accum_softmax_nll_grad_run<T>(V - t - 1, gn, s + t + 1,
                                               d + t + 1, part + t + 1);
        }
#pragma omp simd
        for (npy_intp j = 0; j < V; ++j)
            acc[j] += part[j];
    }
#pragma omp simd
    for (npy_intp j = 0; j < V; ++j)
        db[j] = (T)acc[j];
}
"""

SoftmaxNLL.c_loops = SoftmaxNLLGrad.c_loops = _LOOPS
