"""Language-model builders: the original question's network and its faster
variants, with a numerically stable summed loss.

Every model is a plain Lasagne graph plus a :class:`LanguageModel` that holds
its symbolic inputs and gives the expressions the rest of the package needs:
the summed negative log-likelihood over target tokens (:meth:`~LanguageModel.
loss`), the number of target tokens and sequences in one call, and per-token
log-probabilities.

The variants (:func:`build_model`):

``batching='sample'`` (the question's network)
    ``InputLayer((None, None, V))`` -> ``LSTMLayer(H, grad_clipping=5)`` ->
    ``SliceLayer(lstm, 0, 0)`` -> ``DenseLayer(V)``; batch of one sentence,
    target an int32 vector ``(T,)``.
``batching='bucket'`` / ``'mask'``
    The recurrent output ``(B, T, H)`` is reshaped to ``(B*T, H)`` before the
    output layer; targets are an int32 matrix ``(B, T)``.  ``'mask'`` adds a
    mask input ``(B, T)`` given to every recurrent layer as ``mask_input``,
    and the loss is summed over unmasked tokens only.
``input='ids'``
    Word ids ``(B, T)`` int32 instead of one-hot vectors.  The product of a
    one-hot row with the input weights is a row of those weights, so the
    first recurrent layer (:class:`IdLSTMLayer` / :class:`IdGRULayer`) looks
    rows up instead of multiplying.  It has the same parameters (names,
    shapes) as the one-hot layer, so weights transfer both ways with
    ``lasagne.layers.set_all_param_values``.

The output layer is linear (it gives logits) and is named ``'softmax'`` (its
parameters are ``softmax.W`` and ``softmax.b``); ``output_layer`` applies the
softmax on top of it, so ``lasagne.layers.get_output(model.output_layer)``
gives probabilities exactly like the question's ``DenseLayer(V, softmax)``.
The loss never takes ``log(softmax(x))``: it is
``logsumexp(z) - z[target]`` with the maximum subtracted first, finite for
any finite logits, computed in one pass per row (with the output bias) by
:func:`lstm_accum.softmax_nll.softmax_nll` on the CPU and by Theano's fused
``crossentropy_softmax_argmax_1hot_with_bias`` elsewhere (both keep the
softmax for the gradient); :meth:`LanguageModel.log_probs` gives the same
log-probabilities through :func:`stable_log_softmax`.
"""
from collections import OrderedDict

import numpy as np

from ..backend import theano, T, lasagne
from ..exceptions import IncompatibleStateError, InputError
from ..ops.fused_lstm import fused_lstm, fused_supported
from ..ops.softmax_nll import softmax_nll
from ..ops.base import unavailable_reason

__all__ = ["LanguageModel", "build_model", "IdLSTMLayer", "IdGRULayer",
           "FusedLSTMLayer", "IMPLS",
           "IdsToOneHotLayer", "stable_log_softmax", "lstm_step", "gru_step",
           "lstm_stacked_params", "gru_stacked_params", "INPUTS", "BATCHINGS",
           "CELLS"]

L = lasagne.layers

INPUTS = ("onehot", "ids")
BATCHINGS = ("sample", "bucket", "mask")
CELLS = ("lstm", "gru")
IMPLS = ("auto", "fused", "scan")


# ---------------------------------------------------------------------------
# Recurrent steps, written once and shared by the id-input layers and by the
# one-step sampling function.  They follow lasagne.layers.LSTMLayer/GRULayer
# (Lasagne 0.1) operation by operation, so the id layers compute the same
# floating-point numbers as the one-hot layers.
# ---------------------------------------------------------------------------

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
    W_in = T.concatenate([layer.W_in_to_ingate, layer.W_in_to_forgetgate,
                          layer.W_in_to_cell, layer.W_in_to_outgate], axis=1)
    W_hid = T.concatenate([layer.W_hid_to_ingate, layer.W_hid_to_forgetgate,
                           layer.W_hid_to_cell, layer.W_hid_to_outgate],
                          axis=1)
    b = T.concatenate([layer.b_ingate, layer.b_forgetgate, layer.b_cell,
                       layer.b_outgate], axis=0)
    return W_in, W_hid, b


def gru_stacked_params(layer):
    """Stacked input weights, hidden weights and biases of a GRU layer.

    Parameters
    ----------
    layer : lasagne.layers.GRULayer
        The layer (or a subclass with the same parameters).

    Returns
    -------
    W_in_stacked, W_hid_stacked, b_stacked : Theano expressions
        ``(num_inputs, 3H)``, ``(H, 3H)`` and ``(3H,)``, in Lasagne's order:
        reset gate, update gate, hidden update.
    """
    W_in = T.concatenate([layer.W_in_to_resetgate, layer.W_in_to_updategate,
                          layer.W_in_to_hidden_update], axis=1)
    W_hid = T.concatenate([layer.W_hid_to_resetgate,
                           layer.W_hid_to_updategate,
                           layer.W_hid_to_hidden_update], axis=1)
    b = T.concatenate([layer.b_resetgate, layer.b_updategate,
                       layer.b_hidden_update], axis=0)
    return W_in, W_hid, b


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


