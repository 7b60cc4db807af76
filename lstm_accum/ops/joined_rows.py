"""The rows of several matrices at the same indices, side by side (CPU).

The id-input layers look up each gate's input weights on its own and join
the results (``concatenate([W[ids] for W in gates], axis=1)``, see
:mod:`lstm_accum.models.layers`): Theano runs one ``AdvancedSubtensor1`` per
gate, each writing an ``(N, H)`` array, and a ``Join`` that copies them all
again into ``(N, 4H)``.  :class:`JoinedRows` writes the ``(N, 4H)`` result
directly, each row of each part copied once, the rows shared out to the
process's team of threads (:mod:`.team`) from 2^16 values up.  The same
numbers (copies).

It is not built by hand: the rewrite ``lstm_accum_joined_rows`` (this
module, in Theano's ``fast_run``) puts it in place of every ``Join`` along
the columns of row lookups of float matrices at one index vector, after
the gradients are built (the gradient of the lookups stays Theano's).

The C code is ``c_code/joined_rows.c``.
"""
import numpy as np

from ..backend import EmptyProps, theano, T
from .base import (FLOAT_DTYPES, INDEX_DTYPES, CpuCOp, NodeRewrite,
                   unavailable_reason)

__all__ = ["JoinedRows", "MAX_PARTS"]

_VERSION = 2
#: Most matrices one node joins (the C function's arguments).
MAX_PARTS = 8


class JoinedRows(CpuCOp):
    """``concatenate([W[ids] for W in parts], axis=1)`` in one pass.

    Inputs: ``ids`` (int32 or int64 vector; negative indices count from
    the end, as numpy's) and 1 to :data:`MAX_PARTS` matrices of one float
    dtype.  Output: ``(len(ids), sum of the parts' columns)``.  An index
    outside a part's rows raises ``IndexError``.  No gradient.
    """

    __props__ = EmptyProps()
    c_version = _VERSION
    c_files = ("team.c", "joined_rows.c")
    func_name = "APPLY_SPECIFIC(joined_rows)"

    def make_node(self, ids, *parts):
        ids = T.as_tensor_variable(ids)
        parts = [T.as_tensor_variable(p) for p in parts]
        if ids.ndim != 1 or ids.dtype not in INDEX_DTYPES:
            raise TypeError("JoinedRows: ids must be an int32 or int64 "
                            "vector, got %s" % ids.type)
        if not 1 <= len(parts) <= MAX_PARTS:
            raise TypeError("JoinedRows: 1 to %d matrices, got %d"
                            % (MAX_PARTS, len(parts)))
        dtypes = {p.dtype for p in parts}
        if any(p.ndim != 2 for p in parts) or len(dtypes) != 1 or \
                not dtypes <= set(FLOAT_DTYPES):
            raise TypeError("JoinedRows: the parts must be matrices of one "
                            "float dtype, got %s"
                            % ", ".join(str(p.type) for p in parts))
        out = T.matrix(dtype=parts[0].dtype)
        return theano.Apply(self, [ids] + parts, [out])

    def infer_shape(self, node, shapes):
        width = shapes[1][1]
        for s in shapes[2:]:
            width = width + s[1]
        return [(shapes[0][0], width)]

    def format_c_function_args(self, inp, out):
        parts = list(inp[1:]) + ["NULL"] * (MAX_PARTS - len(inp) + 1)
        return ", ".join([inp[0], str(len(inp) - 1)] + parts +
                         ["&%s" % o for o in out])

    def perform(self, node, inputs, outputs):
        ids, parts = inputs[0], inputs[1:]
        for k, W in enumerate(parts):
            bad = np.flatnonzero((ids < -len(W)) | (ids >= len(W)))
            if bad.size:
                raise IndexError(
                    "JoinedRows: index %d (position %d) is out of bounds "
                    "for part %d of %d rows" % (int(ids[bad[0]]),
                                                int(bad[0]), k, len(W)))
        outputs[0][0] = np.concatenate([W[ids] for W in parts], axis=1)

    def grad(self, inputs, output_grads):
        return [theano.gradient.grad_not_implemented(self, k, x)
                for k, x in enumerate(inputs)]


def _joined(node):
    """``[JoinedRows(ids, W_0, ..)]`` for a column ``Join`` of row lookups
    ``W_k[ids]`` at one ``ids``, else None."""
    if not isinstance(node.op, T.Join) or unavailable_reason():
        return None
    axis, pieces = node.inputs[0], node.inputs[1:]
    try:
        if int(T.get_scalar_constant_value(axis)) not in (1, -1):
            return None
    except T.NotScalarConstantError:
        return None
    if not 1 <= len(pieces) <= MAX_PARTS or node.outputs[0].ndim != 2:
        return None
    owners = [p.owner for p in pieces]
    if not all(o is not None and
               type(o.op) is T.subtensor.AdvancedSubtensor1 for o in owners):
        return None
    ids = owners[0].inputs[1]
    parts = [o.inputs[0] for o in owners]
    if any(o.inputs[1] is not ids for o in owners) or \
            ids.dtype not in INDEX_DTYPES or \
            any(W.ndim != 2 or W.dtype != node.outputs[0].dtype or
                W.dtype not in FLOAT_DTYPES for W in parts):
        return None
    return [JoinedRows()(ids, *parts)]


#: The rewrite's name in Theano's optdb (in ``fast_run``).
JOINED_ROWS = "lstm_accum_joined_rows"
# With the other rewrites of our operations, before the team's (98).
theano.compile.optdb.register(JOINED_ROWS, NodeRewrite(_joined, JOINED_ROWS),
                              97, "fast_run")
