"""A whole LSTM sequence as one compiled operation (CPU).

``lasagne.layers.LSTMLayer`` runs ``theano.scan``: every time step is a small
Theano graph of a dozen operations, run by scan's loop, and its gradient is a
second scan with a dozen more.  On the CPU the bookkeeping of those graphs
costs as much as the arithmetic at the sizes of a language model, and scan's
gradient adds the ``(H, 4H)`` recurrent weight gradient one step at a time
(a copy of the whole accumulator per step).

:class:`FusedLSTM` computes the same numbers in two C loops instead:

* forward, per step: one matrix product ``h_{t-1} W_hid`` and one pass over
  the ``(B, H)`` units for the gates, the cell and the output;
* backward (:class:`FusedLSTMGrad`), per step: one pass for the gate
  gradients (clipped as Lasagne's ``grad_clipping`` clips them) and one
  product ``dG W_hid^T``; the recurrent weight gradient is one product over
  all steps at the end, ``[h0; h_1..h_{T-1}]^T dG`` (BLAS).

The per-step products: in float32 on a CPU with AVX-512, our own kernel on
``W_hid`` packed once per call by the threads that use it
(:mod:`lstm_accum.ops.panels`; about twice
OpenBLAS's speed at a batch of 32), with the steps of large batches shared
by a team of threads; their results do not depend on the number of threads
and differ from the BLAS path's by float32 rounding (the order of each
sum).  In float64, and on other CPUs, BLAS, through Theano's own BLAS
interface (``blas.ldflags`` applies as for Theano's ``Gemm``).

The equations are those of ``lasagne.layers.LSTMLayer`` 0.1 with its default
nonlinearities (sigmoid gates, tanh cell and output), peepholes (the output
gate's added after its sigmoid, as Lasagne 0.1 does) and ``grad_clipping``
(the gradient of the gate pre-activations ``x_t W_in + b + h_{t-1} W_hid``
clipped elementwise).  Other configurations (masks, ``backwards``,
``gradient_steps``, other nonlinearities) keep using scan; see
:func:`fused_supported`.

The operations have a NumPy ``perform`` too (Theano's Python linker uses it),
and no GPU implementation: on a GPU device the model builder keeps scan.
"""
import numpy as np

from ..backend import lasagne, theano, T
from .base import CpuCOp, unavailable_reason
from .panels import PANEL_CODE

__all__ = ["FusedLSTM", "FusedLSTMGrad", "fused_lstm", "fused_supported"]

_VERSION = 18


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def fused_supported(layer, mask=None):
    """Why ``layer`` cannot run as a :class:`FusedLSTM`, or None if it can.

    Parameters
    ----------
    layer : lasagne.layers.LSTMLayer
    mask : Theano variable or None
        The mask the layer would get (masks are not fused).

    Returns
    -------
    str or None
        A short reason, e.g. ``'a mask input'``; None when supported.
    """
    nl = lasagne.nonlinearities
    if mask is not None:
        return "a mask input"
    if layer.backwards:
        return "backwards=True"
    if layer.gradient_steps != -1:
        return "gradient_steps != -1"
    if getattr(layer, "only_return_final", False):
        return "only_return_final=True"
    for name in ("nonlinearity_ingate", "nonlinearity_forgetgate",
                 "nonlinearity_outgate"):
        if getattr(layer, name) is not nl.sigmoid:
            return "%s other than sigmoid" % name
    for name in ("nonlinearity_cell", "nonlinearity"):
        if getattr(layer, name) is not nl.tanh:
            return "%s other than tanh" % name
    return unavailable_reason()


def fused_lstm(input_contrib, W_hid, W_ci, W_cf, W_co, cell_init, hid_init,
               grad_clipping=False, b=None):
    """Run an LSTM over a whole (time-major) sequence batch.

    Parameters
    ----------
    input_contrib : Theano tensor3 ``(T, B, 4H)``
        ``x_t W_in`` for every step, gates in Lasagne's order (input,
        forget, cell, output).
    W_hid : Theano matrix ``(H, 4H)``
        Stacked recurrent weights, same gate order.
    W_ci, W_cf, W_co : Theano vectors ``(H,)``
        Peephole weights (zeros for a layer without peepholes).
    cell_init, hid_init : Theano matrices ``(B, H)``
    grad_clipping : float or False
        Clip the gate pre-activation gradients to ``[-c, c]`` (Lasagne's
        ``grad_clipping``).
    b : Theano vector ``(4H,)``, optional
        Stacked gate biases, added inside the operation (whose gradient
        then sums the bias gradient in the same pass); default zeros.

    Returns
    -------
    Theano tensor3 ``(T, B, H)``
        The hidden states.
    """
    clip = 0.0 if grad_clipping is False or grad_clipping is None \
        else float(grad_clipping)
    input_contrib = T.as_tensor_variable(input_contrib)
    if b is None:
        b = T.zeros((input_contrib.shape[2],), dtype=input_contrib.dtype)
    return FusedLSTM(clip)(input_contrib, b, W_hid, W_ci, W_cf, W_co,
                           cell_init, hid_init)[0]


def _as_var(x, dtype):
    x = T.as_tensor_variable(x)
    if x.dtype != dtype:
        x = T.cast(x, dtype)
    return x