def _initial_state(init, num_batch):
    if isinstance(init, T.TensorVariable):  # shared params are not
        return init
    # Same as Lasagne: repeat the (1, H) row to (num_batch, H).
    return T.dot(T.ones((num_batch, 1)), init)


class _IdInputMixin(object):
    """Builds the parent layer's parameters for ``vocab_size`` inputs, then
    takes the id input ``(B, T)`` as incoming."""

    def _init_with_ids(self, parent, incoming, vocab_size, num_units, kwargs):
        vocab_size = int(vocab_size)
        if vocab_size < 1:
            raise InputError("vocab_size must be >= 1, got %d" % vocab_size)
        if kwargs.get("unroll_scan"):
            raise InputError("%s does not support unroll_scan=True; use "
                             "lasagne's layer with one-hot input for that"
                             % type(self).__name__)
        # The parent creates W_in_to_* of shape (vocab_size, num_units) from
        # a (B, T, V) input shape; the real incoming (ids, (B, T)) is put in
        # its place afterwards.
        parent.__init__(self, (None, None, vocab_size), num_units, **kwargs)
        self.vocab_size = vocab_size
        if isinstance(incoming, tuple):
            self.input_shapes[0] = incoming
            self.input_layers[0] = None
        else:
            self.input_shapes[0] = incoming.output_shape
            self.input_layers[0] = incoming
        if len(self.input_shapes[0]) != 2:
            raise InputError(
                "%s takes word ids of shape (batch, time); its incoming has "
                "shape %r" % (type(self).__name__, self.input_shapes[0]))

    def get_output_shape_for(self, input_shapes):
        input_shape = input_shapes[0]
        return input_shape[0], input_shape[1], self.num_units

    @staticmethod
    def _lookup(W_in_gates, ids):
        """Rows ``W_in_stacked[ids]`` of the stacked input weights.

        Each gate's ``(V, H)`` matrix is looked up on its own and the small
        ``(N, H)`` results are joined: stacking the gate matrices first
        would copy the whole ``(V, G)`` matrix at every call, and split its
        ``(V, G)`` gradient back at every call.  The numbers are the same.
        ``ids`` is a vector: Theano then uses AdvancedSubtensor1 /
        AdvancedIncSubtensor1, which have C implementations (a matrix index
        would not).
        """
        return T.concatenate([W[ids] for W in W_in_gates], axis=1)

    def _sequences(self, ids, mask, W_in_gates, b_stacked):
        """Scan sequences (time-major): precomputed rows, or the ids."""
        ids = ids.dimshuffle(1, 0)
        if self.precompute_input:
            # One row lookup for all steps, (T, B, G).
            rows = self._lookup(W_in_gates, ids.flatten())
            input = rows.reshape((ids.shape[0], ids.shape[1],
                                  rows.shape[1])) + b_stacked
        else:
            input = ids
        sequences = [input]
        if mask is not None:
            sequences.append(mask.dimshuffle(1, 0, 'x'))
        return sequences

    def _input_n(self, input_n, W_in_gates, b_stacked):
        if self.precompute_input:
            return input_n
        return self._lookup(W_in_gates, input_n) + b_stacked


class _FusedLSTMMixin(object):
    """Runs an ``LSTMLayer`` as one :class:`~lstm_accum.fused_lstm.FusedLSTM`
    operation when it can (see :func:`~lstm_accum.fused_lstm.fused_supported`)
    instead of ``theano.scan``; same parameters, same numbers."""

    #: 'auto' (fused when supported), 'fused' (required) or 'scan'.
    impl = "auto"

    def _set_impl(self, impl):
        _check_choice("impl", impl, IMPLS)
        if impl == "fused":
            has_mask = len(self.input_shapes) > 1
            reason = fused_supported(self, "mask" if has_mask else None)
            if reason is not None:
                raise InputError("impl='fused' is not available for this "
                                 "layer: %s; use impl='auto' or 'scan'"
                                 % reason)
        self.impl = impl

    def _use_fused(self, mask):
        if self.impl == "scan":
            return False
        reason = fused_supported(self, mask)
        if reason is not None and self.impl == "fused":
            raise InputError("impl='fused' is not available for this layer: "
                             "%s; use impl='auto' or 'scan'" % reason)
        return reason is None

    def _fused_output(self, input_contrib, num_batch):
        """Hidden states ``(B, T, H)`` from ``x_t W_in`` ``(T, B, 4H)`` (the
        operation adds the biases itself)."""
        if self.peepholes:
            peepholes = [self.W_cell_to_ingate, self.W_cell_to_forgetgate,
                         self.W_cell_to_outgate]
        else:
            peepholes = [T.zeros((self.num_units,), dtype=input_contrib.dtype)
                         ] * 3
        _, W_hid_stacked, b_stacked = lstm_stacked_params(self)
        hid = fused_lstm(input_contrib, W_hid_stacked, *peepholes,
                         cell_init=_initial_state(self.cell_init, num_batch),
                         hid_init=_initial_state(self.hid_init, num_batch),
                         grad_clipping=self.grad_clipping, b=b_stacked)
        return hid.dimshuffle(1, 0, 2)


