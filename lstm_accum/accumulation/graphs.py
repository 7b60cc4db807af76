"""The accumulate and apply steps as functions over plain Theano objects.

In Lasagne's style: each returns an ``OrderedDict`` of updates (and the
outputs worth returning), and you compile them into your own
``theano.function`` -- the gradient and the update need not live in one
function::

    window = window_variables(params)
    acc = accumulate_updates(loss, params, window, X.shape[0], y.size)
    step = theano.function([X, y], acc.outputs, updates=acc.updates)
    app = apply_updates(params, window, "samples", lasagne.updates.adam)
    update = theano.function([], app.outputs, updates=app.updates)

:class:`~lstm_accum.accumulation.accumulator.GradientAccumulator` is these
two functions, compiled once, plus host-side checks and state.
"""
import collections
import inspect

import numpy as np

from ..backend import theano, T, lasagne
from ..ops import (AccumulateIfFinite, accumulate_spec, all_finite, isfinite,
                   include_simd_elemwise, include_team, on_cpu,
                   squared_norm, zeroed)
from .inputs import check_max_norm, check_normalize
from .window import param_labels

__all__ = ["AccumulateGraph", "ApplyGraph", "accumulate_updates",
           "averaged_gradients", "apply_updates", "name_optimizer_state",
           "takes_learning_rate", "compile_mode", "apply_mode"]

AccumulateGraph = collections.namedtuple("AccumulateGraph",
                                         ["updates", "outputs"])
AccumulateGraph.__doc__ = """The accumulate step: ``updates`` (an
``OrderedDict``: every accumulator and counter) and ``outputs``: the
call's summed loss (float64) and the samples and tokens added and the
samples skipped (int64 scalars)."""

ApplyGraph = collections.namedtuple("ApplyGraph",
                                    ["updates", "outputs", "optimizer_state"])
ApplyGraph.__doc__ = """The apply step: ``updates`` (an ``OrderedDict``:
parameters, the rule's state, then the window's zeros), ``outputs``
(``ok`` as int8, samples, tokens, the loss divided like the gradients,
the gradient norm before clipping, skipped) and ``optimizer_state``, the
shared variables the update rule created, named ``optimizer/...``."""


def accumulate_updates(loss, params, window, num_samples, num_tokens,
                       inplace_add=None):
    """Updates that add one call's gradient into ``window``, if finite.

    ``acc += grad(loss)`` for every parameter, and the call's samples,
    tokens and loss added to the counters -- or, when the loss or any
    gradient is NaN/Inf, nothing added and ``num_samples`` counted as
    skipped.

    Parameters
    ----------
    loss : Theano scalar
        The *summed* loss of one call.
    params : list of shared variables
    window : Window
        From :func:`~lstm_accum.accumulation.window.window_variables`.
    num_samples, num_tokens : Theano int scalars or ints
        The counts of one call (e.g. ``X.shape[0]`` and ``y.size``).
    inplace_add : bool, optional
        Add with :class:`~lstm_accum.ops.accumulate.AccumulateIfFinite`
        (numpy's in-place add; CPU only) rather than a
        ``switch(ok, acc + g, acc)`` graph. Default: on the CPU. Both give
        the same sums.

    Returns
    -------
    AccumulateGraph
        ``(updates, outputs)``.

    Examples
    --------
    >>> g = accumulate_updates(loss, params, window, X.shape[0], y.size)
    ... # doctest: +SKIP
    >>> f = theano.function([X, y], g.outputs, updates=g.updates)
    ... # doctest: +SKIP
    """
    accumulators = list(window.accumulators)
    if inplace_add is None:
        inplace_add = on_cpu()
    grads = theano.grad(loss, params)
    updates = collections.OrderedDict()
    if inplace_add:
        # One op checks and adds in place (numpy add on strided views of
        # the unsplit gradients); see AccumulateIfFinite.
        spec, sources = accumulate_spec(accumulators, grads)
        outs = AccumulateIfFinite(spec)(loss, *(accumulators + sources))
        ok = outs[0]
        for acc, new in zip(accumulators, outs[1:]):
            updates[acc] = new
    else:
        # A NaN or Inf element makes a reduction of that gradient
        # non-finite, so one pass per parameter detects it.
        ok = isfinite(loss) & all_finite(grads)
        for acc, g in zip(accumulators, grads):
            # switch, not acc + ok * g: NaN * 0 is NaN.
            updates[acc] = T.switch(ok, acc + T.cast(g, acc.dtype), acc)
    num_samples = T.cast(num_samples, "int64")
    num_tokens = T.cast(num_tokens, "int64")
    zero = T.constant(0, dtype="int64")
    added_samples = T.switch(ok, num_samples, zero)
    added_tokens = T.switch(ok, num_tokens, zero)
    skipped = T.switch(ok, zero, num_samples)
    loss64 = T.cast(loss, "float64")
    updates[window.samples] = window.samples + added_samples
    updates[window.tokens] = window.tokens + added_tokens
    updates[window.skipped] = window.skipped + skipped
    updates[window.loss] = T.switch(ok, window.loss + loss64, window.loss)
    return AccumulateGraph(updates, [loss64, added_samples, added_tokens,
                                     skipped])


