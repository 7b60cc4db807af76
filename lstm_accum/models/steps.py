"""One time step of Lasagne's LSTM and GRU, written once.

The id-input layers (:mod:`lstm_accum.models.layers`) run these steps in
their scan loops, and the sampler (:mod:`lstm_accum.evaluation.sampling`)
compiles them into a one-step function. They follow
``lasagne.layers.LSTMLayer`` / ``GRULayer`` (Lasagne 0.1) operation by
operation, so they compute the same floating-point numbers as Lasagne's
layers. :func:`step_kind` says which step, if any, a layer computes.
"""
from ..backend import theano, T, lasagne

__all__ = ["lstm_stacked_params", "gru_stacked_params", "lstm_step",
           "gru_step", "step_kind", "STEP_KINDS"]

L = lasagne.layers

#: The steps this module knows: a layer class declares one of them as its
#: ``recurrent_step`` attribute (see :func:`step_kind`).
STEP_KINDS = ("lstm", "gru")

# Lasagne's own layers compute these steps; they cannot declare it.
_LASAGNE_STEPS = {L.LSTMLayer: "lstm", L.GRULayer: "gru"}


def step_kind(layer):
    """Which of :func:`lstm_step` / :func:`gru_step` one step of a layer is.

    Parameters
    ----------
    layer : lasagne.layers.Layer

    Returns
    -------
    {'lstm', 'gru'} or None
        ``'lstm'`` or ``'gru'`` for ``lasagne.layers.LSTMLayer`` /
        ``GRULayer`` themselves and for any layer whose class declares
        ``recurrent_step = 'lstm'`` (or ``'gru'``), as ours do; ``None`` for
        other layers and for layers that run backwards.

    Notes
    -----
    A subclass of Lasagne's layers may change the step, so it is not taken
    to be Lasagne's unless it declares ``recurrent_step``; a subclass of
    ours that changes the step sets ``recurrent_step = None``.
    """
    if getattr(layer, "backwards", False):
        return None
    kind = _LASAGNE_STEPS.get(type(layer))
    if kind is None:
        kind = getattr(layer, "recurrent_step", None)
    return kind if kind in STEP_KINDS else None


def _stacked_params(layer, gates):
    # Each of W_in_to_*, W_hid_to_* and b_* joined over ``gates``, in order.
    W_in = T.concatenate([getattr(layer, "W_in_to_" + g) for g in gates],
                         axis=1)
    W_hid = T.concatenate([getattr(layer, "W_hid_to_" + g) for g in gates],
                          axis=1)
    b = T.concatenate([getattr(layer, "b_" + g) for g in gates], axis=0)
    return W_in, W_hid, b


def lstm_stacked_params(layer):
    """Stacked input weights, hidden weights and biases of an LSTM layer.

    Parameters
    ----------
    layer : lasagne.layers.LSTMLayer
        The layer (or a subclass with the same parameters).

    Returns
    -------
    W_in_stacked, W_hid_stacked, b_stacked : Theano expressions
        ``(num_inputs, 4H)``, ``(H, 4H)`` and ``(4H,)``, gates in Lasagne's
        order: input gate, forget gate, cell, output gate.
    """
    return _stacked_params(layer, ("ingate", "forgetgate", "cell",
                                   "outgate"))


def gru_stacked_params(layer):
    """The same as :func:`lstm_stacked_params` for a ``GRULayer`` (or a
    subclass with the same parameters): ``(num_inputs, 3H)``, ``(H, 3H)``
    and ``(3H,)``, in Lasagne's order: reset gate, update gate, hidden
    update."""
    return _stacked_params(layer, ("resetgate", "updategate",
                                   "hidden_update"))