class FusedLSTM(CpuCOp):
    """Forward pass of an LSTM over ``(T, B, 4H)`` input contributions.

    Inputs: ``input_contrib (T, B, 4H)``, ``b (4H,)``, ``W_hid (H, 4H)``,
    ``W_ci, W_cf,
    W_co (H,)``, ``cell_init, hid_init (B, H)``.  Outputs: the hidden states
    ``(T, B, H)``, the cell states ``(T, B, H)`` and the gate activations
    ``(T, B, 4H)`` (input, forget, cell candidate, output before its
    peephole), the last two kept for the gradient.

    Parameters
    ----------
    grad_clipping : float
        0 for no clipping, else clip the gate pre-activation gradients to
        ``[-grad_clipping, grad_clipping]``.
    """
    __props__ = ("grad_clipping",)
    c_version = _VERSION

    def __init__(self, grad_clipping=0.0):
        self.grad_clipping = float(grad_clipping)

    def make_node(self, x, b, W_hid, W_ci, W_cf, W_co, c0, h0):
        x = T.as_tensor_variable(x)
        dtype = x.dtype
        if dtype not in ("float32", "float64"):
            raise TypeError("FusedLSTM takes float32 or float64 input, got %s"
                            % dtype)
        ins = [x] + [_as_var(v, dtype) for v in
                     (b, W_hid, W_ci, W_cf, W_co, c0, h0)]
        for v, nd in zip(ins, (3, 1, 2, 1, 1, 1, 2, 2)):
            if v.ndim != nd:
                raise TypeError("FusedLSTM: input %s has %d dimensions, "
                                "expected %d" % (v, v.ndim, nd))
        outs = [T.tensor3(dtype=dtype), T.tensor3(dtype=dtype),
                T.tensor3(dtype=dtype)]
        return theano.Apply(self, ins, outs)

    def infer_shape(self, node, shapes):
        xs, ws = shapes[0], shapes[2]
        hs = (xs[0], xs[1], ws[0])
        return [hs, hs, xs]

    def perform(self, node, inputs, outputs):
        x, b, W, wci, wcf, wco, c0, h0 = inputs
        steps, batch, _ = x.shape
        H = W.shape[0]
        hid = np.empty((steps, batch, H), x.dtype)
        cell = np.empty_like(hid)
        act = np.empty_like(x)
        c, h = c0, h0
        for t in range(steps):
            a = x[t] + b + h.dot(W)
            i = _sigmoid(a[:, :H] + c * wci)
            f = _sigmoid(a[:, H:2 * H] + c * wcf)
            g = np.tanh(a[:, 2 * H:3 * H])
            o_s = _sigmoid(a[:, 3 * H:])
            c = f * c + i * g
            h = (o_s + c * wco) * np.tanh(c)
            act[t] = np.concatenate([i, f, g, o_s], axis=1)
            cell[t], hid[t] = c, h
        outputs[0][0], outputs[1][0], outputs[2][0] = hid, cell, act

    def grad(self, inputs, output_grads):
        from theano.gradient import DisconnectedType
        x, b, W, wci, wcf, wco, c0, h0 = inputs
        hid, cell, act = self(*inputs)
        dhid, dcell, dact = output_grads
        if isinstance(dhid.type, DisconnectedType):
            dhid = T.zeros_like(hid)
        aux = [g for g in (dcell, dact)
               if not isinstance(g.type, DisconnectedType)]
        if not aux:
            return FusedLSTMGrad(self.grad_clipping)(
                W, wci, wcf, wco, c0, h0, hid, cell, act, dhid)
        # A cost that also uses the cell states or gate activations.
        if isinstance(dcell.type, DisconnectedType):
            dcell = T.zeros_like(cell)
        if isinstance(dact.type, DisconnectedType):
            dact = T.zeros_like(act)
        return FusedLSTMGrad(self.grad_clipping, aux=True)(
            W, wci, wcf, wco, c0, h0, hid, cell, act, dhid, dcell, dact)

    def connection_pattern(self, node):
        # Every input reaches every output.
        return [[True, True, True] for _ in node.inputs]

    def c_code(self, node, name, inputs, outputs, sub):
        hid, cell, act = outputs
        ctype = node.inputs[0].dtype == "float32" and "float" or "double"
        typenum = "NPY_FLOAT32" if ctype == "float" else "NPY_FLOAT64"
        fail = sub["fail"]
        ins = ", ".join(inputs)
        return """
        {
        /* x, b, W_hid, w_ci, w_cf, w_co, c0, h0 */
        PyArrayObject* in_[8] = {%(ins)s};
        PyArrayObject* c_[8];
        int ok = 0;
        npy_intp steps, batch, G, H;
        if (lstm_accum_contiguous(8, in_, c_))
            goto done_%(name)s;
        steps = PyArray_DIMS(c_[0])[0];
        batch = PyArray_DIMS(c_[0])[1];
        G = PyArray_DIMS(c_[0])[2];
        H = PyArray_DIMS(c_[2])[0];
        if (G != 4 * H || PyArray_DIMS(c_[2])[1] != G
                || PyArray_DIMS(c_[1])[0] != G
                || PyArray_DIMS(c_[3])[0] != H || PyArray_DIMS(c_[4])[0] != H
                || PyArray_DIMS(c_[5])[0] != H
                || PyArray_DIMS(c_[6])[0] != batch
                || PyArray_DIMS(c_[6])[1] != H
                || PyArray_DIMS(c_[7])[0] != batch
                || PyArray_DIMS(c_[7])[1] != H) {
            PyErr_Format(PyExc_ValueError,
                "FusedLSTM: inconsistent shapes: input (%%ld, %%ld, %%ld), "
                "b (%%ld,), W_hid (%%ld, %%ld), peepholes (%%ld, %%ld, %%ld), "
                "cell_init (%%ld, %%ld), hid_init (%%ld, %%ld)",
                (long)steps, (long)batch, (long)G,
                (long)PyArray_DIMS(c_[1])[0],
                (long)PyArray_DIMS(c_[2])[0], (long)PyArray_DIMS(c_[2])[1],
                (long)PyArray_DIMS(c_[3])[0], (long)PyArray_DIMS(c_[4])[0],
                (long)PyArray_DIMS(c_[5])[0],
                (long)PyArray_DIMS(c_[6])[0], (long)PyArray_DIMS(c_[6])[1],
                (long)PyArray_DIMS(c_[7])[0], (long)PyArray_DIMS(c_[7])[1]);
            goto done_%(name)s;
        }
        {
            npy_intp hdims[3] = {steps, batch, H};
            npy_intp adims[3] = {steps, batch, G};
            if (lstm_accum_prepare_output(&%(hid)s, 3, hdims, %(typenum)s)
                || lstm_accum_prepare_output(&%(cell)s, 3, hdims, %(typenum)s)
                || lstm_accum_prepare_output(&%(act)s, 3, adims, %(typenum)s))
                goto done_%(name)s;
        }
        #define D_(a) ((%(ctype)s*)PyArray_DATA(a))
        lstm_accum_fused_forward_%(ctype)s(
            (int)steps, (int)batch, (int)H, D_(c_[0]), D_(c_[1]), D_(c_[2]),
            D_(c_[3]), D_(c_[4]), D_(c_[5]), D_(c_[6]), D_(c_[7]),
            D_(%(hid)s), D_(%(cell)s), D_(%(act)s));
        #undef D_
        ok = !PyErr_Occurred();
        done_%(name)s:
        lstm_accum_release(8, c_);
        if (!ok) { %(fail)s }
        }
        """ % locals()


