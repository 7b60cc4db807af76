"""One pool of threads for the products and the loops (CPU, float32).

In training, NumPy's OpenBLAS runs the output layer's matrix products
(Theano's ``Dot22``) on threads of its own, and our fused LSTM runs its
steps on a team of ours (``c_code/team.c``).  After each product
OpenBLAS's threads spin, waiting for the next one, on the cores our team
needs; so below a large H the fused LSTM used one thread, and on two
threads most of a step ran on one core.

With the rewrite of this module, the team runs the products too:

* :class:`TeamDot` takes the place of every float32 ``Dot22``: from 2^23
  multiply-adds up (a minibatch's products, not a sentence's at small H)
  each thread of the team multiplies its share of the result's rows (or
  columns) with a BLAS ``sgemm`` on one thread (``c_code/team_blas.c``:
  MKL on Intel CPUs when the ``mkl`` package is installed, :mod:`.mkl`;
  NumPy's OpenBLAS otherwise), so in bucketed training OpenBLAS's own threads are
  never woken and sleep; smaller products run as NumPy's dot runs them;
* the fused LSTM's operations get ``team=True``: their steps are shared
  by the team from small batches up, and the recurrent weights' gradient
  is a product on the team;
* so do the softmax NLL's: the forward's rows and the backward's columns
  are shared by the team.

Every element of a product on the team is one ``sgemm`` sum over the
whole inner dimension.  Where that BLAS's sums do not depend on the share
of rows or columns (MKL in its strict mode, OpenBLAS's SkylakeX kernels),
the results do not depend on the number of threads and equal its
one-thread results bit for bit (``tests/test_team.py``); OpenBLAS's
Haswell and Zen kernels sum some elements in another order when a product
is cut in two, so there the products differ between thread counts by
float32 rounding.  Where MKL, or OpenBLAS on several threads, summed in
another order than OpenBLAS on one, they differ from NumPy's ``dot`` by
float32 rounding.

The rewrite needs NumPy's OpenBLAS with the 64-bit interface of NumPy's
wheels (``cblas_sgemm64_``) loaded, and AVX-512 (the team's kernel);
:func:`team_unavailable` says why not otherwise, and :func:`include_team`
then leaves the compile mode as it is.  ``include_team(mode)`` adds the
rewrite to a mode; the accumulate step, evaluation and scoring use it.
"""
import ctypes
import functools

import numpy as np

from ..backend import EmptyProps, theano, T
from ..backend.openblas import cpu_flags, loaded_openblas
from .base import CpuCOp, NodeRewrite, unavailable_reason
from .fused_lstm import FusedLSTM, FusedLSTMGrad
from .softmax_nll import (SoftmaxNLL, SoftmaxNLLAndGrad, SoftmaxNLLGrad,
                          SoftmaxNLLLoss)

__all__ = ["TeamDot", "include_team", "team_unavailable", "TEAM"]

_VERSION = 2
#: The rewrite's name in Theano's optdb (a tag of its own: not in
#: ``fast_run``, so only modes that include it run it).
TEAM = "lstm_accum_team"
#: The symbols team_blas.c looks up in a loaded OpenBLAS.
_SYMBOLS = ("cblas_sgemm64_", "openblas_set_num_threads64_",
            "openblas_get_num_threads64_")
#: What the team's kernel needs (panels.c).
_AVX512 = ("avx512f", "avx512dq", "avx512vl")


@functools.lru_cache(maxsize=None)
def _blas_with_team_symbols():
    """The first loaded OpenBLAS that exports :data:`_SYMBOLS`, or None."""
    for path in loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if all(hasattr(lib, name) for name in _SYMBOLS):
            return path
    return None


def team_unavailable():
    """Why the team cannot run the products here, or None when it can.

    Returns
    -------
    str or None
        E.g. ``'no AVX-512 (avx512dq)'``; None when :func:`include_team`
        adds the rewrite.
    """
    why = unavailable_reason()
    if why:
        return why
    missing = [f for f in _AVX512 if f not in cpu_flags()]
    if missing:
        return "no AVX-512 (%s)" % ", ".join(missing)
    if _blas_with_team_symbols() is None:
        return ("NumPy's OpenBLAS with the 64-bit interface (%s) is not "
                "loaded" % _SYMBOLS[0])
    return None


class TeamDot(CpuCOp):
    """``a . b`` of two float32 matrices on the team (see the module).

    The same numbers as its BLAS's ``sgemm`` (MKL or OpenBLAS) on one
    thread, whatever the number of threads, where that BLAS's sums do not
    depend on the share (MKL; OpenBLAS's SkylakeX kernels), and within
    float32 rounding of them elsewhere.  Without NumPy's OpenBLAS in the
    process, NumPy's ``dot`` (as Theano's ``Dot22``).
    """

    __props__ = EmptyProps()
    c_version = _VERSION
    c_files = ("team.c", "team_blas.c", "team_dot.c")
    func_name = "APPLY_SPECIFIC(team_dot)"

    def make_node(self, a, b):
        a, b = T.as_tensor_variable(a), T.as_tensor_variable(b)
        for v in (a, b):
            if v.ndim != 2 or v.dtype != "float32":
                raise TypeError("TeamDot takes float32 matrices, got %s"
                                % v.type)
        out = T.TensorType("float32", (a.broadcastable[0],
                                       b.broadcastable[1]))()
        return theano.Apply(self, [a, b], [out])

    def infer_shape(self, node, shapes):
        return [(shapes[0][0], shapes[1][1])]

    def perform(self, node, inputs, outputs):
        a, b = inputs
        outputs[0][0] = np.dot(a, b)

    def grad(self, inputs, output_grads):
        # Inserted after the gradients are built; as Dot22, should anyone
        # differentiate a graph that holds one.
        a, b = inputs
        g, = output_grads
        return [T.dot(g, b.T), T.dot(a.T, g)]


def _team_version(node):
    """The outputs of ``node`` with the team running its products, or
    None."""
    op = node.op
    if isinstance(op, theano.tensor.blas.Dot22) and \
            node.outputs[0].dtype == "float32":
        return TeamDot()(*node.inputs).owner.outputs
    if type(op) is FusedLSTM and not op.team and \
            node.outputs[0].dtype == "float32":
        return FusedLSTM(op.grad_clipping, team=True)(
            *node.inputs, return_list=True)
    if type(op) is FusedLSTMGrad and not op.team and \
            node.outputs[0].dtype == "float32":
        return FusedLSTMGrad(op.grad_clipping, aux=op.aux, team=True)(
            *node.inputs, return_list=True)
    if type(op) in (SoftmaxNLL, SoftmaxNLLLoss, SoftmaxNLLGrad,
                    SoftmaxNLLAndGrad) and \
            not op.team:
        return type(op)(team=True)(*node.inputs, return_list=True)
    return None


# After Theano's BLAS passes and in-place passes (75), before our SIMD
# loops (99) and the last merge (100).
theano.compile.optdb.register(TEAM, NodeRewrite(_team_version, TEAM), 98)

#: The process's team of threads, shared by every compiled module of our
#: operations: a capsule that the first one to need the team puts here
#: (``c_code/team.c``).
_team_state = None


def include_team(mode):
    """``mode`` with the team's rewrite, when it is a plain Theano ``Mode``
    and :func:`team_unavailable` is None; any other mode unchanged."""
    if type(mode) is not theano.compile.mode.Mode or team_unavailable():
        return mode
    return mode.including(TEAM)
