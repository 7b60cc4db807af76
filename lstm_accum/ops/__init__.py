"""Our C operations: Theano ops with hand-written C for the hot paths.

This part owns the shared base of our C ops (:mod:`.base`: the loading of
their C files, compile flags, BLAS headers, the check of where they can
run), each operation in its own module with its gradient and a
Lasagne-style function that builds it (:mod:`.fused_lstm`,
:mod:`.softmax_nll`, :mod:`.row_sums`, :mod:`.simd_elemwise`, ...), and
their C and C++ source in ``c_code/`` (``.c`` files with Theano's
``#section`` markers); it re-exports those functions and op classes.  It
may import only the Theano environment (:mod:`lstm_accum.backend`, for
``theano``, ``T`` and the configuration it applied) and the base modules
(``exceptions``, ``checks``), never data, models or anything above them.
"""
from .base import CpuCOp, unavailable_reason
from .fused_lstm import fused_lstm, fused_supported, FusedLSTM, FusedLSTMGrad
from .softmax_nll import (softmax_nll, SoftmaxNLL, SoftmaxNLLAndGrad,
                          SoftmaxNLLGrad, SoftmaxNLLLoss)
from .row_sums import row_sums, RowSums
from .joined_rows import JoinedRows
from .accumulate import (AccumulateIfFinite, AllFinite, SquaredNorm, zeroed,
                         accumulate_spec, all_finite, isfinite, on_cpu,
                         squared_norm)
from .simd_elemwise import SimdElemwise, include_simd_elemwise
from .team import TeamDot, include_team, team_unavailable
