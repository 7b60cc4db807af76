"""The recurrent layers of the language models: Lasagne's LSTM/GRU run as one
fused C operation or fed with word ids, with Lasagne's parameters.

``onehot(ids) . W_in`` is the row lookup ``W_in[ids]``: the id-input layers
(:class:`IdLSTMLayer` / :class:`IdGRULayer`) look rows up instead of
multiplying, and otherwise compute exactly what the one-hot layers compute.
They have the same parameters (names, shapes) as the one-hot layer, so
weights transfer both ways with ``lasagne.layers.set_all_param_values``.
:class:`FusedLSTMLayer` is ``LSTMLayer`` computed by
:func:`lstm_accum.ops.fused_lstm` where it can be. Each declares the step
it computes (``recurrent_step``, see :func:`~lstm_accum.models.steps.
step_kind`), so the sampler can run it one step at a time.
"""
from ..backend import theano, T, lasagne
from ..checks import check_choice
from ..exceptions import InputError
from ..ops import fused_lstm, fused_supported
from .steps import gru_stacked_params, gru_step, lstm_stacked_params, lstm_step

__all__ = ["FusedLSTMLayer", "IdLSTMLayer", "IdGRULayer", "IdsToOneHotLayer",
           "IMPLS"]

L = lasagne.layers

#: How an LSTM layer runs: fused when supported, fused or an error, scan.
IMPLS = ("auto", "fused", "scan")


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

    def _split_inputs(self, inputs, stacked_params):
        """The ids, the mask (or None), the batch size and the stacked hidden
        weights and biases (from ``stacked_params(self)``) of a call."""
        ids = inputs[0]
        mask = inputs[1] if len(inputs) > 1 else None
        _, W_hid_stacked, b_stacked = stacked_params(self)
        return ids, mask, ids.shape[0], W_hid_stacked, b_stacked

    def _input_n(self, input_n, W_in_gates, b_stacked):
        if self.precompute_input:
            return input_n
        return self._lookup(W_in_gates, input_n) + b_stacked

    def _input_non_sequences(self, W_in_gates, b_stacked):
        """What the step's row lookup takes: the gates' input weights and
        the stacked biases, or as many placeholders when the rows are
        precomputed."""
        if self.precompute_input:
            return [()] * (len(W_in_gates) + 1)
        return W_in_gates + [b_stacked]

    def _scan(self, step, sequences, outputs_info, non_seqs):
        """The scan outputs of ``step`` over time, in the layer's direction
        and with its gradient truncation."""
        return theano.scan(
            fn=step,
            sequences=sequences,
            outputs_info=outputs_info,
            go_backwards=self.backwards,
            truncate_gradient=self.gradient_steps,
            non_sequences=non_seqs,
            strict=True)[0]

    def _batch_major(self, hid_out):
        """Hidden states ``(T, B, H)`` of the scan as ``(B, T, H)``, in
        input order."""
        hid_out = hid_out.dimshuffle(1, 0, 2)
        if self.backwards:
            hid_out = hid_out[:, ::-1]
        return hid_out


class _FusedLSTMMixin(object):
    """Runs an ``LSTMLayer`` as one :class:`~lstm_accum.ops.FusedLSTM`
    operation when it can (see :func:`~lstm_accum.ops.fused_supported`)
    instead of ``theano.scan``; same parameters, same numbers."""

    #: 'auto' (fused when supported), 'fused' (required) or 'scan'.
    impl = "auto"

    def _set_impl(self, impl):
        check_choice("impl", impl, IMPLS)
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
        _, _, b_stacked = lstm_stacked_params(self)
        W_hid = [self.W_hid_to_ingate, self.W_hid_to_forgetgate,
                 self.W_hid_to_cell, self.W_hid_to_outgate]
        hid = fused_lstm(input_contrib, W_hid, *peepholes,
                         cell_init=_initial_state(self.cell_init, num_batch),
                         hid_init=_initial_state(self.hid_init, num_batch),
                         grad_clipping=self.grad_clipping, b=b_stacked)
        return hid.dimshuffle(1, 0, 2)


class FusedLSTMLayer(_FusedLSTMMixin, L.LSTMLayer):
    """``lasagne.layers.LSTMLayer`` computed by one fused operation.

    The same layer as Lasagne's (same parameters, names, equations and
    ``grad_clipping``), for one-hot or any other feature input ``(B, T, F)``;
    on the CPU, without a mask, its sequence loop and that of its gradient
    run in C (:mod:`lstm_accum.ops.fused_lstm`).  Elsewhere it is Lasagne's
    scan.

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

    #: One step is :func:`~lstm_accum.models.steps.lstm_step`.
    recurrent_step = "lstm"

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

    #: One step is :func:`~lstm_accum.models.steps.lstm_step`.
    recurrent_step = "lstm"

    def __init__(self, incoming, num_units, vocab_size, impl="auto",
                 **kwargs):
        self._init_with_ids(L.LSTMLayer, incoming, vocab_size, num_units,
                            kwargs)
        self._set_impl(impl)

    def get_output_for(self, inputs, **kwargs):
        ids, mask, num_batch, W_hid_stacked, b_stacked = self._split_inputs(
            inputs, lstm_stacked_params)
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
        non_seqs += self._input_non_sequences(W_in_gates, b_stacked)
        cell_out, hid_out = self._scan(
            step_masked if mask is not None else step, sequences,
            [_initial_state(self.cell_init, num_batch),
             _initial_state(self.hid_init, num_batch)], non_seqs)
        return self._batch_major(hid_out)


class IdGRULayer(_IdInputMixin, L.GRULayer):
    """``lasagne.layers.GRULayer`` fed with word ids instead of one-hot rows.

    See :class:`IdLSTMLayer`; the same holds for the GRU: same parameters as
    ``GRULayer`` on a ``(B, T, V)`` input, same numbers, row lookup instead
    of the one-hot product.

    Parameters
    ----------
    incoming, num_units, vocab_size
        As for :class:`IdLSTMLayer`.
    **kwargs
        Any ``GRULayer`` argument except ``unroll_scan``.

    Raises
    ------
    InputError
        As for :class:`IdLSTMLayer`.
    """

    #: One step is :func:`~lstm_accum.models.steps.gru_step`.
    recurrent_step = "gru"

    def __init__(self, incoming, num_units, vocab_size, **kwargs):
        self._init_with_ids(L.GRULayer, incoming, vocab_size, num_units,
                            kwargs)

    def get_output_for(self, inputs, **kwargs):
        ids, mask, num_batch, W_hid_stacked, b_stacked = self._split_inputs(
            inputs, gru_stacked_params)
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

        non_seqs = [W_hid_stacked] + self._input_non_sequences(W_in_gates,
                                                               b_stacked)
        hid_out = self._scan(
            step_masked if mask is not None else step, sequences,
            [_initial_state(self.hid_init, num_batch)], non_seqs)
        return self._batch_major(hid_out)


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