class FusedLSTMGrad(CpuCOp):
    """Gradient of :class:`FusedLSTM`.

    Inputs: ``W_hid, W_ci, W_cf, W_co, cell_init, hid_init`` and the three
    forward outputs, then ``d hid (T, B, H)`` (and, with ``aux=True``, the
    gradients of the cell states ``(T, B, H)`` and of the gate activations
    ``(T, B, 4H)``).  Outputs: the gradients of ``input_contrib (T, B,
    4H)``, ``b (4H,)`` (the sum of the former over steps and batch),
    ``W_hid``, ``W_ci, W_cf, W_co``, ``cell_init`` and ``hid_init``.

    Parameters
    ----------
    grad_clipping : float
        As for :class:`FusedLSTM`.
    aux : bool
        Whether the cost also reaches the cell states or gate activations
        (two more inputs); the usual case, hidden states only, is False.
    """
    __props__ = ("grad_clipping", "aux")
    c_version = _VERSION

    def __init__(self, grad_clipping=0.0, aux=False):
        self.grad_clipping = float(grad_clipping)
        self.aux = bool(aux)

    def make_node(self, W_hid, W_ci, W_cf, W_co, c0, h0, hid, cell, act,
                  dhid, *aux):
        if len(aux) != (2 if self.aux else 0):
            raise TypeError("FusedLSTMGrad(aux=%s) takes %d inputs, got %d"
                            % (self.aux, 12 if self.aux else 10,
                               10 + len(aux)))
        dtype = T.as_tensor_variable(hid).dtype
        ins = [_as_var(v, dtype) for v in
               (W_hid, W_ci, W_cf, W_co, c0, h0, hid, cell, act, dhid)
               + aux]
        outs = [T.tensor3(dtype=dtype), T.vector(dtype=dtype),
                T.matrix(dtype=dtype),
                T.vector(dtype=dtype), T.vector(dtype=dtype),
                T.vector(dtype=dtype), T.matrix(dtype=dtype),
                T.matrix(dtype=dtype)]
        return theano.Apply(self, ins, outs)

    def infer_shape(self, node, shapes):
        ws, wci, wcf, wco, c0s, h0s, _, _, acts = shapes[:9]
        return [acts, (acts[2],), ws, wci, wcf, wco, c0s, h0s]

    def perform(self, node, inputs, outputs):
        W, wci, wcf, wco, c0, h0, hid, cell, act, dhid = inputs[:10]
        dcell, dact = inputs[10:] if self.aux else (None, None)
        steps, batch, H = hid.shape
        clip = self.grad_clipping
        dx = np.zeros_like(act)
        dwci, dwcf, dwco = (np.zeros_like(wci), np.zeros_like(wcf),
                            np.zeros_like(wco))
        dh_next = np.zeros_like(h0)
        dc_next = np.zeros_like(c0)
        for t in range(steps - 1, -1, -1):
            c_prev = cell[t - 1] if t else c0
            c = cell[t]
            i, f = act[t][:, :H], act[t][:, H:2 * H]
            g, o_s = act[t][:, 2 * H:3 * H], act[t][:, 3 * H:]
            tc = np.tanh(c)
            o = o_s + c * wco
            dh = dhid[t] + dh_next
            do = dh * tc
            dc = dc_next + dh * o * (1 - tc * tc) + do * wco
            # upstream gradients of the gate activations i, f, g, o_s
            gi, gf, gg, go = dc * g, dc * c_prev, dc * i, do
            if self.aux:
                dc = dc + dcell[t]
                gi = dc * g + dact[t][:, :H]
                gf = dc * c_prev + dact[t][:, H:2 * H]
                gg = dc * i + dact[t][:, 2 * H:3 * H]
                go = do + dact[t][:, 3 * H:]
            dwco += (do * c).sum(axis=0)
            d_o = go * o_s * (1 - o_s)
            d_i = gi * i * (1 - i)
            d_f = gf * f * (1 - f)
            d_g = gg * (1 - g * g)
            dwci += (d_i * c_prev).sum(axis=0)
            dwcf += (d_f * c_prev).sum(axis=0)
            dc_next = dc * f + d_i * wci + d_f * wcf
            d = np.concatenate([d_i, d_f, d_g, d_o], axis=1)
            if clip:
                d = np.clip(d, -clip, clip)
            dx[t] = d
            dh_next = d.dot(W.T)
        h_prev = np.concatenate([h0[None], hid[:-1]], axis=0)
        dW = np.tensordot(h_prev, dx, axes=([0, 1], [0, 1])).astype(W.dtype)
        db = dx.sum(axis=(0, 1)).astype(dx.dtype)
        for out, value in zip(outputs, (dx, db, dW, dwci, dwcf, dwco, dc_next,
                                        dh_next)):
            out[0] = value

    def c_code(self, node, name, inputs, outputs, sub):
        dx, db, dW, dwci, dwcf, dwco, dc0, dh0 = outputs
        ctype = node.inputs[0].dtype == "float32" and "float" or "double"
        typenum = "NPY_FLOAT32" if ctype == "float" else "NPY_FLOAT64"
        clip = repr(self.grad_clipping)
        aux = "true" if self.aux else "false"
        ins = ", ".join(list(inputs) + ([] if self.aux else ["NULL", "NULL"]))
        fail = sub["fail"]
        return """
        {
        /* W_hid, w_ci, w_cf, w_co, c0, h0, hid, cell, act, dhid,
           dcell, dact (NULL without aux) */
        PyArrayObject* in_[12] = {%(ins)s};
        PyArrayObject* c_[12];
        int ok = 0;
        npy_intp steps, batch, H;
        if (lstm_accum_contiguous(12, in_, c_))
            goto done_%(name)s;
        steps = PyArray_DIMS(c_[6])[0];
        batch = PyArray_DIMS(c_[6])[1];
        H = PyArray_DIMS(c_[6])[2];
        for (int k = 9; k < 12; ++k) {
            if (!c_[k])
                continue;
            npy_intp width = k == 11 ? 4 * H : H;
            if (PyArray_DIMS(c_[k])[0] != steps
                    || PyArray_DIMS(c_[k])[1] != batch
                    || PyArray_DIMS(c_[k])[2] != width) {
                PyErr_Format(PyExc_ValueError,
                    "FusedLSTMGrad: gradient of shape (%%ld, %%ld, %%ld) for "
                    "an output of shape (%%ld, %%ld, %%ld)",
                    (long)PyArray_DIMS(c_[k])[0], (long)PyArray_DIMS(c_[k])[1],
                    (long)PyArray_DIMS(c_[k])[2], (long)steps, (long)batch,
                    (long)width);
                goto done_%(name)s;
            }
        }
        if (PyArray_DIMS(c_[0])[0] != H || PyArray_DIMS(c_[0])[1] != 4 * H) {
            PyErr_Format(PyExc_ValueError,
                "FusedLSTMGrad: W_hid of shape (%%ld, %%ld) for %%ld units",
                (long)PyArray_DIMS(c_[0])[0], (long)PyArray_DIMS(c_[0])[1],
                (long)H);
            goto done_%(name)s;
        }
        {
            npy_intp xdims[3] = {steps, batch, 4 * H};
            npy_intp wdims[2] = {H, 4 * H};
            npy_intp vdims[1] = {H};
            npy_intp sdims[2] = {batch, H};
            npy_intp bdims[1] = {4 * H};
            if (lstm_accum_prepare_output(&%(dx)s, 3, xdims, %(typenum)s)
                || lstm_accum_prepare_output(&%(db)s, 1, bdims, %(typenum)s)
                || lstm_accum_prepare_output(&%(dW)s, 2, wdims, %(typenum)s)
                || lstm_accum_prepare_output(&%(dwci)s, 1, vdims, %(typenum)s)
                || lstm_accum_prepare_output(&%(dwcf)s, 1, vdims, %(typenum)s)
                || lstm_accum_prepare_output(&%(dwco)s, 1, vdims, %(typenum)s)
                || lstm_accum_prepare_output(&%(dc0)s, 2, sdims, %(typenum)s)
                || lstm_accum_prepare_output(&%(dh0)s, 2, sdims, %(typenum)s))
                goto done_%(name)s;
        }
        #define D_(a) ((a) ? (%(ctype)s*)PyArray_DATA(a) : NULL)
        lstm_accum_fused_backward_%(ctype)s<%(aux)s>(
            (int)steps, (int)batch, (int)H, (%(ctype)s)%(clip)s,
            D_(c_[0]), D_(c_[1]), D_(c_[2]), D_(c_[3]), D_(c_[4]), D_(c_[5]),
            D_(c_[6]), D_(c_[7]), D_(c_[8]), D_(c_[9]), D_(c_[10]),
            D_(c_[11]), D_(%(dx)s), D_(%(db)s), D_(%(dW)s), D_(%(dwci)s),
            D_(%(dwcf)s), D_(%(dwco)s), D_(%(dc0)s), D_(%(dh0)s));
        #undef D_
        ok = !PyErr_Occurred();
        done_%(name)s:
        lstm_accum_release(12, c_);
        if (!ok) { %(fail)s }
        }
        """ % locals()


