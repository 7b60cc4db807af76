"""Gradient accumulation: summing N gradients on the device and applying one
averaged update, on one process or spread over MPI ranks. This part owns the
:class:`GradientAccumulator` facade (:mod:`.accumulator`) and its parts --
argument checks and resolution (:mod:`.inputs`), the window's shared
variables (:mod:`.window`), the accumulate and apply steps as plain Theano
updates (:mod:`.graphs`), the bad-window policy (:mod:`.policy`), the saved
state (:mod:`.state`), a learning-rate warm-up for any update rule
(:mod:`.warmup`) -- and data parallelism: the sharding rule
(:mod:`.sharding`), MPI itself (:mod:`.mpi`), the communicators with and
without MPI (:mod:`.comm`) and the training loop's calls, among them the
window's all-reduce (:mod:`.distributed`). It may import the models and
data parts, our operations (:mod:`lstm_accum.ops`, for the
in-place accumulate op), the Theano backend and the base modules
(exceptions, checks, files, checkpoint); nothing above it (evaluation,
training, the command line).
"""
from .accumulator import GradientAccumulator, AccumulateResult, ApplyResult
from .window import Window, window_variables
from .graphs import accumulate_updates, averaged_gradients, apply_updates
from .policy import ConsecutiveBadWindows
from .warmup import warmup
from .sharding import shard_indices, shard_owner
from .mpi import exit_all
from .distributed import Distributed, WindowSums, SIZE_KEY, check_resume

__all__ = ["GradientAccumulator", "AccumulateResult", "ApplyResult",
           "Window", "window_variables", "accumulate_updates",
           "averaged_gradients", "apply_updates", "ConsecutiveBadWindows",
           "warmup", "shard_indices", "shard_owner", "exit_all",
           "Distributed", "WindowSums", "SIZE_KEY", "check_resume"]
