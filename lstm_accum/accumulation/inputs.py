"""The accumulator's arguments: checked, and resolved into graph pieces.

What a :class:`~lstm_accum.accumulation.accumulator.GradientAccumulator`
is given is checked here, at graph-build time, with errors that say what to
pass instead; then the targets and the mask are found among the inputs and
the number of samples and of target tokens of one call become two int64
Theano scalars (:func:`resolve_inputs`).
"""
import collections
import numbers

import numpy as np

from ..backend import theano, T
from ..exceptions import InputError

__all__ = ["NORMALIZE_CHOICES", "ResolvedInputs", "check_normalize",
           "check_graph", "check_learning_rate", "learning_rate_variable",
           "check_host_check", "check_max_norm",
           "check_max_bad_windows", "check_vocab_size", "find_targets",
           "find_mask", "call_counts", "resolve_inputs"]

#: Accepted values of ``normalize``.
NORMALIZE_CHOICES = ("samples", "tokens", "sum")

ResolvedInputs = collections.namedtuple(
    "ResolvedInputs", ["targets", "mask", "num_samples", "num_tokens"])
ResolvedInputs.__doc__ = """What :func:`resolve_inputs` found.

``targets`` and ``mask`` are among the inputs (or None), ``num_samples``
and ``num_tokens`` int64 Theano scalars: the counts of one call."""


def _describe_input(var, index):
    return "input %d (%r)" % (index, var.name) if var.name else \
        "input %d" % index


def check_normalize(normalize):
    """Return ``normalize`` if it is one of :data:`NORMALIZE_CHOICES`.

    Raises
    ------
    InputError
        For anything else, None included: there is no silent default.
    """
    if normalize not in NORMALIZE_CHOICES:
        raise InputError(
            "normalize must be one of %s, got %r; choose 'samples' (mean "
            "over sequences, as the original question), 'tokens' (true "
            "token mean) or 'sum'" % (", ".join(map(repr, NORMALIZE_CHOICES)),
                                      normalize))
    return normalize


def check_graph(loss, params, inputs):
    """Check the loss, parameters and inputs an accumulator is built from.

    Parameters
    ----------
    loss : Theano scalar
    params : list of shared variables
    inputs : list of symbolic Theano variables

    Raises
    ------
    InputError
        For a non-scalar loss, no or repeated parameters, parameters that
        are not shared variables, no inputs, or inputs that are shared
        variables or constants.
    """
    if not isinstance(loss, theano.Variable) or \
            getattr(loss, "ndim", None) != 0:
        raise InputError("loss must be a Theano scalar (the summed loss of"
                         " one call), got %r with ndim=%s; sum it, e.g. "
                         "loss.sum()" % (loss, getattr(loss, "ndim", None)))
    if not params:
        raise InputError("params is empty; pass e.g. lasagne.layers."
                         "get_all_params(l_out, trainable=True)")
    for p in params:
        if not isinstance(p, theano.compile.SharedVariable):
            raise InputError("params must be shared variables, got %r; "
                             "pass lasagne.layers.get_all_params(l_out, "
                             "trainable=True)" % (p,))
    if len(set(params)) != len(params):
        raise InputError("params lists a shared variable twice; pass "
                         "each parameter once")
    if not inputs:
        raise InputError("inputs is empty; pass the symbolic inputs of "
                         "the loss, e.g. [l_in.input_var, target_var]")
    for i, v in enumerate(inputs):
        if not isinstance(v, theano.Variable) or \
                isinstance(v, (theano.compile.SharedVariable,
                               theano.Constant)):
            raise InputError("%s is %r; inputs must be symbolic variables "
                             "such as l_in.input_var" %
                             (_describe_input(v, i) if isinstance(
                                 v, theano.Variable) else "input %d" % i, v))


def check_learning_rate(value):
    """Return ``float(value)`` for a finite number ``>= 0``.

    Raises
    ------
    InputError
        For NaN, Inf, a negative value or a non-number.
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError("learning rate must be a number, got %r; pass e.g. "
                         "learning_rate=0.005" % (value,))
    if not np.isfinite(value) or value < 0:
        raise InputError("learning rate must be a finite number >= 0, got %r;"
                         " pass e.g. learning_rate=0.005" % value)
    return value


def learning_rate_variable(learning_rate):
    """The learning rate as a shared floatX scalar named ``hyper/learning_rate``.

    Parameters
    ----------
    learning_rate : float or shared scalar
        A shared variable is checked and returned as it is.

    Raises
    ------
    InputError
        See :func:`check_learning_rate`.
    """
    if isinstance(learning_rate, theano.compile.SharedVariable):
        check_learning_rate(learning_rate.get_value())
        return learning_rate
    return theano.shared(np.asarray(check_learning_rate(learning_rate),
                                    dtype=theano.config.floatX),
                         name="hyper/learning_rate")


def check_host_check(check, vocab_size):
    """Return ``check``: None, or a callable used instead of the generic
    host check (which ``vocab_size`` configures, so not both).

    Raises
    ------
    InputError
        For a ``check`` that is not callable, or given with ``vocab_size``.
    """
    if check is not None and (vocab_size is not None or not callable(check)):
        raise InputError(
            "check must be a callable check(*arrays) -> arrays and replaces "
            "the generic check, which vocab_size= configures; got check=%r "
            "with vocab_size=%r: pass one of them (let check test the ids)"
            % (check, vocab_size))
    return check


def check_max_norm(max_norm):
    """Return None or ``float(max_norm)`` for a finite number ``> 0``.

    Raises
    ------
    InputError
        For zero, a negative or a non-finite number.
    """
    if max_norm is None:
        return None
    max_norm = float(max_norm)
    if not np.isfinite(max_norm) or max_norm <= 0:
        raise InputError("max_norm must be a finite number > 0 or None, got "
                         "%r" % max_norm)
    return max_norm


def check_max_bad_windows(value):
    """Return ``int(value)`` for an integer ``>= 1``.

    Raises
    ------
    InputError
        For a bool, a non-integer or a value below 1.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or value < 1:
        raise InputError("max_bad_windows must be an int >= 1, got %r"
                         % (value,))
    return int(value)