def _denominator(window, normalize):
    if normalize == "samples":
        return window.samples
    if normalize == "tokens":
        return window.tokens
    return None


def averaged_gradients(window, normalize, max_norm=None):
    """The window's averaged (and optionally clipped) gradients, symbolic.

    ``g = acc / denominator``, then ``g * min(1, max_norm / |g|)``, in the
    accumulators' dtypes (the clipping formula is
    ``lasagne.updates.total_norm_constraint``'s). The result is a list of
    gradient expressions, one per parameter, so it goes to any
    ``lasagne.updates`` rule in place of a loss.

    Parameters
    ----------
    window : Window
        From :func:`~lstm_accum.accumulation.window.window_variables`,
        filled by the updates of :func:`accumulate_updates`.
    normalize : {'samples', 'tokens', 'sum'}
        The denominator: the window's samples, its tokens, or none.
    max_norm : float, optional
        Rescale the averaged gradient to this total L2 norm at most.

    Returns
    -------
    list of Theano tensors
        One per accumulator, in the order of the window's parameters.

    Raises
    ------
    InputError
        For an unknown ``normalize`` or a bad ``max_norm``.

    Notes
    -----
    These are the bare gradients: an empty window gives zeros, a
    non-finite one NaN/Inf, and the update rule applies them. :func:`apply_updates`
    adds the guard (the update only when the window is good) and the reset
    of the window; with these gradients, zero the window yourself.

    Examples
    --------
    >>> grads = averaged_gradients(window, "samples")     # doctest: +SKIP
    >>> updates = lasagne.updates.adam(grads, params)     # doctest: +SKIP
    """
    return _averaged(window, normalize, max_norm)[0]


def _averaged(window, normalize, max_norm):
    """``(grads, ok, norm)``: the averaged gradients, whether the window is
    good (it has samples, and tokens for ``'tokens'``, and a finite norm),
    and the total L2 norm before clipping."""
    count = _denominator(window, check_normalize(normalize))
    max_norm = check_max_norm(max_norm)
    grads = []
    ok = window.samples > 0
    divisor = None
    if count is not None:
        ok = ok & (count > 0)
        # maximum(count, 1): never divide by zero, even in the branch that
        # ok discards.
        divisor = T.maximum(count, 1)
    for acc in window.accumulators:
        g = acc if divisor is None else acc / T.cast(divisor, acc.dtype)
        grads.append(T.cast(g, acc.dtype))
    # One reduction per parameter gives both the norm and the check: a
    # NaN/Inf element makes the squared norm non-finite. (It also overflows
    # for |g| > ~1e19 in float32: such a window is refused.)  It reads the
    # accumulators and divides as the gradients do, so the gradients are
    # only read by the update rule: one loop per parameter (SimdElemwise).
    norm_sq = squared_norm(window.accumulators, divisor)
    ok = ok & isfinite(norm_sq)
    dtype = grads[0].dtype
    norm = T.cast(T.sqrt(norm_sq), dtype)
    if max_norm is not None:
        # Lasagne's formula, in the parameters' dtype (Lasagne's: floatX).
        target = T.clip(norm, 0, np.asarray(max_norm, dtype=dtype))
        mult = target / (np.asarray(1e-7, dtype=dtype) + norm)
        grads = [T.cast(g * mult, g.dtype) for g in grads]
    return grads, ok, norm


