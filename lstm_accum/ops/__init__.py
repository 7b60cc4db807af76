"""TODO: one paragraph: what this part owns and what it may import."""
from .base import CpuCOp, unavailable_reason
from .fused_lstm import fused_lstm, fused_supported, FusedLSTM, FusedLSTMGrad
from .softmax_nll import softmax_nll, SoftmaxNLL, SoftmaxNLLGrad
from .accumulate import (AccumulateIfFinite, AllFinite, SquaredNorm,
                         accumulate_spec, all_finite, isfinite, on_cpu,
                         squared_norm)