def check_vocab_size(vocab_size):
    """Return None or ``int(vocab_size)`` for a positive integer.

    Raises
    ------
    InputError
        For anything else.
    """
    if vocab_size is None:
        return None
    if not isinstance(vocab_size, numbers.Integral) or vocab_size < 1:
        raise InputError("vocab_size must be a positive int or None, got %r"
                         % (vocab_size,))
    return int(vocab_size)


def _given_or_found(name, given, inputs, find):
    # ``given`` when it is one of ``inputs``; ``find(inputs)`` when it is None.
    if given is None:
        return find(inputs)
    if given not in inputs:
        raise InputError("%s must be one of inputs" % name)
    return given


def _last_integer(inputs):
    ints = [v for v in inputs if v.dtype.startswith(("int", "uint"))]
    return ints[-1] if ints else None


def _only_mask_named(inputs):
    named = [v for v in inputs if v.name and "mask" in v.name.lower()]
    return named[0] if len(named) == 1 else None


def find_targets(inputs, targets=None):
    """The target ids among ``inputs``: ``targets``, or the last integer one.

    Returns
    -------
    Theano variable or None

    Raises
    ------
    InputError
        When ``targets`` is given but is not one of ``inputs``.
    """
    return _given_or_found("targets", targets, inputs, _last_integer)


def find_mask(inputs, mask=None):
    """The mask among ``inputs``: ``mask``, or the one input named '*mask*'.

    Returns and raises as :func:`find_targets` does (for ``mask``).
    """
    return _given_or_found("mask", mask, inputs, _only_mask_named)


def call_counts(inputs, normalize, num_samples=None, num_tokens=None,
                targets=None, mask=None):
    """The number of samples and of target tokens of one call, symbolic.

    Parameters
    ----------
    inputs : list of Theano variables
    normalize : {'samples', 'tokens', 'sum'}
        ``'tokens'`` needs a token count.
    num_samples : Theano int scalar or int, optional
        Default ``inputs[0].shape[0]``.
    num_tokens : Theano scalar or int, optional
        Default ``round(mask.sum())`` with a mask, else ``targets.size``,
        else 0 (refused with ``normalize='tokens'``). A float count is
        rounded.
    targets, mask : Theano variables, optional
        As found by :func:`find_targets` and :func:`find_mask`.

    Returns
    -------
    num_samples, num_tokens : int64 Theano scalars

    Raises
    ------
    InputError
        For a scalar ``inputs[0]`` without ``num_samples``, no token count
        with ``normalize='tokens'``, or counts that are not scalars.
    """
    if num_samples is None:
        if inputs[0].ndim == 0:
            raise InputError("inputs[0] is a scalar, so the number of "
                             "samples per call cannot be read from its "
                             "first axis; pass num_samples=1 (or a "
                             "symbolic count)")
        num_samples = inputs[0].shape[0]
    if num_tokens is None:
        if mask is not None:
            num_tokens = T.round(mask.sum())
        elif targets is not None:
            num_tokens = targets.size
        elif normalize == "tokens":
            raise InputError("normalize='tokens' needs the number of target "
                             "tokens of a call: pass num_tokens=(e.g. "
                             "model.num_tokens()), targets= or mask=")
        else:
            num_tokens = 0
    num_samples = T.cast(T.as_tensor_variable(num_samples), "int64")
    num_tokens = T.as_tensor_variable(num_tokens)
    if num_tokens.dtype.startswith("float"):
        num_tokens = T.round(num_tokens)
    num_tokens = T.cast(num_tokens, "int64")
    if num_samples.ndim != 0 or num_tokens.ndim != 0:
        raise InputError("num_samples and num_tokens must be scalars")
    return num_samples, num_tokens


def resolve_inputs(inputs, normalize, num_samples=None, num_tokens=None,
                   targets=None, mask=None):
    """Find targets and mask among ``inputs``, then the counts of a call.

    Parameters
    ----------
    As :func:`call_counts`; ``targets`` and ``mask`` default to what
    :func:`find_targets` and :func:`find_mask` find.

    Returns
    -------
    ResolvedInputs

    Raises
    ------
    InputError
        See :func:`find_targets`, :func:`find_mask`, :func:`call_counts`.

    Examples
    --------
    >>> r = resolve_inputs([X, y, m], "tokens")       # doctest: +SKIP
    >>> r.mask is m, r.targets is y                   # doctest: +SKIP
    (True, True)
    """
    targets = find_targets(inputs, targets)
    mask = find_mask(inputs, mask)
    num_samples, num_tokens = call_counts(inputs, normalize, num_samples,
                                          num_tokens, targets, mask)
    return ResolvedInputs(targets, mask, num_samples, num_tokens)
