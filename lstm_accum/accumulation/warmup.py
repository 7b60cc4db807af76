"""A linear learning-rate warm-up for any Lasagne update rule, on the device.

Adam, Adagrad and RMSprop divide by a running scale of the gradient, so
their first steps move every weight by about the learning rate whatever the
gradient's size: a rate that trains well later overshoots at the start
(the training loss rises above its initial ``ln V``). :func:`warmup`
scales the rate by ``min(1, t / updates)`` at the ``t``-th update: the
``updates``-th update and all later ones use the full rate. The counter
``t`` is a shared variable among the rule's own state, so it is saved and
restored with the accumulator's state (a resumed run warms up exactly as
the uninterrupted one), and a window the accumulator refuses (non-finite)
leaves it unchanged, as it leaves the rule's other state.
"""
import functools

import numpy as np

from ..backend import T, theano
from ..checks import check_int

__all__ = ["warmup"]


def warmup(rule, updates):
    """``rule`` with its learning rate ramped up linearly over ``updates``.

    Parameters
    ----------
    rule : callable
        A Lasagne update rule taking ``learning_rate``
        (``lasagne.updates.adam``...).
    updates : int
        Updates to reach the full rate (>= 0; 0 or 1: no warm-up, the rule
        itself).

    Returns
    -------
    callable
        An update rule with ``rule``'s signature: ``warmed(grads, params,
        learning_rate, **kwargs)``.

    Raises
    ------
    InputError
        For ``updates`` that is not an integer >= 0.

    Examples
    --------
    >>> from lstm_accum.backend import lasagne
    >>> rule = warmup(lasagne.updates.adam, 100)
    >>> rule.__name__
    'adam'
    """
    if check_int("updates", updates, 0) <= 1:
        return rule

    @functools.wraps(rule)
    def warmed(loss_or_grads, params, learning_rate, **kwargs):
        dtype = theano.config.floatX
        t = theano.shared(np.asarray(0, dtype=dtype), name="warmup_t")
        t_new = t + np.asarray(1, dtype=dtype)
        scale = T.minimum(np.asarray(1, dtype=dtype),
                          t_new / np.asarray(updates, dtype=dtype))
        rate = T.cast(learning_rate * scale, dtype)
        result = rule(loss_or_grads, params, learning_rate=rate, **kwargs)
        result[t] = t_new
        return result
    return warmed
