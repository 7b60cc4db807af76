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

The recurrent weights come in as the layer keeps them, one ``(H, H)``
matrix per gate, and are never joined into one ``(H, 4H)`` matrix in the
graph: at ``H = 4096`` that copy is 268 MB per call.  The per-step
products: in float32 on a CPU with AVX-512, our own kernel on the
recurrent weights, packed once per call by the threads that use them
(``c_code/panels.c``; faster than OpenBLAS's ``sgemm`` at the batches of a
language model, ``benchmarks/step_products.py``), with the steps of large
batches shared by a team of threads; their results do not depend on the number of threads
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

The C code is in ``c_code/``: ``fused_lstm.c`` (the loops, C++ templates
over float and double), ``panels.c`` (the kernel), ``team.c`` (the
threads), ``team_blas.c`` (products on the team) and one
file per operation for its node (``fused_lstm_forward.c``,
``fused_lstm_grad.c``); see :mod:`lstm_accum.ops.base` for how they are
loaded.

The operations have a NumPy ``perform`` too (Theano's Python linker uses it),
and no GPU implementation: on a GPU device the model builder keeps scan.
"""
import numpy as np

from ..backend import lasagne, theano, T
from .base import CpuCOp, unavailable_reason

__all__ = ["FusedLSTM", "FusedLSTMGrad", "fused_lstm", "fused_supported"]

_VERSION = 23


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
    W_hid : sequence of four Theano matrices ``(H, H)``, or one ``(H, 4H)``
        The recurrent weights of each gate, in the same order (a layer's
        ``W_hid_to_ingate``, ... as they are: nothing is copied), or
        stacked into one matrix (cut into the four).
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
    if isinstance(W_hid, (list, tuple)):
        if len(W_hid) != 4:
            raise TypeError("fused_lstm: W_hid is four (H, H) matrices, one "
                            "per gate, or one stacked (H, 4H) matrix; got %d"
                            % len(W_hid))
        gates = list(W_hid)
    else:
        W_hid = T.as_tensor_variable(W_hid)
        H = W_hid.shape[0]
        gates = [W_hid[:, g * H:(g + 1) * H] for g in range(4)]
    return FusedLSTM(clip)(input_contrib, b, *(gates + [W_ci, W_cf, W_co,
                                                         cell_init,
                                                         hid_init]))[0]


def _as_var(x, dtype):
    x = T.as_tensor_variable(x)
    if x.dtype != dtype:
        x = T.cast(x, dtype)
    return x


class FusedLSTM(CpuCOp):
    """Forward pass of an LSTM over ``(T, B, 4H)`` input contributions.

    Inputs: ``input_contrib (T, B, 4H)``, ``b (4H,)``, the recurrent
    weights of the four gates ``W_i, W_f, W_c, W_o (H, H)`` (together
    ``W_hid (H, 4H)``), ``W_ci, W_cf, W_co (H,)``, ``cell_init, hid_init
    (B, H)``.  Outputs: the hidden states
    ``(T, B, H)``, the cell states ``(T, B, H)`` and the gate activations
    ``(T, B, 4H)`` (input, forget, cell candidate, output before its
    peephole), the last two kept for the gradient.

    Parameters
    ----------
    grad_clipping : float
        0 for no clipping, else clip the gate pre-activation gradients to
        ``[-grad_clipping, grad_clipping]``.
    team : bool
        Whether the products around this operation run on its team of
        threads too (:mod:`lstm_accum.ops.team`, which sets it): the steps
        of smaller batches are then shared by the team as well.  The
        results are the same either way.
    """
    __props__ = ("grad_clipping", "team")
    c_version = _VERSION
    c_files = ("team.c", "panels.c", "team_blas.c", "fused_lstm.c",
               "fused_lstm_forward.c")
    func_name = "APPLY_SPECIFIC(fused_lstm)"

    def __init__(self, grad_clipping=0.0, team=False):
        self.grad_clipping = float(grad_clipping)
        self.team = bool(team)

    def c_node_macros(self, node):
        return [("LSTM_ACCUM_TEAM", "true" if self.team else "false")]

    def make_node(self, x, b, W_i, W_f, W_c, W_o, W_ci, W_cf, W_co, c0, h0):
        x = T.as_tensor_variable(x)
        dtype = x.dtype
        if dtype not in ("float32", "float64"):
            raise TypeError("FusedLSTM takes float32 or float64 input, got %s"
                            % dtype)
        ins = [x] + [_as_var(v, dtype) for v in
                     (b, W_i, W_f, W_c, W_o, W_ci, W_cf, W_co, c0, h0)]
        for v, nd in zip(ins, (3, 1, 2, 2, 2, 2, 1, 1, 1, 2, 2)):
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
        x, b = inputs[:2]
        wci, wcf, wco, c0, h0 = inputs[6:]
        W = np.concatenate(inputs[2:6], axis=1)
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
        hid, cell, act = self(*inputs)
        dhid, dcell, dact = output_grads
        if isinstance(dhid.type, DisconnectedType):
            dhid = T.zeros_like(hid)
        aux = [g for g in (dcell, dact)
               if not isinstance(g.type, DisconnectedType)]
        common = list(inputs[2:]) + [hid, cell, act, dhid]
        if not aux:
            grads = FusedLSTMGrad(self.grad_clipping, team=self.team)(
                *common)
        else:
            # A cost that also uses the cell states or gate activations.
            if isinstance(dcell.type, DisconnectedType):
                dcell = T.zeros_like(cell)
            if isinstance(dact.type, DisconnectedType):
                dact = T.zeros_like(act)
            grads = FusedLSTMGrad(self.grad_clipping, aux=True,
                                  team=self.team)(*common + [dcell, dact])
        dx, db, dW = grads[:3]
        # The gates' gradients as Join's gradient cuts them (a Split, which
        # the accumulators read as views of dW: accumulate_spec).
        H = inputs[2].shape[0]
        gates = T.split(dW, T.stack([H] * 4), 4, axis=1)
        return [dx, db] + list(gates) + list(grads[3:])

    def connection_pattern(self, node):
        # Every input reaches every output.
        return [[True, True, True] for _ in node.inputs]


class FusedLSTMGrad(CpuCOp):
    """Gradient of :class:`FusedLSTM`.

    Inputs: ``W_i, W_f, W_c, W_o, W_ci, W_cf, W_co, cell_init, hid_init``
    (as for :class:`FusedLSTM`) and the three forward outputs, then ``d hid
    (T, B, H)`` (and, with ``aux=True``, the gradients of the cell states
    ``(T, B, H)`` and of the gate activations ``(T, B, 4H)``).  Outputs:
    the gradients of ``input_contrib (T, B, 4H)``, ``b (4H,)`` (the sum of
    the former over steps and batch), ``W_hid (H, 4H)`` (the four gates'
    side by side), ``W_ci, W_cf, W_co``, ``cell_init`` and ``hid_init``.

    Parameters
    ----------
    grad_clipping : float
        As for :class:`FusedLSTM`.
    aux : bool
        Whether the cost also reaches the cell states or gate activations
        (two more inputs); the usual case, hidden states only, is False.
    team : bool
        As for :class:`FusedLSTM`; the recurrent weights' gradient is then
        a product on the team too.
    """
    __props__ = ("grad_clipping", "aux", "team")
    c_version = _VERSION
    c_files = ("team.c", "panels.c", "team_blas.c", "fused_lstm.c",
               "fused_lstm_grad.c")
    func_name = "APPLY_SPECIFIC(fused_lstm_grad)"
    # Without aux, COp passes NULL for the last two inputs (dcell, dact).
    _cop_num_inputs = 15

    def __init__(self, grad_clipping=0.0, aux=False, team=False):
        self.grad_clipping = float(grad_clipping)
        self.aux = bool(aux)
        self.team = bool(team)

    def make_node(self, W_i, W_f, W_c, W_o, W_ci, W_cf, W_co, c0, h0, hid,
                  cell, act, dhid, *aux):
        if len(aux) != (2 if self.aux else 0):
            raise TypeError("FusedLSTMGrad(aux=%s) takes %d inputs, got %d"
                            % (self.aux, 15 if self.aux else 13,
                               13 + len(aux)))
        dtype = T.as_tensor_variable(hid).dtype
        ins = [_as_var(v, dtype) for v in
               (W_i, W_f, W_c, W_o, W_ci, W_cf, W_co, c0, h0, hid, cell, act,
                dhid) + aux]
        outs = [T.tensor3(dtype=dtype), T.vector(dtype=dtype),
                T.matrix(dtype=dtype),
                T.vector(dtype=dtype), T.vector(dtype=dtype),
                T.vector(dtype=dtype), T.matrix(dtype=dtype),
                T.matrix(dtype=dtype)]
        return theano.Apply(self, ins, outs)

    def infer_shape(self, node, shapes):
        wis, wci, wcf, wco, c0s, h0s, _, _, acts = shapes[3:12]
        return [acts, (acts[2],), (wis[0], acts[2]), wci, wcf, wco, c0s,
                h0s]

    def perform(self, node, inputs, outputs):
        W = np.concatenate(inputs[:4], axis=1)
        wci, wcf, wco, c0, h0, hid, cell, act, dhid = inputs[4:13]
        dcell, dact = inputs[13:] if self.aux else (None, None)
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

    def c_node_macros(self, node):
        return [("LSTM_ACCUM_CLIP", repr(self.grad_clipping)),
                ("LSTM_ACCUM_AUX", "true" if self.aux else "false"),
                ("LSTM_ACCUM_TEAM", "true" if self.team else "false")]