def lstm_step(layer, input_n, cell_previous, hid_previous, W_hid_stacked,
              W_cell_to_ingate=None, W_cell_to_forgetgate=None,
              W_cell_to_outgate=None):
    """One LSTM time step, exactly as ``lasagne.layers.LSTMLayer`` does it.

    Parameters
    ----------
    layer : lasagne.layers.LSTMLayer
        Supplies the number of units, nonlinearities, ``peepholes`` and
        ``grad_clipping``.
    input_n : Theano matrix ``(B, 4H)``
        The input contribution ``x_t W_in + b`` of this step.
    cell_previous, hid_previous : Theano matrices ``(B, H)``
    W_hid_stacked : Theano matrix ``(H, 4H)``
    W_cell_to_ingate, W_cell_to_forgetgate, W_cell_to_outgate : vectors
        Peephole weights (ignored when the layer has no peepholes).

    Returns
    -------
    cell, hid : Theano matrices ``(B, H)``

    Notes
    -----
    Lasagne 0.1 adds the output gate's peephole *after* its sigmoid,
    ``o = sigmoid(x W_xo + h W_ho + b_o) + w_co * c`` (its docstring puts it
    inside).  We compute what Lasagne computes, so that weights move freely
    between this layer, ``LSTMLayer`` and the question's network.
    """
    n = layer.num_units
    gates = input_n + T.dot(hid_previous, W_hid_stacked)
    if layer.grad_clipping is not False:
        gates = theano.gradient.grad_clip(
            gates, -layer.grad_clipping, layer.grad_clipping)
    ingate = gates[:, 0:n]
    forgetgate = gates[:, n:2 * n]
    cell_input = gates[:, 2 * n:3 * n]
    outgate = gates[:, 3 * n:4 * n]
    if layer.peepholes:
        ingate += cell_previous * W_cell_to_ingate
        forgetgate += cell_previous * W_cell_to_forgetgate
    ingate = layer.nonlinearity_ingate(ingate)
    forgetgate = layer.nonlinearity_forgetgate(forgetgate)
    cell_input = layer.nonlinearity_cell(cell_input)
    outgate = layer.nonlinearity_outgate(outgate)
    cell = forgetgate * cell_previous + ingate * cell_input
    if layer.peepholes:
        outgate += cell * W_cell_to_outgate
    hid = outgate * layer.nonlinearity(cell)
    return cell, hid


def gru_step(layer, input_n, hid_previous, W_hid_stacked):
    """One GRU time step, exactly as ``lasagne.layers.GRULayer`` does it.

    Parameters
    ----------
    layer : lasagne.layers.GRULayer
        Supplies the number of units, nonlinearities and ``grad_clipping``.
    input_n : Theano matrix ``(B, 3H)``
        The input contribution ``x_t W_in + b`` of this step.
    hid_previous : Theano matrix ``(B, H)``
    W_hid_stacked : Theano matrix ``(H, 3H)``

    Returns
    -------
    hid : Theano matrix ``(B, H)``
    """
    n = layer.num_units
    hid_input = T.dot(hid_previous, W_hid_stacked)
    if layer.grad_clipping is not False:
        input_n = theano.gradient.grad_clip(
            input_n, -layer.grad_clipping, layer.grad_clipping)
        hid_input = theano.gradient.grad_clip(
            hid_input, -layer.grad_clipping, layer.grad_clipping)
    resetgate = hid_input[:, 0:n] + input_n[:, 0:n]
    updategate = hid_input[:, n:2 * n] + input_n[:, n:2 * n]
    resetgate = layer.nonlinearity_resetgate(resetgate)
    updategate = layer.nonlinearity_updategate(updategate)
    hidden_update = input_n[:, 2 * n:3 * n] + resetgate * hid_input[:, 2 * n:]
    if layer.grad_clipping is not False:
        hidden_update = theano.gradient.grad_clip(
            hidden_update, -layer.grad_clipping, layer.grad_clipping)
    hidden_update = layer.nonlinearity_hid(hidden_update)
    return (1 - updategate) * hid_previous + updategate * hidden_update