# The loops, once for float and once for double.  Row-major (C) arrays are
# handed to the column-major BLAS as their transposes:
#   row-major A (B, G) = h (B, H) . W (H, G)
#   <=> col-major A^T (G, B) = W^T (G, H) . h^T (H, B)  -> gemm('N', 'N')
# The gate loops take a range of units [j0, j1), so that the threads of
# the panel path (below) can share a step.
_LOOPS = r"""
static void lstm_accum_gemm_%(t)s(char ta, char tb, int m, int n, int k,
                                  %(t)s alpha, %(t)s* a, int lda,
                                  %(t)s* b, int ldb, %(t)s beta,
                                  %(t)s* c, int ldc)
{
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        /* C = beta * C; only beta in {0, 1} is used here. */
        if (beta == 0)
            for (int j = 0; j < n; ++j)
                memset(c + (size_t)j * ldc, 0, sizeof(%(t)s) * m);
        return;
    }
    %(p)sgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c,
               &ldc);
}

static inline %(t)s lstm_accum_sigmoid_%(t)s(%(t)s x)
{
    return (%(t)s)1 / ((%(t)s)1 + lstm_accum_exp(-x));
}

/* One step's gates, cells and outputs for units [j0, j1): a holds
   h_prev . W on entry and the activations on exit.  noinline: inlined
   into Theano's large generated function, GCC no longer vectorises the
   gate loops. */
__attribute__((noinline)) static void lstm_accum_gates_forward_%(t)s(
    int batch, int H, int j0, int j1, %(t)s* a, const %(t)s* xt,
    const %(t)s* bias, const %(t)s* wci, const %(t)s* wcf,
    const %(t)s* wco, const %(t)s* c_prev, %(t)s* c_out, %(t)s* h_out)
{
    const int G = 4 * H;
    for (int b = 0; b < batch; ++b) {
        %(t)s* __restrict__ ab = a + (size_t)b * G;
        const %(t)s* __restrict__ xb = xt + (size_t)b * G;
        const %(t)s* __restrict__ cp = c_prev + (size_t)b * H;
        %(t)s* __restrict__ co = c_out + (size_t)b * H;
        %(t)s* __restrict__ ho = h_out + (size_t)b * H;
#pragma GCC ivdep
        for (int j = j0; j < j1; ++j) {
            %(t)s i = lstm_accum_sigmoid_%(t)s(
                ab[j] + xb[j] + bias[j] + cp[j] * wci[j]);
            %(t)s f = lstm_accum_sigmoid_%(t)s(
                ab[H + j] + xb[H + j] + bias[H + j] + cp[j] * wcf[j]);
            %(t)s g = lstm_accum_tanh(
                ab[2 * H + j] + xb[2 * H + j] + bias[2 * H + j]);
            %(t)s os = lstm_accum_sigmoid_%(t)s(
                ab[3 * H + j] + xb[3 * H + j] + bias[3 * H + j]);
            %(t)s c = f * cp[j] + i * g;
            co[j] = c;
            ho[j] = (os + c * wco[j]) * lstm_accum_tanh(c);
            ab[j] = i;
            ab[H + j] = f;
            ab[2 * H + j] = g;
            ab[3 * H + j] = os;
        }
    }
}

/* One step's gate gradients for units [j0, j1): writes d (the clipped
   pre-activation gradients), updates dc (in: from step t+1; out: to step
   t-1) and the sums gci, gcf, gco, gb; reads dh (from step t+1).  AUX: the
   cost also reaches the cell states (ec) and the gate activations (ea);
   otherwise those are NULL and the branches go. */
template <bool AUX>
__attribute__((noinline)) static void lstm_accum_gates_backward_%(t)s(
    int batch, int H, int j0, int j1, %(t)s clip, const %(t)s* at,
    const %(t)s* c_prev, const %(t)s* ct, const %(t)s* dht,
    const %(t)s* ect, const %(t)s* eat, const %(t)s* wci,
    const %(t)s* wcf, const %(t)s* wco, %(t)s* dc, const %(t)s* dh,
    %(t)s* d, %(t)s* dwci, %(t)s* dwcf, %(t)s* dwco, %(t)s* dbias)
{
    const int G = 4 * H;
    for (int b = 0; b < batch; ++b) {
        const %(t)s* __restrict__ ab = at + (size_t)b * G;
        const %(t)s* __restrict__ cp = c_prev + (size_t)b * H;
        const %(t)s* __restrict__ cb = ct + (size_t)b * H;
        const %(t)s* __restrict__ dhb = dht + (size_t)b * H;
        %(t)s* __restrict__ dcb = dc + (size_t)b * H;
        const %(t)s* __restrict__ dhn = dh + (size_t)b * H;
        %(t)s* __restrict__ db = d + (size_t)b * G;
        %(t)s* __restrict__ gci = dwci;
        %(t)s* __restrict__ gcf = dwcf;
        %(t)s* __restrict__ gco = dwco;
        %(t)s* __restrict__ gb = dbias;
        const %(t)s* __restrict__ ecb = AUX ? ect + (size_t)b * H : NULL;
        const %(t)s* __restrict__ eab = AUX ? eat + (size_t)b * G : NULL;
#pragma GCC ivdep
        for (int j = j0; j < j1; ++j) {
            %(t)s i = ab[j], f = ab[H + j], g = ab[2 * H + j],
                  os = ab[3 * H + j];
            %(t)s c = cb[j], tc = lstm_accum_tanh(c);
            %(t)s o = os + c * wco[j];
            %(t)s h_grad = dhb[j] + dhn[j];
            %(t)s do_ = h_grad * tc;
            %(t)s c_grad = dcb[j] + h_grad * o * (1 - tc * tc)
                           + do_ * wco[j];
            /* upstream gradients of the activations i, f, g, o_s */
            %(t)s gi, gf, gg, go;
            if (AUX) {
                c_grad += ecb[j];
                gi = c_grad * g + eab[j];
                gf = c_grad * cp[j] + eab[H + j];
                gg = c_grad * i + eab[2 * H + j];
                go = do_ + eab[3 * H + j];
            } else {
                gi = c_grad * g;
                gf = c_grad * cp[j];
                gg = c_grad * i;
                go = do_;
            }
            %(t)s d_o = go * os * (1 - os);
            %(t)s d_i = gi * i * (1 - i);
            %(t)s d_f = gf * f * (1 - f);
            %(t)s d_g = gg * (1 - g * g);
            gco[j] += do_ * c;
            gci[j] += d_i * cp[j];
            gcf[j] += d_f * cp[j];
            dcb[j] = c_grad * f + d_i * wci[j] + d_f * wcf[j];
            if (clip > 0) {
                d_i = d_i > clip ? clip : (d_i < -clip ? -clip : d_i);
                d_f = d_f > clip ? clip : (d_f < -clip ? -clip : d_f);
                d_g = d_g > clip ? clip : (d_g < -clip ? -clip : d_g);
                d_o = d_o > clip ? clip : (d_o < -clip ? -clip : d_o);
            }
            db[j] = d_i;
            db[H + j] = d_f;
            db[2 * H + j] = d_g;
            db[3 * H + j] = d_o;
            gb[j] += d_i;
            gb[H + j] += d_f;
            gb[2 * H + j] += d_g;
            gb[3 * H + j] += d_o;
        }
    }
}

static void lstm_accum_fused_forward_%(t)s(
    int steps, int batch, int H, const %(t)s* x, const %(t)s* bias,
    %(t)s* W,
    const %(t)s* wci, const %(t)s* wcf, const %(t)s* wco,
    %(t)s* c0, %(t)s* h0, %(t)s* hid, %(t)s* cell, %(t)s* act)
{
    const int G = 4 * H;
    const size_t sh = (size_t)batch * H, sg = (size_t)batch * G;
    if (lstm_accum_panels<%(t)s>::forward(steps, batch, H, x, bias, W, wci,
                                         wcf, wco, c0, h0, hid, cell, act))
        return;
    for (int t = 0; t < steps; ++t) {
        %(t)s* h_prev = t ? hid + (t - 1) * sh : h0;
        const %(t)s* c_prev = t ? cell + (t - 1) * sh : c0;
        %(t)s* a = act + t * sg;
        /* a = h_prev . W */
        lstm_accum_gemm_%(t)s('N', 'N', G, batch, H, 1, W, G, h_prev, H, 0,
                              a, G);
        lstm_accum_gates_forward_%(t)s(batch, H, 0, H, a, x + t * sg, bias,
                                       wci, wcf, wco, c_prev, cell + t * sh,
                                       hid + t * sh);
    }
}

template <bool AUX>
static void lstm_accum_fused_backward_%(t)s(
    int steps, int batch, int H, %(t)s clip, %(t)s* W,
    const %(t)s* wci, const %(t)s* wcf, const %(t)s* wco,
    const %(t)s* c0, %(t)s* h0, %(t)s* hid, const %(t)s* cell,
    const %(t)s* act, const %(t)s* dhid, const %(t)s* dcell,
    const %(t)s* dact, %(t)s* dx, %(t)s* dbias, %(t)s* dW,
    %(t)s* dwci, %(t)s* dwcf, %(t)s* dwco, %(t)s* dc, %(t)s* dh)
{
    const int G = 4 * H;
    const size_t sh = (size_t)batch * H, sg = (size_t)batch * G;
    /* dc, dh: the gradients flowing into step t from step t+1; at the end
       those of cell_init and hid_init. */
    memset(dc, 0, sizeof(%(t)s) * sh);
    memset(dh, 0, sizeof(%(t)s) * sh);
    memset(dwci, 0, sizeof(%(t)s) * H);
    memset(dwcf, 0, sizeof(%(t)s) * H);
    memset(dwco, 0, sizeof(%(t)s) * H);
    memset(dbias, 0, sizeof(%(t)s) * G);
    if (!lstm_accum_panels<%(t)s>::backward<AUX>(
            steps, batch, H, clip, W, wci, wcf, wco, c0, cell, act, dhid,
            dcell, dact, dx, dbias, dwci, dwcf, dwco, dc, dh)) {
        for (int t = steps - 1; t >= 0; --t) {
            %(t)s* d = dx + t * sg;
            lstm_accum_gates_backward_%(t)s<AUX>(
                batch, H, 0, H, clip, act + t * sg,
                t ? cell + (t - 1) * sh : c0, cell + t * sh, dhid + t * sh,
                AUX ? dcell + t * sh : NULL, AUX ? dact + t * sg : NULL,
                wci, wcf, wco, dc, dh, d, dwci, dwcf, dwco, dbias);
            /* dh = d . W^T   (col-major: dh^T (H, B) = W (H, G) . d^T) */
            lstm_accum_gemm_%(t)s('T', 'N', H, batch, G, 1, W, G, d, G, 0,
                                  dh, H);
        }
    }
    /* dW = Hprev^T . dx with Hprev = [h0; hid[0 .. T-2]]  (T*B, H),
       one product (col-major: dW^T (G, H) = dx^T (G, TB) . Hprev (TB, H)).
       Hprev is hid shifted by one step: copied into a scratch buffer so
       that the product is a single call with beta = 0. */
    if (steps <= 1) {
        lstm_accum_gemm_%(t)s('N', 'T', G, H, batch, 1, dx, G, h0, H, 0, dW,
                              G);
        return;
    }
    %(t)s* hprev = (%(t)s*)malloc(sizeof(%(t)s) * sh * steps);
    if (!hprev) {
        lstm_accum_gemm_%(t)s('N', 'T', G, H, batch, 1, dx, G, h0, H, 0, dW,
                              G);
        lstm_accum_gemm_%(t)s('N', 'T', G, H, (steps - 1) * batch, 1,
                              dx + sg, G, hid, H, 1, dW, G);
        return;
    }
    memcpy(hprev, h0, sizeof(%(t)s) * sh);
    memcpy(hprev + sh, hid, sizeof(%(t)s) * sh * (steps - 1));
    lstm_accum_gemm_%(t)s('N', 'T', G, H, steps * batch, 1, dx, G, hprev, H,
                          0, dW, G);
    free(hprev);
}
"""

