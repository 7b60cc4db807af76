"""The gradient of a row lookup, as the rows it touches (CPU).

The gradient of ``W[ids]`` (Theano's ``AdvancedSubtensor1``; the id-input
layers look up the gates' input weights so) is a dense matrix of ``W``'s
shape: zeros, with row ``d[k]`` added into row ``ids[k]`` for every ``k``
(``AdvancedIncSubtensor1``).  A minibatch touches a few hundred of the
``V`` rows, so the accumulate step spent its time on zeros: allocating
them, scattering into them, checking them and adding them to the
accumulator, four ``(V, H)`` matrices per call.

:class:`RowSums` gives the touched rows only: ``words`` (each distinct
index once, in the order of first occurrence; negative indices wrapped as
numpy and Theano do) and ``sums`` (row ``g`` is the sum of the rows ``d[k]``
with ``ids[k] == words[g]``, added in the order of ``k`` to zeros). That is
element for element the arithmetic of the dense gradient, so
``acc[words] += sums`` leaves the accumulator bit-identical to
``acc += dense``.  :func:`lstm_accum.ops.accumulate.accumulate_spec` puts
it in place of the dense gradient.

The C code is ``c_code/row_sums.c``.  Imports only
:mod:`lstm_accum.backend` and :mod:`.base`.
"""
import numpy as np

from ..backend import EmptyProps, theano, T
from .base import FLOAT_DTYPES, INDEX_DTYPES, CpuCOp

__all__ = ["RowSums", "row_sums"]

_VERSION = 1
# No properties, but not the false ``()``: Theano 1.0.5 would take the op
# as unversioned and compile it again in every process (see
# lstm_accum.backend.patches.EmptyProps, which patches Theano's own ops so).
_NO_PROPS = EmptyProps()


def row_sums(rows, ids, num_rows):
    """The rows a scatter-add of ``rows`` at ``ids`` touches, and their sums.

    Parameters
    ----------
    rows : Theano matrix ``(n, D)``, float32 or float64
    ids : Theano vector ``(n,)``, int32 or int64
        Row indices into a matrix of ``num_rows`` rows; ``-num_rows <= i <
        num_rows`` (negative ones count from the end).
    num_rows : Theano int scalar or int

    Returns
    -------
    words : Theano int64 vector ``(G,)``
        The distinct indices (wrapped into ``[0, num_rows)``), in the order
        of their first occurrence in ``ids``.
    sums : Theano matrix ``(G, D)``
        ``sums[g] = 0 + rows[k1] + rows[k2] + ...`` over the ``k`` (in
        increasing order) with ``ids[k] == words[g]``.

    Raises
    ------
    IndexError
        When run: an index outside ``[-num_rows, num_rows)``.

    Examples
    --------
    >>> words, sums = row_sums(d_rows, ids, W.shape[0])   # doctest: +SKIP
    >>> # W's gradient is zeros with sums[g] in row words[g]
    """
    return RowSums()(rows, ids, num_rows)


class RowSums(CpuCOp):
    """``(words, sums)`` of a scatter-add (see :func:`row_sums`)."""

    __props__ = _NO_PROPS
    c_version = _VERSION
    c_files = ("row_sums.c",)
    func_name = "APPLY_SPECIFIC(row_sums)"

    def make_node(self, rows, ids, num_rows):
        rows = T.as_tensor_variable(rows)
        ids = T.as_tensor_variable(ids)
        num_rows = T.cast(T.as_tensor_variable(num_rows), "int64")
        if rows.ndim != 2 or rows.dtype not in FLOAT_DTYPES:
            raise TypeError("RowSums: rows must be a float32 or float64 "
                            "matrix, got %s" % rows.type)
        if ids.ndim != 1 or ids.dtype not in INDEX_DTYPES:
            raise TypeError("RowSums: ids must be an int32 or int64 vector, "
                            "got %s" % ids.type)
        if num_rows.ndim != 0:
            raise TypeError("RowSums: num_rows must be a scalar")
        return theano.Apply(self, [rows, ids, num_rows],
                            [T.vector(dtype="int64"),
                             T.matrix(dtype=rows.dtype)])

    def perform(self, node, inputs, outputs):
        rows, ids, num_rows = inputs
        num_rows = int(num_rows)
        if rows.shape[0] != ids.shape[0]:
            raise ValueError("RowSums: %d rows but %d ids" % (
                rows.shape[0], ids.shape[0]))
        bad = np.flatnonzero((ids < -num_rows) | (ids >= num_rows))
        if bad.size:
            raise IndexError("RowSums: index %d (position %d) is out of "
                             "bounds for %d rows" % (
                                 int(ids[bad[0]]), int(bad[0]), num_rows))
        wrapped = np.where(ids < 0, ids + num_rows, ids).astype("int64")
        words, first, slot = np.unique(wrapped, return_index=True,
                                       return_inverse=True)
        order = np.argsort(first, kind="stable")   # first occurrence first
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        sums = np.zeros((words.size, rows.shape[1]), rows.dtype)
        np.add.at(sums, rank[slot], rows)   # unbuffered, in the order of k
        outputs[0][0] = words[order]
        outputs[1][0] = sums

    def grad(self, inputs, output_grads):
        return [theano.gradient.grad_not_implemented(self, k, x)
                for k, x in enumerate(inputs)]
