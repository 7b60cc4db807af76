"""The language model object: a built Lasagne network, its symbolic inputs,
and the expressions and compiled helpers the rest of the package needs.

A :class:`LanguageModel` (made by :func:`~lstm_accum.models.build_model`)
gives the summed negative log-likelihood over target tokens
(:meth:`~LanguageModel.loss`), the number of target tokens and sequences in
one call, per-token log-probabilities, the host-side check of a call's
arrays, its parameters by name and the states of its dropout streams.

The output layer is linear (it gives logits) and is named ``'softmax'`` (its
parameters are ``softmax.W`` and ``softmax.b``); ``output_layer`` applies the
softmax on top of it, so ``lasagne.layers.get_output(model.output_layer)``
gives probabilities exactly like the question's ``DenseLayer(V, softmax)``.
The loss never takes ``log(softmax(x))``: it is
``logsumexp(z) - z[target]`` with the maximum subtracted first, finite for
any finite logits, computed in one pass per row (with the output bias) by
:func:`lstm_accum.ops.softmax_nll` on the CPU and by Theano's fused
``crossentropy_softmax_argmax_1hot_with_bias`` elsewhere (both keep the
softmax for the gradient); :meth:`LanguageModel.log_probs` gives the same
log-probabilities through :func:`stable_log_softmax`.
"""
from collections import OrderedDict

import numpy as np

from ..backend import theano, T, lasagne
from ..checks import check_arrays
from ..exceptions import InputError
from ..ops import include_team, softmax_nll, unavailable_reason
from . import random_state

__all__ = ["LanguageModel", "stable_log_softmax"]

L = lasagne.layers


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


def is_causal(cell, recurrent_layers):
    """Whether each output of a model depends only on the inputs up to it.

    Parameters
    ----------
    cell : str or callable
        The builder's ``cell``.
    recurrent_layers : list of Lasagne layers

    Returns
    -------
    bool
        True for the built-in cells (``'lstm'``, ``'gru'``: Lasagne's
        ``LSTMLayer``/``GRULayer`` or ours) running forwards; False for a
        cell factory (not known) or ``backwards=True`` (not so).
    """
    return isinstance(cell, str) and all(
        isinstance(layer, (L.LSTMLayer, L.GRULayer)) and not layer.backwards
        for layer in recurrent_layers)


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
    causal : bool
        Outputs depend on earlier inputs only (:func:`is_causal`).
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
        self.causal = is_causal(self.cell, self.recurrent_layers)
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
            # On the CPU our own fused operation (lstm_accum.ops.softmax_nll)
            # does the same in vectorised C, ~12x faster than Theano's
            # (benchmarks/softmax_nll.py).
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
    def compiled(self, name, build):
        """A compiled helper of this model, built on first use and kept.

        Parameters
        ----------
        name : str
            Its key (``'score'``; the sampler uses ``'sampler'``).
        build : callable
            ``build() -> object``, called only when ``name`` is not kept yet.

        Returns
        -------
        object
            What ``build()`` returned for this model, the first time.
        """
        if name not in self._compiled:
            self._compiled[name] = build()
        return self._compiled[name]

    def score_function(self):
        """Compiled ``f(*arrays) -> (summed NLL, tokens)``, without dropout.

        Built on first use and cached on the model.

        Returns
        -------
        callable
            Takes the arrays of :attr:`inputs` in order and returns a float
            (summed NLL of the batch) and an int (its target tokens).
        """
        return self.compiled("score", self._build_score)

    def _build_score(self):
        fn = theano.function(
            self.inputs, [self.loss(deterministic=True), self.num_tokens()],
            name="score",
            mode=include_team(theano.compile.mode.get_default_mode()))

        def score(*arrays):
            nll, tokens = fn(*self.check_batch(*arrays))
            return float(nll), int(tokens)
        score.theano_function = fn
        return score

    def check_batch(self, *arrays):
        """Check and convert one call's arrays before they reach Theano.

        :func:`lstm_accum.checks.check_arrays` (count, rank, dtype kind, ids
        and targets in ``[0, vocab_size)``, a mask shaped like the targets)
        and what only the model knows: one-hot rows of ``vocab_size``
        columns, targets shaped like the input, one sentence per call for
        ``batching='sample'``, a mask of 0 and 1.

        Parameters
        ----------
        *arrays : array_like
            In the order of :attr:`inputs`.

        Returns
        -------
        list of numpy.ndarray
            The arrays in the dtypes of :attr:`inputs`, ready for a compiled
            function: pass ``check=model.check_batch`` to
            :class:`~lstm_accum.accumulation.GradientAccumulator` and each
            array is checked once per call.

        Raises
        ------
        InputError
            Naming the array, what it was and what was expected.
        """
        arrays = check_arrays(self.inputs, arrays, vocab_size=self.vocab_size,
                              mask=self.mask_var, targets=self.target_var,
                              what="LanguageModel.check_batch()")
        X, y = arrays[0], arrays[1]
        V = self.vocab_size
        if self.input_kind == "onehot" and X.shape[-1] != V:
            raise InputError("one-hot input must have %d columns (the "
                             "vocabulary size), got shape %r" % (V, X.shape))
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
            if not np.all((mask == 0) | (mask == 1)):
                raise InputError("mask must hold only 0 and 1")
        return arrays

    # -- state ---------------------------------------------------------------
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

    def rng_state(self):
        """States of the dropout random streams, for bit-identical resumes.

        Returns
        -------
        OrderedDict
            ``'rng/<i>.<layer>/rstate'`` and ``'rng/<i>.<layer>/<j>'`` ->
            int32 arrays, the checkpoint's format (see
            :mod:`lstm_accum.models.random_state`).  Empty without dropout;
            the ``<j>`` entries exist only once a training graph
            (``loss(deterministic=False)``) has been built: a stream draws
            only once a random draw is in a graph.
        """
        return random_state.rng_state(self.output_layer)

    def set_rng_state(self, arrays):
        """Restore what :meth:`rng_state` returned.

        Build the same training graphs first (in the same order) so that
        the same draws exist.

        Parameters
        ----------
        arrays : mapping of str -> array
            May be a whole checkpoint's arrays: only ``'rng/...'`` keys are
            read.

        Raises
        ------
        IncompatibleStateError
            When the names or shapes of the streams differ.
        """
        random_state.set_rng_state(self.output_layer, arrays)

    def __repr__(self):
        return ("LanguageModel(V=%d, H=%d, layers=%d, input=%r, batching=%r, "
                "cell=%r)" % (self.vocab_size, self.num_units,
                              self.num_layers, self.input_kind,
                              self.batching, self.cell))