# The panel path: float with AVX-512 (panels.py); double, and float
# without AVX-512, answer false and use BLAS.  Each thread of the team owns
# a range of units and computes their columns of every step's product and
# their gates, with one barrier per step.
_PANEL_DECLARATIONS = r"""
namespace {
template <typename T>
struct lstm_accum_panels {
    /* false: use BLAS */
    static bool forward(int, int, int, const T*, const T*, const T*,
                        const T*, const T*, const T*, const T*, const T*,
                        T*, T*, T*)
    {
        return false;
    }
    template <bool AUX>
    static bool backward(int, int, int, T, const T*, const T*, const T*,
                         const T*, const T*, const T*, const T*, const T*,
                         const T*, const T*, T*, T*, T*, T*, T*, T*, T*)
    {
        return false;
    }
};

#if LSTM_ACCUM_PANELS
template <>
struct lstm_accum_panels<float> {
    static bool forward(int steps, int batch, int H, const float* x,
                        const float* bias, const float* W, const float* wci,
                        const float* wcf, const float* wco, const float* c0,
                        const float* h0, float* hid, float* cell,
                        float* act);
    template <bool AUX>
    static bool backward(int steps, int batch, int H, float clip,
                         const float* W, const float* wci, const float* wcf,
                         const float* wco, const float* c0,
                         const float* cell, const float* act,
                         const float* dhid, const float* dcell,
                         const float* dact, float* dx, float* dbias,
                         float* dwci, float* dwcf, float* dwco, float* dc,
                         float* dh);
};
#endif
}  // namespace
"""

