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

Imports only :mod:`lstm_accum.backend` and :mod:`.base`.
"""
import numpy as np

from ..backend import EmptyProps, theano, T
from .base import FLOAT_DTYPES, INDEX_DTYPES, CpuCOp, c_types

__all__ = ["RowSums", "row_sums"]

_VERSION = 1
_NO_PROPS = EmptyProps()     # see softmax_nll._NO_PROPS


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

    def c_code(self, node, name, inputs, outputs, sub):
        rows, ids, num_rows = inputs
        words, sums = outputs
        ctype, typenum, itype = c_types(node.inputs[0], node.inputs[1])
        fail = sub["fail"]
        return """
        {
        PyArrayObject *c[2] = {NULL, NULL};
        PyArrayObject *in[2] = {%(rows)s, %(ids)s};
        npy_int32 *slot_of = NULL;
        npy_intp *slot = NULL;
        npy_int64 *first = NULL;
        int ok = 0;
        npy_intp n, D, V, G = 0, bad = -1;
        if (lstm_accum_contiguous(2, in, c))
            goto done_%(name)s;
        n = PyArray_DIMS(c[0])[0];
        D = PyArray_DIMS(c[0])[1];
        V = (npy_intp)((npy_int64*)PyArray_DATA(%(num_rows)s))[0];
        if (PyArray_DIMS(c[1])[0] != n) {
            PyErr_Format(PyExc_ValueError, "RowSums: %%ld rows but %%ld ids",
                         (long)n, (long)PyArray_DIMS(c[1])[0]);
            goto done_%(name)s;
        }
        slot_of = (npy_int32*)malloc(sizeof(npy_int32) * (V > 0 ? V : 1));
        slot = (npy_intp*)malloc(sizeof(npy_intp) * (n > 0 ? n : 1));
        first = (npy_int64*)malloc(sizeof(npy_int64) * (n > 0 ? n : 1));
        if (!slot_of || !slot || !first) {
            PyErr_NoMemory();
            goto done_%(name)s;
        }
        G = lstm_accum_row_slots<%(itype)s>(
            n, V, (const %(itype)s*)PyArray_DATA(c[1]), slot_of, slot,
            first, &bad);
        if (bad >= 0) {
            PyErr_Format(PyExc_IndexError,
                "RowSums: index %%lld (position %%ld) is out of bounds for "
                "%%ld rows",
                (long long)((const %(itype)s*)PyArray_DATA(c[1]))[bad],
                (long)bad, (long)V);
            goto done_%(name)s;
        }
        {
            npy_intp wdims[1] = {G};
            npy_intp sdims[2] = {G, D};
            if (lstm_accum_prepare_output(&%(words)s, 1, wdims, NPY_INT64)
                || lstm_accum_prepare_output(&%(sums)s, 2, sdims,
                                             %(typenum)s))
                goto done_%(name)s;
        }
        if (G)
            memcpy(PyArray_DATA(%(words)s), first, sizeof(npy_int64) * G);
        lstm_accum_row_sums<%(ctype)s>(
            n, D, G, (const %(ctype)s*)PyArray_DATA(c[0]), slot,
            (%(ctype)s*)PyArray_DATA(%(sums)s));
        ok = 1;
        done_%(name)s:
        free(slot_of); free(slot); free(first);
        lstm_accum_release(2, c);
        if (!ok) { %(fail)s }
        }
        """ % locals()


RowSums.c_loops = r"""
/* slot[k]: the output row of ids[k] (numbered by first occurrence);
   first[g]: the wrapped index of output row g; returns G, or sets *bad to
   the first position out of [-V, V). slot_of: V ints of scratch. */
template <typename I>
static npy_intp lstm_accum_row_slots(npy_intp n, npy_intp V, const I* ids,
                                     npy_int32* slot_of, npy_intp* slot,
                                     npy_int64* first, npy_intp* bad)
{
    npy_intp G = 0;
    for (npy_intp v = 0; v < V; ++v)
        slot_of[v] = -1;
    for (npy_intp k = 0; k < n; ++k) {
        npy_intp w = (npy_intp)ids[k];
        if (w < -V || w >= V) {
            *bad = k;
            return 0;
        }
        if (w < 0)
            w += V;
        if (slot_of[w] < 0) {
            slot_of[w] = (npy_int32)G;
            first[G++] = (npy_int64)w;
        }
        slot[k] = slot_of[w];
    }
    return G;
}

/* sums[g] = 0 + rows[k1] + rows[k2] + ... in the order of k. */
template <typename T>
__attribute__((noinline)) static void lstm_accum_row_sums(
    npy_intp n, npy_intp D, npy_intp G, const T* rows, const npy_intp* slot,
    T* sums)
{
    memset(sums, 0, sizeof(T) * G * D);
    for (npy_intp k = 0; k < n; ++k) {
        T* __restrict__ s = sums + slot[k] * D;
        const T* __restrict__ r = rows + k * D;
        for (npy_intp j = 0; j < D; ++j)
            s[j] += r[j];
    }
}
"""