class FusedLSTMLayer(_FusedLSTMMixin, L.LSTMLayer):
    """``lasagne.layers.LSTMLayer`` computed by one fused operation.

    The same layer as Lasagne's (same parameters, names, equations and
    ``grad_clipping``), for one-hot or any other feature input ``(B, T, F)``;
    on the CPU, without a mask, its sequence loop and that of its gradient
    run in C (:mod:`lstm_accum.fused_lstm`).  Elsewhere it is Lasagne's scan.

    Parameters
    ----------
    incoming, num_units, **kwargs
        As for ``lasagne.layers.LSTMLayer``.
    impl : {'auto', 'fused', 'scan'}
        'auto': fused when supported; 'fused': an error when not; 'scan':
        always Lasagne's scan.

    Raises
    ------
    InputError
        For ``impl='fused'`` on a configuration the fused operation does not
        cover (the message says which).
    """

    def __init__(self, incoming, num_units, impl="auto", **kwargs):
        L.LSTMLayer.__init__(self, incoming, num_units, **kwargs)
        self._set_impl(impl)

    def get_output_for(self, inputs, **kwargs):
        input = inputs[0]
        mask = inputs[1] if len(inputs) > 1 else None
        if input.ndim > 3:
            input = T.flatten(input, 3)
        if not self._use_fused(mask):
            return L.LSTMLayer.get_output_for(self, inputs, **kwargs)
        x = input.dimshuffle(1, 0, 2)
        steps, num_batch = x.shape[0], x.shape[1]
        flat = x.reshape((steps * num_batch, x.shape[2]))
        # One product per gate: stacking the (F, H) matrices first would
        # copy all of them at every call (and split their gradient back).
        contrib = T.concatenate(
            [T.dot(flat, W) for W in (self.W_in_to_ingate,
                                      self.W_in_to_forgetgate,
                                      self.W_in_to_cell,
                                      self.W_in_to_outgate)], axis=1)
        contrib = contrib.reshape((steps, num_batch, 4 * self.num_units))
        return self._fused_output(contrib, num_batch)


class IdLSTMLayer(_FusedLSTMMixin, _IdInputMixin, L.LSTMLayer):
    """``lasagne.layers.LSTMLayer`` fed with word ids instead of one-hot rows.

    ``onehot(ids) . W_in`` is the row lookup ``W_in[ids]``: this layer
    computes that, and otherwise exactly what the one-hot ``LSTMLayer``
    computes (same gate equations, clipping, mask handling).  Its parameters
    have the same names and shapes as ``LSTMLayer`` on a ``(B, T, V)`` input,
    so weights transfer between the two.

    Parameters
    ----------
    incoming : Layer or tuple
        Gives int32 word ids of shape ``(batch, time)``.
    num_units : int
        Number of hidden units H.
    vocab_size : int
        V, the number of rows of the input weights.
    **kwargs
        Any ``LSTMLayer`` argument (``grad_clipping``, ``mask_input``,
        ``precompute_input``, ``peepholes``, ...) except ``unroll_scan``.

    Raises
    ------
    InputError
        For a vocabulary size < 1, ``unroll_scan=True`` or an incoming that
        is not 2-D.
    """

    def __init__(self, incoming, num_units, vocab_size, impl="auto",
                 **kwargs):
        self._init_with_ids(L.LSTMLayer, incoming, vocab_size, num_units,
                            kwargs)
        self._set_impl(impl)

    def get_output_for(self, inputs, **kwargs):
        ids = inputs[0]
        mask = inputs[1] if len(inputs) > 1 else None
        num_batch = ids.shape[0]
        _, W_hid_stacked, b_stacked = lstm_stacked_params(self)
        W_in_gates = [self.W_in_to_ingate, self.W_in_to_forgetgate,
                      self.W_in_to_cell, self.W_in_to_outgate]
        if self._use_fused(mask):
            ids_tm = ids.dimshuffle(1, 0)
            rows = self._lookup(W_in_gates, ids_tm.flatten())
            contrib = rows.reshape(
                (ids_tm.shape[0], ids_tm.shape[1], rows.shape[1]))
            return self._fused_output(contrib, num_batch)
        sequences = self._sequences(ids, mask, W_in_gates, b_stacked)

        def step(input_n, cell_previous, hid_previous, W_hid_stacked,
                 W_cell_to_ingate, W_cell_to_forgetgate, W_cell_to_outgate,
                 W_in_i, W_in_f, W_in_c, W_in_o, b_stacked):
            input_n = self._input_n(input_n, [W_in_i, W_in_f, W_in_c,
                                              W_in_o], b_stacked)
            return list(lstm_step(self, input_n, cell_previous, hid_previous,
                                  W_hid_stacked, W_cell_to_ingate,
                                  W_cell_to_forgetgate, W_cell_to_outgate))

        def step_masked(input_n, mask_n, cell_previous, hid_previous, *args):
            cell, hid = step(input_n, cell_previous, hid_previous, *args)
            not_mask = 1 - mask_n
            cell = cell * mask_n + cell_previous * not_mask
            hid = hid * mask_n + hid_previous * not_mask
            return [cell, hid]

        non_seqs = [W_hid_stacked]
        if self.peepholes:
            non_seqs += [self.W_cell_to_ingate, self.W_cell_to_forgetgate,
                         self.W_cell_to_outgate]
        else:
            non_seqs += [(), (), ()]
        if self.precompute_input:
            non_seqs += [(), (), (), (), ()]
        else:
            non_seqs += W_in_gates + [b_stacked]

        cell_out, hid_out = theano.scan(
            fn=step_masked if mask is not None else step,
            sequences=sequences,
            outputs_info=[_initial_state(self.cell_init, num_batch),
                          _initial_state(self.hid_init, num_batch)],
            go_backwards=self.backwards,
            truncate_gradient=self.gradient_steps,
            non_sequences=non_seqs,
            strict=True)[0]
        hid_out = hid_out.dimshuffle(1, 0, 2)
        if self.backwards:
            hid_out = hid_out[:, ::-1]
        return hid_out


