"""Gradient accumulation on the device: sum N gradients, apply one update.

:class:`GradientAccumulator` compiles two Theano functions, once:

``accumulate(*arrays)``
    adds the gradient of the *summed* loss of one call (one sentence or one
    minibatch) into one shared accumulator per parameter, and adds to shared
    counters (samples, tokens, summed loss). It returns the loss and the
    counts of the call, nothing else: no gradient ever reaches host memory.
``apply()``
    divides the accumulated sums once by the chosen denominator, optionally
    rescales them to a maximum total norm, hands them to any Lasagne update
    rule (they all accept a list of gradient expressions), applies the update
    and resets accumulators and counters -- all in one call.

Extra memory is the accumulators plus the update rule's own state, whatever
the number of samples accumulated.

A call whose loss or gradient is NaN/Inf is not added to the window; it is
counted as skipped. A window that ends with nothing finite to apply leaves
parameters and optimizer state bit-identical, logs a warning on the
``'lstm_accum'`` logger and returns ``applied=False``. Gradient clipping
inside a layer (``LSTMLayer(grad_clipping=5)``) acts on the gradient of
each call's *summed* loss, as in the original question's per-sentence
training; ``max_norm`` acts on the window's averaged gradient.

The class is a facade over parts with one job each: :mod:`.inputs` (checks
and resolves its arguments), :mod:`.window` (the accumulators and
counters), :mod:`.graphs` (the two steps as plain Theano updates, which you
may compile yourself), :mod:`.policy` (what to do after a non-finite
window) and :mod:`.state` (the saved state). Arrays are checked on the host
by :func:`lstm_accum.checks.check_arrays`, or by your own ``check=``.
"""
import collections

import numpy as np

from ..backend import theano, lasagne
from ..checks import check_arrays
from ..exceptions import InputError
from ..ops import on_cpu
from .graphs import (accumulate_updates, apply_updates, apply_mode,
                     compile_mode)
from .inputs import (NORMALIZE_CHOICES, check_normalize, check_graph,
                     check_host_check, check_learning_rate, check_max_norm,
                     check_vocab_size, learning_rate_variable, resolve_inputs)
from .policy import ConsecutiveBadWindows
from .state import StateCodec, hyper_parameters, state_variables
from .window import check_window_ready, reset_window, window_variables

__all__ = ["GradientAccumulator", "AccumulateResult", "ApplyResult",
           "NORMALIZE_CHOICES"]

AccumulateResult = collections.namedtuple(
    "AccumulateResult", ["loss", "samples", "tokens", "skipped"])
AccumulateResult.__doc__ = """What one ``accumulate`` call contributed.

``loss`` is the summed loss of the call (float; NaN/Inf when it was skipped),
``samples`` and ``tokens`` the counts added to the window (0 when skipped),
``skipped`` the number of samples skipped because the loss or the gradient
was not finite."""

ApplyResult = collections.namedtuple(
    "ApplyResult", ["applied", "samples", "tokens", "loss", "grad_norm",
                    "skipped"])
ApplyResult.__doc__ = """What one ``apply`` call did.

``applied`` is False when the window was non-finite and parameters and
optimizer state were left untouched. ``samples``, ``tokens`` and
``skipped`` are the window's counters, ``loss`` the window's summed loss
divided by the same denominator as the gradients, ``grad_norm`` the total
L2 norm of the averaged gradient before any ``max_norm`` rescaling."""