_PANEL_STEPS = r"""
#if LSTM_ACCUM_PANELS
struct lstm_accum_forward_args {
    int steps, batch, H;
    const float *x, *bias, *W, *wci, *wcf, *wco, *c0, *h0;
    float *P, *hid, *cell, *act;
    lstm_accum_barrier barrier;
};

static void lstm_accum_forward_work(void* p, int rank, int size)
{
    lstm_accum_forward_args* a = (lstm_accum_forward_args*)p;
    const int H = a->H, G = 4 * H, batch = a->batch;
    const size_t sh = (size_t)batch * H, sg = (size_t)batch * G;
    int p0, p1, j0, j1, local = 0;
    lstm_accum_share(H, 8, rank, size, &p0, &p1, &j0, &j1);
    lstm_accum_pack_gates(H, a->W, a->P, p0, p1);
    for (int t = 0; t < a->steps; ++t) {
        const float* h_prev = t ? a->hid + (t - 1) * sh : a->h0;
        float* act = a->act + t * sg;
        if (p0 < p1) {
            lstm_accum_panel_product<true>(batch, H, h_prev, H, a->P, act,
                                           G, H, p0, p1);
            lstm_accum_gates_forward_float(
                batch, H, j0, j1, act, a->x + t * sg, a->bias, a->wci,
                a->wcf, a->wco, t ? a->cell + (t - 1) * sh : a->c0,
                a->cell + t * sh, a->hid + t * sh);
        }
        if (t + 1 < a->steps)
            lstm_accum_barrier_wait(&a->barrier, size, &local);
    }
}

bool lstm_accum_panels<float>::forward(
    int steps, int batch, int H, const float* x, const float* bias,
    const float* W, const float* wci, const float* wcf, const float* wco,
    const float* c0, const float* h0, float* hid, float* cell, float* act)
{
    if (!lstm_accum_panels_pay(steps, batch, H))
        return false;
    float* P = lstm_accum_panel_buffer(lstm_accum_gate_panels_size(H));
    if (!P)
        return false;
    lstm_accum_forward_args a = {steps, batch, H, x, bias, W, wci, wcf,
                                 wco, c0, h0, P, hid, cell, act, {0, 0}};
    lstm_accum_team_run(lstm_accum_forward_work, &a,
                        lstm_accum_team_for(batch, H));
    return true;
}

struct lstm_accum_backward_args {
    int steps, batch, H;
    float clip;
    const float *W, *wci, *wcf, *wco, *c0, *cell, *act, *dhid, *dcell,
        *dact;
    float *P, *dx, *dbias, *dwci, *dwcf, *dwco, *dc, *dh;
    lstm_accum_barrier barrier;
};

template <bool AUX>
static void lstm_accum_backward_work(void* p, int rank, int size)
{
    lstm_accum_backward_args* a = (lstm_accum_backward_args*)p;
    const int H = a->H, G = 4 * H, batch = a->batch;
    const size_t sh = (size_t)batch * H, sg = (size_t)batch * G;
    int q0, q1, j0, j1, local = 0;
    lstm_accum_share(H, 32, rank, size, &q0, &q1, &j0, &j1);
    lstm_accum_pack_transposed(H, a->W, a->P, q0, q1);
    for (int t = a->steps - 1; t >= 0; --t) {
        float* d = a->dx + t * sg;
        if (q0 < q1)
            lstm_accum_gates_backward_float<AUX>(
                batch, H, j0, j1, a->clip, a->act + t * sg,
                t ? a->cell + (t - 1) * sh : a->c0, a->cell + t * sh,
                a->dhid + t * sh, AUX ? a->dcell + t * sh : NULL,
                AUX ? a->dact + t * sg : NULL, a->wci, a->wcf, a->wco,
                a->dc, a->dh, d, a->dwci, a->dwcf, a->dwco, a->dbias);
        /* every unit's d before anyone's dh = d . W^T; dh's columns are
           the units' own, read by their own gates at step t-1 */
        lstm_accum_barrier_wait(&a->barrier, size, &local);
        if (q0 < q1)
            lstm_accum_panel_product<false>(batch, G, d, G, a->P, a->dh, H,
                                            H, q0, q1);
    }
}

template <bool AUX>
bool lstm_accum_panels<float>::backward(
    int steps, int batch, int H, float clip, const float* W,
    const float* wci, const float* wcf, const float* wco, const float* c0,
    const float* cell, const float* act, const float* dhid,
    const float* dcell, const float* dact, float* dx, float* dbias,
    float* dwci, float* dwcf, float* dwco, float* dc, float* dh)
{
    if (!lstm_accum_panels_pay(steps, batch, H))
        return false;
    float* P = lstm_accum_panel_buffer(
        lstm_accum_transposed_panels_size(H));
    if (!P)
        return false;
    lstm_accum_backward_args a = {steps, batch, H, clip, W, wci, wcf, wco,
                                  c0, cell, act, dhid, dcell, dact, P, dx,
                                  dbias, dwci, dwcf, dwco, dc, dh, {0, 0}};
    lstm_accum_team_run(lstm_accum_backward_work<AUX>, &a,
                        lstm_accum_team_for(batch, H));
    return true;
}
#endif
"""

FusedLSTM.c_loops = FusedLSTMGrad.c_loops = "".join(
    [PANEL_CODE, _PANEL_DECLARATIONS]
    + [_LOOPS % {"t": t, "p": p} for t, p in (("float", "s"), ("double", "d"))]
    + [_PANEL_STEPS])
