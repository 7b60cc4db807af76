"""The accumulator's saved state: which keys, in which format, and checks.

:class:`StateCodec` turns an accumulator's shared variables into a flat dict
of numpy arrays, safe for ``numpy.savez``, and back. The keys, in order:

``param/<label>``
    the parameters;
``<name>/<label>``, ``<name>/samples|tokens|skipped|loss``
    the open window's accumulators and counters;
``optimizer/<label or 'global'>/<j>``
    the update rule's state;
``hyper/learning_rate``
    the current learning rate;
``<name>/bad_windows``
    the count of consecutive non-finite windows (int64);
``hyper/normalize``, ``/update``, ``/max_norm``, ``/update_kwargs/*``
    fixed settings, which a state must match to be loaded.

Checkpoints of every earlier version use exactly these keys.
"""
import collections
import numbers

import numpy as np

from ..exceptions import IncompatibleStateError
from .window import param_labels

__all__ = ["StateCodec", "hyper_parameters", "state_variables"]


def hyper_parameters(normalize, update, max_norm, update_kwargs):
    """The fixed settings saved with a state, as numpy arrays.

    Parameters
    ----------
    normalize : str
    update : callable
        Saved by its ``__name__`` (its ``repr`` without one).
    max_norm : float or None
        None is saved as NaN.
    update_kwargs : dict
        Only its numbers and arrays are saved.

    Returns
    -------
    dict of str -> numpy.ndarray
    """
    hyper = {
        "hyper/normalize": np.array(normalize),
        "hyper/update": np.array(getattr(update, "__name__", repr(update))),
        "hyper/max_norm": np.array(np.nan if max_norm is None else max_norm),
    }
    for k, v in sorted(update_kwargs.items()):
        if isinstance(v, (numbers.Number, np.ndarray, np.generic)):
            hyper["hyper/update_kwargs/" + k] = np.asarray(v)
    return hyper


def state_variables(params, window, optimizer_state, learning_rate,
                    state_names=None):
    """The (key, shared variable) pairs of an accumulator's state, in order.

    Parameters
    ----------
    params : list of shared variables
        Saved as ``param/<label>`` (see
        :func:`~lstm_accum.accumulation.window.param_labels`).
    window : Window
        Accumulators and counters, saved under their names.
    optimizer_state : list of shared variables
        Saved under ``state_names``, default their names (``optimizer/...``,
        given by :func:`~lstm_accum.accumulation.graphs.apply_updates`).
    learning_rate : shared scalar
        Saved as ``hyper/learning_rate``.
    state_names : list of str, optional

    Returns
    -------
    list of (str, shared variable)
    """
    pairs = [("param/" + l, p) for l, p in zip(param_labels(params), params)]
    pairs += [(v.name, v) for v in window.variables]
    if state_names is None:
        state_names = [v.name for v in optimizer_state]
    pairs += list(zip(state_names, optimizer_state))
    pairs.append(("hyper/learning_rate", learning_rate))
    return pairs


def _same_setting(got, value):
    return got.shape == value.shape and (
        np.array_equal(got, value) or
        (value.dtype.kind == "f" and np.isnan(value).all() and
         got.dtype.kind == "f" and np.isnan(got).all()))


class StateCodec(object):
    """Encode and check the state of one accumulator's variables.

    Parameters
    ----------
    variables : list of (str, shared variable)
        Every saved variable with its key, in the order of the state.
    bad_windows_key : str
        ``'<name>/bad_windows'``.
    hyper : dict of str -> numpy.ndarray
        From :func:`hyper_parameters`.

    Examples
    --------
    >>> codec = StateCodec(pairs, "accum/bad_windows", hyper)  # doctest: +SKIP
    >>> bad = codec.restore(codec.encode(bad_windows=0))       # doctest: +SKIP
    """

    def __init__(self, variables, bad_windows_key, hyper):
        self.variables = list(variables)
        self.bad_windows_key = bad_windows_key
        self.hyper = hyper

    @property
    def keys(self):
        """Every key of the state, in order."""
        return [k for k, _ in self.variables] + [self.bad_windows_key] + \
            list(self.hyper)

    def encode(self, bad_windows):
        """The state as copies of the variables' values, with the int
        ``bad_windows`` (the count of consecutive non-finite windows).

        Returns
        -------
        OrderedDict of str -> numpy.ndarray
        """
        out = collections.OrderedDict()
        for key, var in self.variables:
            out[key] = np.array(var.get_value(borrow=False))
        out[self.bad_windows_key] = np.array(bad_windows, dtype=np.int64)
        out.update(self.hyper)
        return out

    def decode(self, state):
        """Check ``state`` (a mapping of str -> array with exactly the keys
        of :attr:`keys`) and convert it, changing nothing.

        Returns
        -------
        values : list of (shared variable, numpy.ndarray)
            In the variables' dtypes.
        bad_windows : int

        Raises
        ------
        IncompatibleStateError
            Naming the first missing, unexpected or mismatching key (shape,
            dtype kind, fixed setting such as ``normalize``, or a learning
            rate that is not a finite number >= 0).
        """
        expected = self.keys
        missing = [k for k in expected if k not in state]
        if missing:
            raise IncompatibleStateError(
                "state is missing %r (and %d more keys); it was saved from "
                "another model or accumulator" % (missing[0],
                                                   len(missing) - 1))
        extra = [k for k in state if k not in expected]
        if extra:
            raise IncompatibleStateError(
                "state has an unexpected key %r; it was saved from another "
                "model or accumulator" % extra[0])
        for key, value in self.hyper.items():
            got = np.asarray(state[key])
            if not _same_setting(got, value):
                raise IncompatibleStateError(
                    "state key %r is %r, this accumulator has %r; build the "
                    "accumulator with the same settings" % (key, got, value))
        values = [(var, self._value(key, var, state[key]))
                  for key, var in self.variables]
        lr = float(np.asarray(state["hyper/learning_rate"]))
        if not np.isfinite(lr) or lr < 0:
            raise IncompatibleStateError(
                "state key 'hyper/learning_rate' is %r; expected a finite "
                "number >= 0" % lr)
        return values, int(np.asarray(state[self.bad_windows_key]))

    @staticmethod
    def _value(key, var, value):
        got = np.asarray(value)
        want = var.get_value(borrow=True)
        if got.shape != want.shape:
            raise IncompatibleStateError(
                "state key %r has shape %s, expected %s" %
                (key, got.shape, want.shape))
        if got.dtype.kind != want.dtype.kind and not (
                got.dtype.kind in "iu" and want.dtype.kind in "iu"):
            raise IncompatibleStateError(
                "state key %r has dtype %s, expected %s" %
                (key, got.dtype, want.dtype))
        return np.array(got, dtype=want.dtype)

    def restore(self, state):
        """Check ``state``, then set every variable from it.

        Returns
        -------
        int
            The saved count of consecutive bad windows.

        Raises
        ------
        IncompatibleStateError
            As :meth:`decode`; then nothing was changed.
        """
        values, bad_windows = self.decode(state)
        # All checks passed: only now change anything.
        for var, value in values:
            var.set_value(value)
        return bad_windows