class GradientAccumulator(object):
    """Accumulate gradients of N samples on the device, then apply one update.

    The update applied by :meth:`apply` is::

        g = sum_i grad(loss_i) / denominator     (denominator: see normalize)
        g = g * min(1, max_norm / |g|)           (only if max_norm is set)
        params, state = update(g, params, learning_rate, **update_kwargs)

    Parameters
    ----------
    loss : Theano scalar
        The *summed* (not averaged) loss of what one ``accumulate`` call
        sees: one sentence, or a minibatch of them.
    params : list of shared variables
        The parameters to train, e.g.
        ``lasagne.layers.get_all_params(l_out, trainable=True)``.
    inputs : list of Theano variables
        The symbolic inputs of ``loss``, in the order ``accumulate`` takes
        their arrays, e.g. ``[l_in.input_var, target_var]``.
    normalize : {'samples', 'tokens', 'sum'}
        Denominator of the averaged gradient, required: the window's
        sequences (the mean of each sequence's summed loss), its target
        tokens (the true token mean, also with variable lengths), or none.
    update : callable, optional
        A Lasagne update rule or any ``update(grads, params, **kwargs) ->
        OrderedDict`` (default ``lasagne.updates.adagrad``).
    learning_rate : float or shared scalar, optional
        Initial learning rate (default 0.005), in the shared variable
        :attr:`learning_rate` (:meth:`set_learning_rate` never recompiles).
        Passed to ``update`` when it takes a ``learning_rate`` argument.
    update_kwargs : dict, optional
        Further keyword arguments of ``update`` (e.g. ``momentum=0.9``).
    max_norm : float, optional
        If set, the averaged gradient is rescaled so that its total L2 norm
        is at most ``max_norm`` (as ``lasagne.updates.total_norm_constraint``).
    num_samples : Theano int scalar or int, optional
        Number of sequences in one call (default ``inputs[0].shape[0]``).
    num_tokens : Theano scalar, optional
        Number of target tokens in one call (default ``mask.sum()``, else
        ``targets.size``; needed for ``'tokens'`` when neither is known).
    targets : Theano variable, optional
        The target ids among ``inputs`` (default: the last integer input).
    mask : Theano variable, optional
        The mask among ``inputs`` (default: the input named ``'*mask*'``),
        shaped like the targets.
    vocab_size : int, optional
        Integer inputs must lie in ``[0, vocab_size)`` (checked per call).
    max_bad_windows : int, optional
        Raise :class:`NonFiniteError` after this many consecutive non-finite
        windows (default 5).
    name : str, optional
        Prefix of the accumulator and counter names (default ``'accum'``).
    check : callable, optional
        ``check(*arrays) -> arrays`` (e.g. ``model.check_batch``) replaces
        the generic check, :func:`lstm_accum.checks.check_arrays`, so each
        array is checked once; it raises ``InputError`` for bad arrays and
        returns those to pass on (None: as given). Not with ``vocab_size``.
    policy : object, optional
        What to do after each window (:mod:`.policy`); default
        ``ConsecutiveBadWindows(max_bad_windows)``.

    Attributes
    ----------
    params : list of shared variables
        The parameters, as given.
    window : Window
        The open window's shared variables (see :mod:`.window`).
    accumulators, counter_variables : list of shared variables
        ``window.accumulators`` (``'<name>/<param label>'``, one per
        parameter, like it) and ``window.counters``
        (``<name>/samples|tokens|skipped|loss``).
    optimizer_state : list of shared variables
        The shared variables the update rule created (e.g. Adagrad's
        squared-gradient sums), named ``'optimizer/<param label>/<j>'`` or
        ``'optimizer/global/<j>'`` (Adam's time step).
    learning_rate : shared scalar
        The learning rate, of dtype floatX.
    accumulate_fn, apply_fn : theano.compile.Function
        The two compiled functions (of :mod:`.graphs`' updates).

    Raises
    ------
    InputError
        For a missing or unknown ``normalize``, a non-scalar loss, a bad
        learning rate, ``normalize='tokens'`` without a token count,
        inputs/params of the wrong kind, or ``vocab_size`` with ``check``.

    Examples
    --------
    >>> acc = GradientAccumulator(loss, params, [l_in.input_var, y],
    ...                           normalize='samples')  # doctest: +SKIP
    >>> for X, y in sentences:                            # doctest: +SKIP
    ...     acc.accumulate(X, y)
    ...     if acc.samples >= 1024:
    ...         acc.apply()
    """

    #: On the CPU, add gradients with ``AccumulateIfFinite`` (in place,
    #: numpy) rather than a ``switch(ok, acc + g, acc)`` graph. Read when
    #: the functions are compiled; the results are the same.
    cpu_inplace_add = True
    #: Keep ``accumulate``'s intermediate buffers between calls (Theano
    #: ``allow_gc=False``, that function only): gradient temporaries are not
    #: reallocated at every call; resident memory stays at the call's peak.
    keep_buffers = True

    def __init__(self, loss, params, inputs, normalize=None,
                 update=lasagne.updates.adagrad, learning_rate=0.005,
                 update_kwargs=None, max_norm=None, num_samples=None,
                 num_tokens=None, targets=None, mask=None, vocab_size=None,
                 max_bad_windows=5, name="accum", check=None, policy=None):
        self.normalize = check_normalize(normalize)
        self.name = name
        self.params = list(params)
        self.inputs = list(inputs)
        check_graph(loss, self.params, self.inputs)
        self.update = update
        self.update_kwargs = dict(update_kwargs or {})
        self.max_norm = check_max_norm(max_norm)
        self.policy = ConsecutiveBadWindows(max_bad_windows) \
            if policy is None else policy
        self.vocab_size = check_vocab_size(vocab_size)
        self.check = check_host_check(check, vocab_size)
        self.learning_rate = learning_rate_variable(learning_rate)

        resolved = resolve_inputs(self.inputs, self.normalize, num_samples,
                                  num_tokens, targets, mask)
        self.targets, self.mask = resolved.targets, resolved.mask
        self.window = window_variables(self.params, name)
        self.accumulators = list(self.window.accumulators)
        self.counter_variables = self.window.counters

        step = accumulate_updates(
            loss, self.params, self.window, resolved.num_samples,
            resolved.num_tokens, inplace_add=on_cpu() and self.cpu_inplace_add)
        self.accumulate_fn = theano.function(
            self.inputs, step.outputs, updates=step.updates,
            on_unused_input="ignore", mode=compile_mode(self.keep_buffers),
            name=name + "/accumulate")
        app = apply_updates(self.params, self.window, self.normalize,
                            update, self.learning_rate, self.update_kwargs,
                            self.max_norm)
        self.optimizer_state = app.optimizer_state
        self._state_names = [v.name for v in app.optimizer_state]
        self.apply_fn = theano.function(
            [], app.outputs, updates=app.updates, on_unused_input="ignore",
            mode=apply_mode(), name=name + "/apply")

    def accumulate(self, *arrays):
        """Add the gradient of one call's summed loss to the accumulators.

        Parameters
        ----------
        *arrays : numpy arrays
            One per symbolic input, in the order of ``inputs``.

        Returns
        -------
        AccumulateResult
            ``(loss, samples, tokens, skipped)`` of this call.

        Raises
        ------
        InputError
            For arrays of the wrong rank or dtype kind, ids out of range, a
            mask shaped unlike the targets (or what ``check`` refuses).
        """
        if self.check is None:
            values = check_arrays(self.inputs, arrays, self.vocab_size,
                                  self.mask, self.targets)
        else:
            values = self.check(*arrays)
            values = arrays if values is None else values
        try:
            loss, samples, tokens, skipped = self.accumulate_fn(*values)
        except (IndexError, ValueError) as err:
            # Theano's own message spans many lines; its first says what.
            raise InputError("accumulate(): the compiled function rejected "
                             "the arrays (%s); check shapes and that token "
                             "ids lie in [0, vocab size) (pass vocab_size= "
                             "to have ids checked before the call)" %
                             str(err).splitlines()[0]) from err
        return AccumulateResult(float(loss), int(samples), int(tokens),
                                int(skipped))

    def apply(self):
        """Divide, clip, update the parameters and reset the window.

        Returns
        -------
        ApplyResult
            ``(applied, samples, tokens, loss, grad_norm, skipped)``.

        Raises
        ------
        InputError
            For an empty window, or one without target tokens with
            ``normalize='tokens'``.
        NonFiniteError
            After ``max_bad_windows`` consecutive bad windows (the default
            policy).
        """
        check_window_ready(self.samples, self.skipped, self.tokens,
                           self.normalize)
        ok, samples, tokens, loss, norm, skipped = self.apply_fn()
        result = ApplyResult(bool(ok), int(samples), int(tokens), float(loss),
                             float(norm), int(skipped))
        self.policy.record(result, self.name)
        return result

    def reset(self):
        """Discard the open window: zero accumulators and counters.

        Parameters, optimizer state, the learning rate and the count of
        consecutive bad windows are kept (e.g. to drop a partial window).
        """
        reset_window(self.window)

    @property
    def samples(self):
        """Number of samples accumulated since the last ``apply`` (int)."""
        return int(self.window.samples.get_value())

    @property
    def tokens(self):
        """Number of target tokens accumulated since the last ``apply``."""
        return int(self.window.tokens.get_value())

    @property
    def skipped(self):
        """Number of non-finite samples skipped since the last ``apply``."""
        return int(self.window.skipped.get_value())

    @property
    def max_bad_windows(self):
        """The policy's limit of consecutive non-finite windows."""
        return getattr(self.policy, "max_bad_windows", None)

    @max_bad_windows.setter
    def max_bad_windows(self, value):
        self.policy.max_bad_windows = value

    def get_learning_rate(self):
        """The current learning rate (float)."""
        return float(self.learning_rate.get_value())

    def set_learning_rate(self, value):
        """Set the learning rate; takes effect at the next ``apply``.

        Parameters
        ----------
        value : float
            A finite number >= 0.

        Raises
        ------
        InputError
            For NaN, Inf, a negative value or a non-number.
        """
        value = check_learning_rate(value)
        self.learning_rate.set_value(
            np.asarray(value, dtype=self.learning_rate.dtype))

    def _codec(self):
        pairs = state_variables(self.params, self.window,
                                self.optimizer_state, self.learning_rate,
                                self._state_names)
        return StateCodec(pairs, self.name + "/bad_windows", hyper_parameters(
            self.normalize, self.update, self.max_norm, self.update_kwargs))

    def state(self):
        """Everything needed to resume exactly, as plain numpy arrays.

        Returns
        -------
        dict of str -> numpy.ndarray
            Parameters, window, optimizer state, learning rate, bad-window
            count and fixed settings, under the keys :mod:`.state` lists.
            Every array is a copy, safe for ``numpy.savez``.
        """
        return self._codec().encode(self.policy.bad_windows)

    def load_state(self, state):
        """Restore what :meth:`state` returned (e.g. from a checkpoint).

        Parameters
        ----------
        state : mapping of str -> array
            Exactly the keys of :meth:`state`.

        Raises
        ------
        IncompatibleStateError
            As :meth:`~lstm_accum.accumulation.state.StateCodec.decode`
            says; then nothing was changed.
        """
        self.policy.bad_windows = self._codec().restore(state)