class IdGRULayer(_IdInputMixin, L.GRULayer):
    """``lasagne.layers.GRULayer`` fed with word ids instead of one-hot rows.

    See :class:`IdLSTMLayer`; the same holds for the GRU: same parameters as
    ``GRULayer`` on a ``(B, T, V)`` input, same numbers, row lookup instead
    of the one-hot product.

    Parameters
    ----------
    incoming : Layer or tuple
        Gives int32 word ids of shape ``(batch, time)``.
    num_units : int
        Number of hidden units H.
    vocab_size : int
        V, the number of rows of the input weights.
    **kwargs
        Any ``GRULayer`` argument except ``unroll_scan``.

    Raises
    ------
    InputError
        For a vocabulary size < 1, ``unroll_scan=True`` or an incoming that
        is not 2-D.
    """

    def __init__(self, incoming, num_units, vocab_size, **kwargs):
        self._init_with_ids(L.GRULayer, incoming, vocab_size, num_units,
                            kwargs)

    def get_output_for(self, inputs, **kwargs):
        ids = inputs[0]
        mask = inputs[1] if len(inputs) > 1 else None
        num_batch = ids.shape[0]
        _, W_hid_stacked, b_stacked = gru_stacked_params(self)
        W_in_gates = [self.W_in_to_resetgate, self.W_in_to_updategate,
                      self.W_in_to_hidden_update]
        sequences = self._sequences(ids, mask, W_in_gates, b_stacked)

        def step(input_n, hid_previous, W_hid_stacked, W_in_r, W_in_u,
                 W_in_h, b_stacked):
            input_n = self._input_n(input_n, [W_in_r, W_in_u, W_in_h],
                                    b_stacked)
            return gru_step(self, input_n, hid_previous, W_hid_stacked)

        def step_masked(input_n, mask_n, hid_previous, *args):
            hid = step(input_n, hid_previous, *args)
            return hid * mask_n + hid_previous * (1 - mask_n)

        non_seqs = [W_hid_stacked]
        if self.precompute_input:
            non_seqs += [(), (), (), ()]
        else:
            non_seqs += W_in_gates + [b_stacked]

        hid_out = theano.scan(
            fn=step_masked if mask is not None else step,
            sequences=sequences,
            outputs_info=[_initial_state(self.hid_init, num_batch)],
            go_backwards=self.backwards,
            truncate_gradient=self.gradient_steps,
            non_sequences=non_seqs,
            strict=True)[0]
        hid_out = hid_out.dimshuffle(1, 0, 2)
        if self.backwards:
            hid_out = hid_out[:, ::-1, :]
        return hid_out


class IdsToOneHotLayer(L.Layer):
    """Expands word ids ``(B, T)`` to one-hot vectors ``(B, T, V)`` (floatX).

    Used only to feed a user's recurrent-layer factory from an id input:
    such a layer expects features, and this keeps it correct (without the
    row-lookup speed-up of :class:`IdLSTMLayer`).
    """

    def __init__(self, incoming, vocab_size, **kwargs):
        super(IdsToOneHotLayer, self).__init__(incoming, **kwargs)
        self.vocab_size = int(vocab_size)

    def get_output_shape_for(self, input_shape):
        return input_shape[0], input_shape[1], self.vocab_size

    def get_output_for(self, input, **kwargs):
        flat = T.extra_ops.to_one_hot(input.flatten(), self.vocab_size,
                                      dtype=theano.config.floatX)
        return flat.reshape((input.shape[0], input.shape[1],
                             self.vocab_size))


def stable_log_softmax(logits):
    """Row-wise log-softmax that stays finite for any finite logits.

    ``log_softmax(z) = z - m - log(sum(exp(z - m)))`` with ``m = max(z)``.

    Parameters
    ----------
    logits : Theano matrix ``(N, V)``

    Returns
    -------
    Theano matrix ``(N, V)``
        Log-probabilities.

    Notes
    -----
    ``m`` is excluded from differentiation (``zero_grad``): the result does
    not depend on it mathematically, and the gradient then is exactly
    ``onehot - softmax`` without the max's subgradient.
    """
    m = theano.gradient.zero_grad(T.max(logits, axis=1, keepdims=True))
    shifted = logits - m
    return shifted - T.log(T.sum(T.exp(shifted), axis=1, keepdims=True))