def apply_updates(params, window, normalize, update=lasagne.updates.adagrad,
                  learning_rate=None, update_kwargs=None, max_norm=None):
    """Updates that apply the window's averaged gradient, then empty it.

    The update is::

        g = sum_i grad(loss_i) / denominator     (see averaged_gradients)
        params, state = update(g, params, learning_rate, **update_kwargs)

    applied only when the window is good (``ok``): a non-finite or empty
    window leaves parameters and optimizer state exactly as they were.
    Accumulators and counters are zeroed either way.

    Parameters
    ----------
    params : list of shared variables
    window : Window
    normalize : {'samples', 'tokens', 'sum'}
    update : callable
        A Lasagne update rule, ``update(grads, params, **kwargs) ->
        OrderedDict`` (default ``lasagne.updates.adagrad``).
    learning_rate : float or shared scalar, optional
        Passed to ``update`` when it takes ``learning_rate`` and
        ``update_kwargs`` does not hold one; None: the rule's default.
    update_kwargs : dict, optional
    max_norm : float, optional

    Returns
    -------
    ApplyGraph
        ``(updates, outputs, optimizer_state)``; the state variables are
        renamed ``optimizer/<param label>/<j>`` (see
        :func:`name_optimizer_state`).

    Raises
    ------
    InputError
        For an unknown ``normalize`` or a bad ``max_norm``.

    Examples
    --------
    >>> g = apply_updates(params, window, "tokens", lasagne.updates.sgd,
    ...                   learning_rate=0.1)             # doctest: +SKIP
    >>> f = theano.function([], g.outputs, updates=g.updates)
    ... # doctest: +SKIP
    """
    grads, ok, norm = _averaged(window, normalize, max_norm)
    kwargs = dict(update_kwargs or {})
    if learning_rate is not None and takes_learning_rate(update) and \
            "learning_rate" not in kwargs:
        kwargs["learning_rate"] = learning_rate
    rule_updates = update(grads, params, **kwargs)

    updates = collections.OrderedDict()
    state = []
    for var, new in rule_updates.items():
        if new.dtype != var.dtype:
            new = T.cast(new, var.dtype)
        # A non-finite window leaves parameters and optimizer state
        # exactly as they were.
        updates[var] = T.switch(ok, new, var)
        if var not in params:
            state.append(var)
    name_optimizer_state(params, rule_updates, state)
    for var in window.variables:
        # an accumulator's zeros are written in its place (CPU)
        updates[var] = zeroed(var) if var in window.accumulators else \
            T.zeros_like(var)

    count = _denominator(window, normalize)
    if count is None:
        loss = window.loss
    else:
        loss = window.loss / T.cast(T.maximum(count, 1), "float64")
    outputs = [T.cast(ok, "int8"), window.samples, window.tokens, loss,
               norm, window.skipped]
    return ApplyGraph(updates, outputs, state)


def name_optimizer_state(params, rule_updates, state):
    """Give the update rule's shared variables deterministic names.

    A state variable used by exactly one parameter's update is named
    ``optimizer/<param label>/<j>``; one used by several (Adam's time
    step) ``optimizer/global/<j>``, in the order the rule created them.

    Parameters
    ----------
    params : list of shared variables
    rule_updates : OrderedDict
        What the update rule returned.
    state : list of shared variables
        The rule's own variables (updated, but not parameters).

    Returns
    -------
    list of str
        The new names, in the order of ``state``.
    """
    ancestors = {}
    for p in params:
        if p in rule_updates:
            ancestors[p] = set(theano.gof.graph.ancestors([rule_updates[p]]))
    per_owner = collections.Counter()
    label_of = dict(zip(params, param_labels(params)))
    names = []
    for var in state:
        owners = [p for p in params if p in ancestors and var in ancestors[p]]
        owner = label_of[owners[0]] if len(owners) == 1 else "global"
        key = "optimizer/%s/%d" % (owner, per_owner[owner])
        per_owner[owner] += 1
        names.append(key)
        var.name = key
    return names


def takes_learning_rate(update):
    """Whether the update rule ``update`` accepts a ``learning_rate``."""
    try:
        sig = inspect.signature(update)
    except (TypeError, ValueError):
        return True
    return any(p.name == "learning_rate" or p.kind == p.VAR_KEYWORD
               for p in sig.parameters.values())


def compile_mode(keep_buffers):
    """Theano's default mode, with the team's rewrite (the products and
    the loops on one pool of threads, :mod:`lstm_accum.ops.team`), keeping
    intermediate buffers if asked.

    With ``keep_buffers`` the linker keeps intermediate buffers between
    calls (``allow_gc=False``, for the accumulate function only): the large
    gradient temporaries then are not freed and allocated again (with fresh
    page faults) at every call. Any other mode (a user's DebugMode, a
    non-VM linker) is returned unchanged.
    """
    mode = include_team(theano.compile.mode.get_default_mode())
    linker = getattr(mode, "linker", None)
    if keep_buffers and type(mode) is theano.compile.mode.Mode and \
            isinstance(linker, theano.gof.vm.VM_Linker) and linker.allow_gc:
        return mode.clone(link_kwargs={"allow_gc": False})
    return mode


def apply_mode():
    """Theano's default mode, with the apply step's elementwise loops
    vectorised on the CPU (:mod:`lstm_accum.ops.simd_elemwise`: the same
    scalar code, bit-identical results); any other mode unchanged."""
    return include_simd_elemwise(theano.compile.mode.get_default_mode())
