"""Checks of the values a user passes in, with errors that say what to do.

One copy of each check that several parts make (a choice among names, an
integer in range); each raises :class:`~lstm_accum.exceptions.InputError`
naming the argument, the value given and what is expected. Imports nothing
of the package but :mod:`lstm_accum.exceptions`.
"""
import numbers

import numpy as np

from .exceptions import InputError

__all__ = ["check_choice", "check_int", "is_int", "is_number", "check_arrays"]


def is_int(value):
    """True for a Python or numpy integer that is not a bool."""
    return isinstance(value, (numbers.Integral, np.integer)) and \
        not isinstance(value, (bool, np.bool_))


def is_number(value):
    """True for a real Python or numpy number that is not a bool."""
    return isinstance(value, (numbers.Real, np.integer, np.floating)) and \
        not isinstance(value, (bool, np.bool_))


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``.

    Raises
    ------
    InputError
        ``"<name> must be one of 'a', 'b', got 'c'"``.
    """
    if value not in choices:
        raise InputError("%s must be one of %s, got %r"
                         % (name, ", ".join(repr(c) for c in choices), value))
    return value


def check_int(name, value, minimum):
    """Return ``int(value)`` for an integer ``>= minimum``.

    Raises
    ------
    InputError
        ``"<name> must be an integer >= <minimum>, got <value>"``.
    """
    if not is_int(value) or value < minimum:
        raise InputError("%s must be an integer >= %d, got %r"
                         % (name, minimum, value))
    return int(value)


def _describe_input(var, index):
    return "input %d (%r)" % (index, var.name) if var.name else \
        "input %d" % index


def check_arrays(variables, arrays, vocab_size=None, mask=None,
                 targets=None, what="accumulate()"):
    """Check host arrays against the Theano inputs they will feed.

    The one host-side check of a call's arrays (the accumulator's and the
    language model's): count, rank, broadcastable axes, dtype kind, integer
    ids in ``[0, vocab_size)``, and a mask shaped like the targets. Arrays
    of another float or integer dtype are cast to the variable's.

    Parameters
    ----------
    variables : list of theano variables
        The compiled function's inputs, in order.
    arrays : sequence of array_like
        One per variable.
    vocab_size : int, optional
        Integer inputs must lie in ``[0, vocab_size)``; without it only
        negative ids are refused.
    mask, targets : theano variables, optional
        Among ``variables``: their arrays must have one shape.
    what : str
        Who is checking, for the message.

    Returns
    -------
    list of numpy.ndarray
        The arrays, in the variables' dtypes.

    Raises
    ------
    InputError
        Naming the input, what it was and what was expected.
    """
    if len(arrays) != len(variables):
        raise InputError(
            "%s got %d arrays, expected %d, in the order of inputs: %s"
            % (what, len(arrays), len(variables), ", ".join(
                v.name or "input %d" % i for i, v in enumerate(variables))))
    values = []
    shapes = {}
    for i, (var, a) in enumerate(zip(variables, arrays)):
        name = _describe_input(var, i)
        a = np.asarray(a)
        if a.ndim != var.ndim:
            raise InputError(
                "%s: got a %d-D array of shape %s, expected a %d-D array%s"
                "; reshape it (e.g. add the batch axis with x[None])" %
                (name, a.ndim, a.shape, var.ndim,
                 " (one-hot (B, T, V))" if var.ndim == 3 else ""))
        for axis, b in enumerate(var.broadcastable):
            if b and a.shape[axis] != 1:
                raise InputError("%s: axis %d must have length 1, got "
                                 "shape %s" % (name, axis, a.shape))
        if var.dtype.startswith(("int", "uint")):
            if a.dtype.kind not in "iu":
                raise InputError(
                    "%s: got %s values, expected integer ids (%s); "
                    "convert with .astype('%s')" %
                    (name, a.dtype, var.dtype, var.dtype))
            if a.size:
                lo, hi = a.min(), a.max()
                if lo < 0 or (vocab_size is not None and hi >= vocab_size):
                    raise InputError(
                        "%s: ids must lie in [0, %s), got min %d max %d;"
                        " encode the text with the model's vocabulary" %
                        (name, vocab_size if vocab_size is not None
                         else "vocab size", lo, hi))
                if np.iinfo(var.dtype).max < hi:
                    raise InputError("%s: id %d does not fit %s" %
                                     (name, hi, var.dtype))
        elif var.dtype.startswith("float"):
            if a.dtype.kind not in "fiub":
                raise InputError("%s: got %s values, expected numbers "
                                 "(%s)" % (name, a.dtype, var.dtype))
        if a.dtype != var.dtype:
            a = a.astype(var.dtype)
        shapes[var] = a.shape
        values.append(a)
    if mask is not None and targets is not None and \
            shapes[mask] != shapes[targets]:
        raise InputError(
            "mask: shape %s differs from the targets' shape %s; pass one "
            "mask entry per target (1 = real token, 0 = padding)" %
            (shapes[mask], shapes[targets]))
    return values
