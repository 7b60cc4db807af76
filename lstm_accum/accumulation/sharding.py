"""The sharding rule: which rank accumulates which item of a window.

Item ``i`` (a sentence, or a minibatch: its position in the epoch's plan or
in a window) belongs to rank ``i % size``. Every item goes to exactly one
rank, the shares differ by at most one item, and the split depends on
nothing but ``(i, size)``. Strided (rather than contiguous) shares also
spread sentences of similar length, when a plan sorts them, evenly over
the ranks. :func:`shard_owner` is the rule; :func:`shard_indices` and
:meth:`~lstm_accum.accumulation.distributed.Distributed.shard` apply it.
"""
import numpy as np

from ..checks import is_int
from ..exceptions import InputError

__all__ = ["shard_owner", "shard_indices"]


def _check(name, value):
    if not is_int(value):
        raise InputError("%s must be an integer, got %r" % (name, value))


def shard_owner(index, size):
    """The rank that accumulates item ``index``: ``index % size``.

    Parameters
    ----------
    index : int
        The item's position, ``>= 0`` (e.g. the minibatch's number in the
        epoch's plan).
    size : int
        Number of ranks, ``>= 1``.

    Returns
    -------
    int

    Raises
    ------
    InputError
        For a negative ``index``, ``size < 1`` or non-integers.

    Examples
    --------
    >>> shard_owner(7, 3)
    1
    """
    _check("index", index)
    _check("size", size)
    if index < 0:
        raise InputError("index must be >= 0, got %d" % index)
    if size < 1:
        raise InputError("size must be >= 1, got %d" % size)
    return int(index) % int(size)


def shard_indices(n, rank, size):
    """The items of ``range(n)`` that rank ``rank`` of ``size`` processes.

    Those ``i`` with ``shard_owner(i, size) == rank``: ``rank, rank + size,
    rank + 2*size, ...``.

    Parameters
    ----------
    n : int
        Number of items (sentences, or minibatches of a window).
    rank : int
        This process's rank, ``0 <= rank < size``.
    size : int
        Number of ranks, ``>= 1``.

    Returns
    -------
    numpy.ndarray of int64

    Raises
    ------
    InputError
        For a negative ``n``, ``size < 1`` or a rank outside ``[0, size)``.

    Examples
    --------
    >>> shard_indices(7, 1, 3).tolist()
    [1, 4]
    """
    for name, value in (("n", n), ("rank", rank), ("size", size)):
        _check(name, value)
    if n < 0:
        raise InputError("n must be >= 0, got %d" % n)
    if size < 1:
        raise InputError("size must be >= 1, got %d" % size)
    if not 0 <= rank < size:
        raise InputError("rank must be in [0, %d) for size %d, got %d"
                         % (size, size, rank))
    # The items i with i % size == rank (shard_owner), without a loop.
    return np.arange(rank, n, size, dtype=np.int64)