def _check_choice(name, value, choices):
    if value not in choices:
        raise InputError("%s must be one of %s, got %r"
                         % (name, ", ".join(repr(c) for c in choices), value))


class LanguageModel(object):
    """A built language model: Lasagne layers, symbolic inputs, loss.

    Create it with :func:`build_model`.

    Attributes
    ----------
    input_var, target_var, mask_var : Theano variables
        Input (one-hot ``(B, T, V)`` floatX or ids ``(B, T)`` int32), targets
        (int32 ``(T,)`` for ``'sample'``, ``(B, T)`` otherwise) and mask
        (floatX ``(B, T)``; ``None`` unless ``batching='mask'``).
    inputs : list
        ``[input_var, target_var]`` (+ ``[mask_var]``): the order every
        compiled function of the model takes its arrays in.
    input_layer, mask_layer : Lasagne layers (``mask_layer`` may be None)
    recurrent_layers : list of Lasagne layers, bottom first
    logits_layer : the linear output ``DenseLayer`` named ``'softmax'``
    output_layer : softmax probabilities on top of ``logits_layer``
    params : list of trainable shared variables
    config : dict of the builder's arguments
    vocab_size, num_units, num_layers, input_kind, batching, cell : as built
    """

    def __init__(self, config, input_layer, mask_layer, recurrent_layers,
                 logits_layer, output_layer, target_var):
        self.config = dict(config)
        self.vocab_size = config["vocab_size"]
        self.num_units = config["num_units"]
        self.num_layers = config["num_layers"]
        self.input_kind = config["input"]
        self.batching = config["batching"]
        self.cell = config["cell"]
        self.input_layer = input_layer
        self.mask_layer = mask_layer
        self.recurrent_layers = list(recurrent_layers)
        self.logits_layer = logits_layer
        self.output_layer = output_layer
        self.input_var = input_layer.input_var
        self.target_var = target_var
        self.mask_var = mask_layer.input_var if mask_layer is not None \
            else None
        self.inputs = [self.input_var, self.target_var]
        if self.mask_var is not None:
            self.inputs.append(self.mask_var)
        self.params = L.get_all_params(output_layer, trainable=True)
        self._expressions = {}
        self._compiled = {}

    # -- symbolic expressions ------------------------------------------------
    def _graph(self, deterministic):
        """Logits, log-probabilities and per-token NLL, built once per
        ``deterministic`` (so loss and log-probabilities share one graph and
        one dropout draw)."""
        key = bool(deterministic)
        if key not in self._expressions:
            dense = self.logits_layer
            features = L.get_output(dense.input_layer, deterministic=key)
            logits = dense.get_output_for(features)
            log_probs = stable_log_softmax(logits)
            targets = self.target_var.flatten()
            # The loss uses Theano's fused op: one pass per row computes
            # nll = m + log(sum(exp(z - m))) - z_y with m = max z (finite for
            # any finite logits) and keeps the softmax, which its gradient
            # (softmax - onehot(y)) reuses.  Written out by hand, the same
            # maths costs a max, an exp, sums and a second softmax in the
            # gradient.  The bias is fused in too when the output layer is
            # the linear DenseLayer built here.
            # On the CPU our own fused operation (lstm_accum.softmax_nll)
            # does the same in vectorised C, ~12x faster than Theano's.
            fused_bias = (isinstance(dense, L.DenseLayer)
                          and dense.b is not None
                          and dense.nonlinearity is
                          lasagne.nonlinearities.linear
                          and features.ndim == 2)
            if fused_bias and unavailable_reason() is None:
                nll = softmax_nll(T.dot(features, dense.W), dense.b, targets)
            elif fused_bias:
                nll = T.nnet.crossentropy_softmax_argmax_1hot_with_bias(
                    T.dot(features, dense.W), dense.b, targets)[0]
            else:
                nll = T.nnet.crossentropy_softmax_1hot(logits, targets)[0]
            if self.mask_var is not None:
                nll = nll * self.mask_var.flatten()
            self._expressions[key] = (logits, log_probs, nll)
        return self._expressions[key]

    def logits(self, deterministic=True):
        """Output-layer logits ``(N, V)``, ``N = T`` or ``B*T`` (row-major)."""
        return self._graph(deterministic)[0]

    def log_probs(self, deterministic=True):
        """Stable log-probabilities ``(N, V)`` of every next word."""
        return self._graph(deterministic)[1]

    def probabilities(self, deterministic=True):
        """Softmax probabilities ``(N, V)`` (``exp`` of :meth:`log_probs`)."""
        return T.exp(self._graph(deterministic)[1])

    def token_nll(self, deterministic=True):
        """Negative log-likelihood of each target ``(N,)``, 0 where masked."""
        return self._graph(deterministic)[2]

    def loss(self, deterministic=False):
        """Summed negative log-likelihood over the target tokens of one call.

        Parameters
        ----------
        deterministic : bool
            True disables dropout (evaluation); False (training) keeps it.

        Returns
        -------
        Theano scalar
            ``sum_t [logsumexp(z_t) - z_t[y_t]]`` over unmasked tokens: a sum,
            not a mean (the accumulator divides once per window).
        """
        return self._graph(deterministic)[2].sum()

    def num_tokens(self):
        """Symbolic number of target tokens in one call (int64).

        ``mask.sum()`` for ``batching='mask'``, ``B*T`` otherwise (``T`` for
        ``'sample'``).
        """
        if self.mask_var is not None:
            return T.cast(self.mask_var, "int64").sum()
        return T.cast(self.target_var.size, "int64")

    def num_samples(self):
        """Symbolic number of sequences in one call (``B``; 1 for 'sample')."""
        return T.cast(self.input_var.shape[0], "int64")

    # -- compiled helpers ----------------------------------------------------
    def score_function(self):
        """Compiled ``f(*arrays) -> (summed NLL, tokens)``, without dropout.

        Built on first use and cached on the model.

        Returns
        -------
        callable
            Takes the arrays of :attr:`inputs` in order and returns a float
            (summed NLL of the batch) and an int (its target tokens).
        """
        if "score" not in self._compiled:
            fn = theano.function(
                self.inputs, [self.loss(deterministic=True),
                              self.num_tokens()],
                name="score")

            def score(*arrays):
                self.check_batch(*arrays)
                nll, tokens = fn(*arrays)
                return float(nll), int(tokens)
            score.theano_function = fn
            self._compiled["score"] = score
        return self._compiled["score"]

    def check_batch(self, *arrays):
        """Check arrays against the model's inputs before they reach Theano.

        Parameters
        ----------
        *arrays : numpy arrays
            In the order of :attr:`inputs`.

        Raises
        ------
        InputError
            Wrong number of arrays, wrong rank or dtype kind, inconsistent
            shapes, ids or targets outside ``[0, vocab_size)``, a mask that
            is not 0/1.
        """
        names = [v.name for v in self.inputs]
        if len(arrays) != len(self.inputs):
            raise InputError("expected %d arrays (%s), got %d"
                             % (len(self.inputs), ", ".join(names),
                                len(arrays)))
        arrays = [np.asarray(a) for a in arrays]
        for name, var, a in zip(names, self.inputs, arrays):
            if a.ndim != var.ndim:
                raise InputError("%s must be %d-D, got shape %r (batching=%r,"
                                 " input=%r)" % (name, var.ndim, a.shape,
                                                 self.batching,
                                                 self.input_kind))
        X, y = arrays[0], arrays[1]
        V = self.vocab_size
        if self.input_kind == "ids":
            _check_ids("input ids", X, V)
        elif X.shape[-1] != V:
            raise InputError("one-hot input must have %d columns (the "
                             "vocabulary size), got shape %r" % (V, X.shape))
        _check_ids("targets", y, V)
        expected_y = X.shape[1:2] if self.batching == "sample" else X.shape[:2]
        if y.shape != expected_y:
            raise InputError("targets must have shape %r to match input of "
                             "shape %r, got %r" % (expected_y, X.shape,
                                                   y.shape))
        if self.batching == "sample" and X.shape[0] != 1:
            raise InputError("batching='sample' takes one sentence per call "
                             "(input batch dimension 1), got shape %r"
                             % (X.shape,))
        if self.mask_var is not None:
            mask = arrays[2]
            if mask.shape != X.shape[:2]:
                raise InputError("mask must have shape %r (batch, time), got "
                                 "%r" % (X.shape[:2], mask.shape))
            if not np.all((mask == 0) | (mask == 1)):
                raise InputError("mask must hold only 0 and 1")

    def param_values(self):
        """Parameter values by name: ``OrderedDict`` name -> numpy array."""
        return OrderedDict((p.name, p.get_value())
                           for p in L.get_all_params(self.output_layer))

    def set_param_values(self, values):
        """Set parameters from a name -> array mapping.

        Raises
        ------
        InputError
            A name missing or unknown, or a shape that does not match.
        """
        params = L.get_all_params(self.output_layer)
        known = set(p.name for p in params)
        missing = [p.name for p in params if p.name not in values]
        extra = sorted(set(values) - known)
        if missing or extra:
            raise InputError("parameter names do not match the model: "
                             "missing %s, unknown %s" % (missing, extra))
        for p in params:
            value = np.asarray(values[p.name])
            if value.shape != p.get_value(borrow=True).shape:
                raise InputError("parameter %s has shape %r, got %r"
                                 % (p.name, p.get_value(borrow=True).shape,
                                    value.shape))
            p.set_value(value.astype(p.dtype))

    def _random_states(self):
        """``(name, shared state)`` of every random stream in the graph."""
        found = []
        for i, layer in enumerate(L.get_all_layers(self.output_layer)):
            srng = getattr(layer, "_srng", None)
            if srng is None:
                continue
            name = layer.name or "layer%d" % i
            for j, update in enumerate(srng.state_updates):
                var = update[0]  # (state, new state, ...) in MRG streams
                found.append(("rng/%s/%d" % (name, j), var))
        return found

    def rng_state(self):
        """States of the dropout random streams, for bit-identical resumes.

        Returns
        -------
        OrderedDict
            ``'rng/<layer>/<j>'`` -> int32 array (Theano's MRG stream
            state).  Empty without dropout, and until a training graph
            (``loss(deterministic=False)``) has been built: streams exist
            only once a random draw is in a graph.
        """
        return OrderedDict((name, var.get_value())
                           for name, var in self._random_states())

    def set_rng_state(self, state):
        """Restore what :meth:`rng_state` returned.

        Build the same training graphs first (in the same order) so that
        the same streams exist.

        Raises
        ------
        IncompatibleStateError
            When the names or shapes of the streams differ.
        """
        current = self._random_states()
        names = [name for name, _ in current]
        if sorted(names) != sorted(state):
            raise IncompatibleStateError(
                "random-stream states do not match the model: it has %s, "
                "the state has %s; build the training functions before "
                "restoring" % (names, sorted(state)))
        for name, var in current:
            value = np.asarray(state[name])
            if value.shape != var.get_value(borrow=True).shape:
                raise IncompatibleStateError(
                    "random stream %s has shape %r, the state %r"
                    % (name, var.get_value(borrow=True).shape, value.shape))
            var.set_value(value.astype(var.dtype))

    def __repr__(self):
        return ("LanguageModel(V=%d, H=%d, layers=%d, input=%r, batching=%r, "
                "cell=%r)" % (self.vocab_size, self.num_units,
                              self.num_layers, self.input_kind,
                              self.batching, self.cell))


