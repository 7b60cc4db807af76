"""The open window on the device: one accumulator per parameter, four counters.

A window is what one update averages over. Its state is a :class:`Window`
of shared variables, named for a readable graph dump and for the saved
state: ``<name>/<param label>`` (the sums of the gradients),
``<name>/samples``, ``<name>/tokens``, ``<name>/skipped`` (int64) and
``<name>/loss`` (float64, the summed loss of the good samples).
"""
import collections

import numpy as np

from ..backend import theano

from ..exceptions import InputError

__all__ = ["Window", "window_variables", "param_labels", "reset_window",
           "check_window_ready"]


class Window(collections.namedtuple(
        "Window", ["accumulators", "samples", "tokens", "skipped", "loss"])):
    """The shared variables of one open window.

    ``accumulators`` is a list (one per parameter, same shape, dtype and
    broadcastable pattern); ``samples``, ``tokens``, ``skipped`` are int64
    scalars, ``loss`` a float64 scalar (a long window then does not lose
    precision: it is one number).
    """

    __slots__ = ()

    @property
    def counters(self):
        """``[samples, tokens, skipped, loss]``, in this fixed order."""
        return [self.samples, self.tokens, self.skipped, self.loss]

    @property
    def variables(self):
        """Every accumulator, then every counter."""
        return list(self.accumulators) + self.counters


def param_labels(params):
    """Unique, deterministic labels for parameters (their names if unique).

    Parameters
    ----------
    params : list of shared variables

    Returns
    -------
    list of str
        The parameter's name, or ``'<index>.<name>'`` (``'<index>.param'``
        without a name) when the name is missing or repeated.

    Examples
    --------
    >>> w = theano.shared(0.0, name="W")                 # doctest: +SKIP
    >>> param_labels([w, theano.shared(0.0, name="W")])  # doctest: +SKIP
    ['0.W', '1.W']
    """
    names = [p.name for p in params]
    counts = collections.Counter(names)
    labels = []
    for i, name in enumerate(names):
        if name is None or counts[name] > 1:
            labels.append("%d.%s" % (i, name or "param"))
        else:
            labels.append(name)
    return labels


def window_variables(params, name="accum"):
    """New, zeroed window variables for ``params``.

    Parameters
    ----------
    params : list of shared variables
        The parameters whose gradients will be summed.
    name : str
        Prefix of the variables' names (default ``'accum'``).

    Returns
    -------
    Window
        Accumulators named ``'<name>/<label>'`` (see :func:`param_labels`)
        and counters ``'<name>/samples|tokens|skipped|loss'``.

    Examples
    --------
    >>> window = window_variables(params)                # doctest: +SKIP
    >>> window.samples.name                              # doctest: +SKIP
    'accum/samples'
    """
    accumulators = [
        theano.shared(np.zeros(p.get_value(borrow=True).shape, dtype=p.dtype),
                      broadcastable=p.broadcastable,
                      name="%s/%s" % (name, label))
        for p, label in zip(params, param_labels(params))]
    return Window(accumulators,
                  theano.shared(np.int64(0), name=name + "/samples"),
                  theano.shared(np.int64(0), name=name + "/tokens"),
                  theano.shared(np.int64(0), name=name + "/skipped"),
                  theano.shared(np.float64(0), name=name + "/loss"))


def reset_window(window):
    """Zero every accumulator and counter of ``window``, in place.

    Parameters
    ----------
    window : Window
    """
    for var in window.variables:
        var.set_value(np.zeros_like(var.get_value(borrow=True)))


def check_window_ready(samples, skipped, tokens, normalize):
    """Refuse to apply a window that has nothing to average.

    Parameters
    ----------
    samples, skipped, tokens : int
        The window's counters.
    normalize : str

    Raises
    ------
    InputError
        When nothing was accumulated (no good and no skipped samples), or
        with ``normalize='tokens'`` when good samples hold no target token.
    """
    if samples == 0 and skipped == 0:
        raise InputError("apply() called with nothing accumulated (0 "
                         "samples since the last apply); call "
                         "accumulate(...) at least once before apply()")
    if normalize == "tokens" and samples > 0 and tokens == 0:
        raise InputError("apply(): the window has %d samples but 0 target"
                         " tokens, so the token mean is undefined; check "
                         "the mask or num_tokens, or use normalize='samples'"
                         % samples)
