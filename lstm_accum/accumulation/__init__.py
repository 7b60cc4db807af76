"""TODO: one paragraph: what this part owns and what it may import."""
from .accumulator import GradientAccumulator, AccumulateResult, ApplyResult
from .distributed import Distributed, DistributedAccumulator, shard_indices