def _check_ids(what, a, V):
    if a.dtype.kind not in "iu":
        raise InputError("%s must be integers (int32), got dtype %s"
                         % (what, a.dtype))
    if a.size and (a.min() < 0 or a.max() >= V):
        raise InputError("%s must lie in [0, %d), got values from %d to %d"
                         % (what, V, a.min(), a.max()))


def build_model(vocab_size, num_units, num_layers=1, input="onehot",
                batching="sample", cell="lstm", dropout=0.0,
                grad_clipping=5.0, seed=None, recurrent_kwargs=None,
                impl="auto"):
    """Build a word-level recurrent language model.

    Parameters
    ----------
    vocab_size : int
        V, the number of words including the special tokens.
    num_units : int
        H, units of every recurrent layer.
    num_layers : int
        Number of stacked recurrent layers, named ``'lstm1'``, ``'lstm2'``...
        (``'gru1'``... for GRU, ``'rnn1'``... for a factory).
    input : {'onehot', 'ids'}
        One-hot float input ``(B, T, V)`` as in the question, or int32 ids
        ``(B, T)`` with a row lookup instead of the input product.
    batching : {'sample', 'bucket', 'mask'}
        ``'sample'``: the question's network, one sentence per call, target
        ``(T,)``.  ``'bucket'``: equal-length minibatches ``(B, T)``.
        ``'mask'``: padded minibatches with a mask input.
    cell : 'lstm', 'gru' or callable
        The recurrent layer.  A callable is a factory
        ``factory(incoming, num_units, mask_input=None, grad_clipping=...,
        name=...) -> Layer`` whose layer maps ``(B, T, F)`` to
        ``(B, T, num_units)``; with ``input='ids'`` the first one receives
        one-hot vectors (see :class:`IdsToOneHotLayer`).
    dropout : float
        Dropout probability in ``[0, 1)`` on the output of every recurrent
        layer (i.e. between stacked layers and before the output layer);
        0 disables it.  Off when ``deterministic=True``.
    grad_clipping : float or False
        Gradient clipping of the recurrent layers (Lasagne's meaning).
    seed : int or None
        Seeds the weight initialisation and dropout streams; the same seed
        gives the same weights for one-hot and id input.  None uses
        Lasagne's global random generator.
    recurrent_kwargs : dict, optional
        Extra keyword arguments for the built-in recurrent layers (e.g.
        ``{'precompute_input': False}``).
    impl : {'auto', 'fused', 'scan'}
        How the built-in LSTM layers run: ``'auto'`` (default) as one fused
        C operation per layer (:mod:`lstm_accum.fused_lstm`) when the
        configuration allows it -- CPU device, no mask, Lasagne's default
        nonlinearities -- and Lasagne's ``theano.scan`` otherwise;
        ``'fused'`` requires the fused operation; ``'scan'`` always uses
        scan (exactly Lasagne's graph).  Parameters and numbers are the same
        either way; only the speed differs.  Ignored for GRU and factories.

    Returns
    -------
    LanguageModel

    Raises
    ------
    InputError
        For any argument outside the values above.

    Examples
    --------
    >>> model = build_model(12, 5, seed=0)   # doctest: +SKIP
    >>> loss = model.loss()                   # doctest: +SKIP
    """
    config = OrderedDict([
        ("vocab_size", vocab_size), ("num_units", num_units),
        ("num_layers", num_layers), ("input", input), ("batching", batching),
        ("cell", cell if isinstance(cell, str) else
         getattr(cell, "__name__", repr(cell))),
        ("dropout", dropout), ("grad_clipping", grad_clipping),
        ("seed", seed)])
    for name in ("vocab_size", "num_units", "num_layers"):
        value = config[name]
        if isinstance(value, bool) or not isinstance(
                value, (int, np.integer)) or value < 1:
            raise InputError("%s must be a positive integer, got %r"
                             % (name, value))
    vocab_size, num_units, num_layers = (int(vocab_size), int(num_units),
                                         int(num_layers))
    config.update(vocab_size=vocab_size, num_units=num_units,
                  num_layers=num_layers)
    _check_choice("input", input, INPUTS)
    _check_choice("batching", batching, BATCHINGS)
    _check_choice("impl", impl, IMPLS)
    if impl == "fused" and batching == "mask":
        raise InputError("impl='fused' does not take masks "
                         "(batching='mask'); use impl='auto' or 'scan'")
    if not callable(cell):
        _check_choice("cell", cell, CELLS)
    try:
        dropout = float(dropout)
    except (TypeError, ValueError):
        raise InputError("dropout must be a number in [0, 1), got %r"
                         % (dropout,))
    if not 0.0 <= dropout < 1.0:
        raise InputError("dropout must be in [0, 1), got %r" % dropout)
    if grad_clipping is not False:
        if not np.isfinite(grad_clipping) or grad_clipping <= 0:
            raise InputError("grad_clipping must be a positive number or "
                             "False, got %r" % (grad_clipping,))
        grad_clipping = float(grad_clipping)
    if seed is not None and (isinstance(seed, bool) or not isinstance(
            seed, (int, np.integer))):
        raise InputError("seed must be an integer or None, got %r" % (seed,))
    recurrent_kwargs = dict(recurrent_kwargs or {})

    saved_rng = lasagne.random.get_rng()
    if seed is not None:
        lasagne.random.set_rng(np.random.RandomState(seed))
    try:
        return _build(config, vocab_size, num_units, num_layers, input,
                      batching, cell, dropout, grad_clipping,
                      recurrent_kwargs, impl)
    finally:
        lasagne.random.set_rng(saved_rng)


def _build(config, V, H, num_layers, input_kind, batching, cell, dropout,
           grad_clipping, recurrent_kwargs, impl):
    if input_kind == "onehot":
        l_in = L.InputLayer((None, None, V), name="input")
        l_in.input_var.name = "X"
    else:
        l_in = L.InputLayer((None, None), input_var=T.imatrix("X"),
                            name="input")
    l_mask = None
    if batching == "mask":
        l_mask = L.InputLayer((None, None), name="mask")
        l_mask.input_var.name = "mask"
    target_var = T.ivector("y") if batching == "sample" else T.imatrix("y")

    prefix = cell if isinstance(cell, str) else "rnn"
    layer = l_in
    recurrent = []
    for i in range(1, num_layers + 1):
        name = "%s%d" % (prefix, i)
        if i > 1 and dropout > 0:
            layer = L.DropoutLayer(layer, p=dropout,
                                   name="dropout%d" % (i - 1))
        first_ids = i == 1 and input_kind == "ids"
        if callable(cell):
            if first_ids:
                layer = IdsToOneHotLayer(layer, V, name="onehot")
            layer = cell(layer, H, mask_input=l_mask,
                         grad_clipping=grad_clipping, name=name)
            if not isinstance(layer, L.Layer):
                raise InputError("the cell factory must return a Lasagne "
                                 "Layer, got %r" % (layer,))
        else:
            kwargs = dict(recurrent_kwargs, mask_input=l_mask,
                          grad_clipping=grad_clipping, name=name)
            if first_ids:
                if cell == "lstm":
                    kwargs["impl"] = impl
                cls = IdLSTMLayer if cell == "lstm" else IdGRULayer
                layer = cls(layer, H, V, **kwargs)
            elif cell == "lstm" and impl != "scan":
                layer = FusedLSTMLayer(layer, H, impl=impl, **kwargs)
            else:
                # impl='scan': exactly Lasagne's layer (the question's).
                cls = L.LSTMLayer if cell == "lstm" else L.GRULayer
                layer = cls(layer, H, **kwargs)
        recurrent.append(layer)
    if dropout > 0:
        layer = L.DropoutLayer(layer, p=dropout,
                               name="dropout%d" % num_layers)
    if batching == "sample":
        # The question's network: batch of one, (1, T, H) -> (T, H).
        layer = L.SliceLayer(layer, 0, 0, name="slice")
    else:
        layer = L.ReshapeLayer(layer, (-1, H), name="flatten")
    l_logits = L.DenseLayer(layer, V, nonlinearity=None, name="softmax")
    l_out = L.NonlinearityLayer(l_logits, lasagne.nonlinearities.softmax,
                                name="probabilities")
    return LanguageModel(config, l_in, l_mask, recurrent, l_logits, l_out,
                         target_var)
