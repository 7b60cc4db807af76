"""Data-parallel gradient accumulation over MPI (mpi4py + Open MPI).

Gradient accumulation is the natural unit of data parallelism: every process
(*rank*) accumulates its share of a window locally, one all-reduce sums the
accumulators and the counters of all ranks, and every rank then runs the same
compiled ``apply`` on the same sums, so all ranks keep identical parameters
without ever sending them again.

* :class:`Distributed`: the few calls a training loop makes (``is_root``,
  ``owns``, ``shard``, ``broadcast_parameters``, ``allreduce_window``,
  ``any_true``, ``sum``, ``abort``).  Its communicator is
  :class:`~.comm.OneProcess` without MPI (every collective does nothing) or
  :class:`~.comm.MPICommunicator`, so one process runs the same loop.
* :class:`WindowSums`: what :meth:`Distributed.allreduce_window` returns, the
  window's sums over all ranks.  The accumulator itself is never wrapped:
  ``acc.samples``, ``acc.tokens``... count this rank's share of the window
  until ``allreduce_window`` turns the accumulator into the sums that
  ``acc.apply()`` then averages and resets.
* :func:`check_resume`: a run resumes only on as many ranks as wrote it
  (the checkpoint store records :data:`SIZE_KEY`).

MPI itself (importing it, the launcher, aborting, broadcasting arrays) is
:mod:`.mpi`; the sharding rule is :mod:`.sharding`.
"""
import json
import time
import zlib
from collections import namedtuple

import numpy as np

from ..exceptions import IncompatibleStateError, InputError
from .comm import MPICommunicator, OneProcess
from .mpi import install_abort_on_exception, mpirun_world_size
from .sharding import shard_indices, shard_owner

__all__ = ["SIZE_KEY", "WindowSums", "check_resume", "Distributed"]

#: Key of the number of ranks that wrote a checkpoint (under ``acc/``);
#: absent means one.
SIZE_KEY = "distributed/size"

WindowSums = namedtuple("WindowSums", [
    "samples", "tokens", "loss", "skipped", "bytes", "seconds",
    "wait_seconds"])
WindowSums.__doc__ = """The window's sums over all ranks, ready for ``apply``.

``samples``, ``tokens`` and ``skipped`` are the window's counts and ``loss``
its summed loss (not yet divided), over every rank's share.  ``bytes`` is
the size of the buffer every rank contributed (and received; 0 without
MPI), ``seconds`` the wall time of copy in, ``MPI_Allreduce`` and copy
out, ``wait_seconds`` the time spent before it waiting for the slowest rank
to finish its share (load imbalance, not communication)."""


def check_resume(saved_size, size):
    """Refuse to resume a run with a different number of ranks.

    Parameters
    ----------
    saved_size : int or None
        Ranks of the run that wrote the checkpoint (None or 1: not
        distributed).
    size : int
        Ranks of this run.

    Raises
    ------
    IncompatibleStateError
        When they differ.
    """
    saved = 1 if saved_size is None else int(saved_size)
    if saved != int(size):
        raise IncompatibleStateError(
            "%s: the checkpoint was written by a run on %d process(es) and "
            "this run has %d; resume with the same number of processes "
            "('mpirun -n %d ...'%s), since the windows are summed in a "
            "different order otherwise" % (
                SIZE_KEY, saved, size, saved,
                "" if saved > 1 else ", or without mpirun"))


def _reduced_variables(accumulator):
    """The shared variables whose values are summed over ranks before apply.

    Every accumulator, then every counter the accumulate function adds to
    (samples, tokens, skipped samples, summed loss):
    ``accumulator.counter_variables``.
    """
    accumulators = list(accumulator.accumulators)
    counters = getattr(accumulator, "counter_variables", None)
    if counters is None:
        raise InputError(
            "allreduce_window needs an accumulator that lists the "
            "counters its accumulate function adds to (attribute "
            "'counter_variables'); got a %s, which has none"
            % type(accumulator).__name__)
    if isinstance(counters, dict):
        counters = list(counters.values())
    return accumulators + list(counters)


class _WindowReducer(object):
    """One accumulator's all-reduce: its layout and its contiguous buffer.

    One ``MPI_Allreduce(MPI_IN_PLACE, buffer, MPI_SUM)`` sums all
    accumulators and all counters (samples, tokens, summed loss, skipped
    non-finite samples) of all ranks, in place in the accumulator's shared
    variables, so that its compiled ``apply`` runs on the sums.  Since every
    rank starts from the same state and applies the same sums, all ranks
    stay identical, and the update equals that of one process accumulating
    the whole window (up to the order of the floating-point sums).

    Notes
    -----
    The buffer is allocated once, with the dtype of the accumulators
    (``floatX``); its size is what each rank sends per update.  On the CPU,
    the all-reduce is one memcpy per variable into the buffer
    (``get_value(borrow=True)`` gives Theano's own arrays, no copy), the
    in-place ``MPI_Allreduce``, and one memcpy back (``set_value(borrow=
    True)`` hands Theano a view of the buffer).  On a GPU with a CUDA-aware
    MPI the buffer could be a ``pygpu`` array and stay on the device; this
    module implements the CPU path only.  A communicator that moves no data
    (:class:`~.comm.OneProcess`) gets no buffer: one rank's window is its
    own sum.

    Integer counters travel in the floating-point buffer.  They are exact
    up to ``2**24`` (float32) or ``2**53`` (float64) per window; a larger
    sum raises :class:`~lstm_accum.exceptions.InputError` rather than
    silently rounding.  The summed loss (a float64 counter) is rounded to
    the buffer's dtype: with float32 the reported window loss keeps about 7
    significant digits; gradients and updates are unaffected.
    """

    def __init__(self, accumulator, comm, polite=True):
        self.accumulator = accumulator
        self.comm = comm
        self.polite = bool(polite)
        self._variables = _reduced_variables(accumulator)
        dtypes = {str(v.dtype) for v in accumulator.accumulators}
        if not dtypes:
            raise InputError("the accumulator has no accumulators to reduce")
        self.dtype = np.result_type(*sorted(dtypes))
        if self.dtype.kind != "f":
            raise InputError("accumulators must be floating point, got %s"
                             % sorted(dtypes))
        self._exact_limit = 2.0 ** (np.finfo(self.dtype).nmant + 1)
        self._slices = []
        offset = 0
        for variable in self._variables:
            shape = np.shape(variable.get_value(borrow=True))
            count = int(np.prod(shape, dtype=np.int64))
            self._slices.append((variable, offset, count, shape))
            offset += count
        self._buffer = np.zeros(offset if comm.moves_data else 0,
                                dtype=self.dtype)
        self._counter_slices = self._slices[len(accumulator.accumulators):]
        # The other ranks may still be compiling: wait without spinning.
        comm.wait_for_all()
        self._check_same_layout()

    def _check_same_layout(self):
        """All ranks must reduce the same variables with the same shapes."""
        layout = json.dumps([[v.name, str(v.dtype), list(shape)]
                             for v, _, _, shape in self._slices])
        crc = zlib.crc32(layout.encode("utf-8"))
        bounds = np.array([crc, -crc], dtype=np.int64)
        self.comm.allreduce(bounds, op="max")
        if bounds[0] != crc or -bounds[1] != crc:
            # Every rank sees the same max/min, so every rank raises.
            raise InputError(
                "the accumulators differ between ranks (rank %d has %s): "
                "build the same model with the same arguments on every rank"
                % (self.comm.rank, layout[:300]))

    def allreduce(self):
        """Sum accumulators and counters over all ranks, in place.

        Returns
        -------
        WindowSums
        """
        waited = self.comm.wait_for_all() if self.polite else 0.0
        start = time.perf_counter()
        if self.comm.moves_data:
            self._sum_in_buffer()
        acc = self.accumulator
        return WindowSums(acc.samples, acc.tokens,
                          float(acc.window.loss.get_value()), acc.skipped,
                          self._buffer.nbytes,
                          time.perf_counter() - start, waited)

    def _sum_in_buffer(self):
        buffer = self._buffer
        for variable, offset, count, _ in self._slices:
            buffer[offset:offset + count] = np.reshape(
                variable.get_value(borrow=True), -1)
        self.comm.allreduce(buffer)
        for variable, offset, count, _ in self._counter_slices:
            # Checked before anything changes.  Every rank sees the same
            # sums, so every rank raises together.
            if variable.dtype.startswith(("int", "uint")) and count and \
                    np.max(np.abs(buffer[offset:offset + count])) \
                    >= self._exact_limit:
                raise InputError(
                    "counter %r summed over %d ranks is %r, beyond the exact "
                    "integers of %s: apply smaller windows" % (
                        variable.name, self.comm.size,
                        float(buffer[offset:offset + count].max()),
                        self.dtype))
        for variable, offset, count, shape in self._slices:
            view = buffer[offset:offset + count].reshape(shape)
            if view.dtype != variable.dtype:
                view = view.astype(variable.dtype)
            variable.set_value(view, borrow=True)


class Distributed(object):
    """The calls a training loop makes, with or without MPI.

    ``Distributed(enabled=False)`` (or no MPI launcher) is a single process:
    rank 0 of 1 on a :class:`~.comm.OneProcess` communicator whose
    collectives do nothing, ``shard`` returns its argument, and mpi4py is
    never imported.  Enabled, it uses ``MPI.COMM_WORLD``.

    A training loop, the same with one process or many:

    1. build the accumulator as usual, then
       ``dist.broadcast_parameters(acc)``: every rank now holds rank 0's
       parameters and optimizer state (after rank 0 loaded a checkpoint, if
       resuming: see :func:`check_resume`);
    2. every rank plans the same epoch and cuts the same windows; each rank
       accumulates only its items: ``dist.shard(window)``, or the
       minibatches ``b`` (numbered in the epoch's plan) with
       ``dist.owns(b)`` -- the same rule, item ``i`` belongs to rank
       ``i % size`` (:func:`~lstm_accum.accumulation.sharding.shard_owner`);
       ``acc.samples`` and ``acc.tokens`` count this rank's share;
    3. ``sums = dist.allreduce_window(acc)`` then ``acc.apply()``: the
       accumulator now holds the window's sums over all ranks (``sums``
       says how much), and ``apply`` averages and resets them;
    4. only ``if dist.is_root:`` write checkpoints, metrics, plots and
       print; and take checkpoints right after ``apply`` (validation time).

    Parameters
    ----------
    enabled : bool or None
        True: use MPI (raises :class:`InputError` with the install command
        when it is missing).  False: single process.  None: enabled when the
        process was started by ``mpirun`` with more than one rank.
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.

    Attributes
    ----------
    comm : lstm_accum.accumulation.comm.OneProcess or lstm_accum.accumulation.comm.MPICommunicator
    rank, size : int
    """

    def __init__(self, enabled=None, comm=None):
        if enabled is None:
            enabled = comm is not None or (mpirun_world_size() or 1) > 1
        self.enabled = bool(enabled)
        self.comm = MPICommunicator(comm) if self.enabled else OneProcess()
        self.rank = self.comm.rank
        self.size = self.comm.size
        if self.size > 1:
            install_abort_on_exception(self.comm.mpi_comm)
        self._reducers = {}

    @property
    def is_root(self):
        """True on rank 0, the only rank that writes files and prints."""
        return self.rank == 0

    def owns(self, index):
        """Whether this rank accumulates item ``index`` (not collective).

        The sharding rule (:func:`~.sharding.shard_owner`):
        ``index % size == rank``. Always True for one process.

        Parameters
        ----------
        index : int
            The item's position ``>= 0``, the same on every rank (e.g. the
            minibatch's number in the epoch's plan).

        Returns
        -------
        bool

        Examples
        --------
        >>> Distributed(enabled=False).owns(5)
        True
        """
        return shard_owner(index, self.size) == self.rank

    def shard(self, items):
        """This rank's share of ``items`` (a window's sentences or batches).

        Parameters
        ----------
        items : sequence or numpy.ndarray
            The same on every rank.

        Returns
        -------
        list or numpy.ndarray
            ``items[rank::size]``: the items ``i`` that :meth:`owns`
            (see :func:`~lstm_accum.accumulation.sharding.shard_indices`).
        """
        if self.size == 1:
            return items
        index = shard_indices(len(items), self.rank, self.size)
        if isinstance(items, np.ndarray):
            return items[index]
        return [items[i] for i in index]

    def _reducer(self, accumulator):
        # Built at the first collective call with this accumulator (every
        # rank makes it at the same point), then kept with its buffer.
        reducer = self._reducers.get(id(accumulator))
        if reducer is None or reducer.accumulator is not accumulator:
            reducer = _WindowReducer(accumulator, self.comm)
            self._reducers[id(accumulator)] = reducer
        return reducer

    def broadcast_parameters(self, accumulator):
        """Copy rank 0's whole accumulator state to every rank (collective).

        Parameters, optimizer state, accumulators, counters and
        hyper-parameters: everything ``state()`` holds.  Call it once after
        building (or after rank 0 loaded a checkpoint) and before the
        first ``accumulate``.  It first checks that every rank built the
        same accumulator.  Nothing happens in a single process.

        Parameters
        ----------
        accumulator : GradientAccumulator

        Raises
        ------
        InputError
            When the ranks' accumulators do not have the same layout.
        """
        self._reducer(accumulator)
        if not self.comm.moves_data:
            return
        state = accumulator.state() if self.is_root else None
        state = self.comm.broadcast_arrays(state)
        if not self.is_root:
            accumulator.load_state(state)

    def allreduce_window(self, accumulator):
        """Sum the window over all ranks, in place, before ``apply`` (collective).

        One ``MPI_Allreduce`` over one preallocated buffer sums every
        accumulator and every counter of ``accumulator`` across ranks; call
        ``accumulator.apply()`` right after, on every rank.  In a single
        process nothing moves: the window is its own sum.

        Parameters
        ----------
        accumulator : GradientAccumulator

        Returns
        -------
        WindowSums
            The window's counts and summed loss over all ranks, the bytes
            sent and the seconds spent; the same on every rank.

        Raises
        ------
        InputError
            When a summed counter exceeds the exactly representable integers
            of the buffer's dtype (windows that large: apply smaller ones).
        """
        return self._reducer(accumulator).allreduce()

    def abort(self, status=1):
        """End every rank now with exit ``status`` (``SystemExit`` when single).

        Use it instead of ``sys.exit`` for an error only some ranks may have
        seen (e.g. rank 0 could not write a checkpoint): a rank that merely
        exits leaves the others waiting forever in their next collective.
        """
        self.comm.abort(status)

    def broadcast_arrays(self, arrays):
        """Rank 0's dict of arrays on every rank (collective; no pickle).

        For a checkpoint that only rank 0 can read, or any other state the
        ranks must share (RNG state, iterator position).  The other ranks'
        ``arrays`` are ignored.
        """
        return self.comm.broadcast_arrays(arrays)

    def barrier(self):
        """Wait for every rank (collective; nothing when single)."""
        self.comm.barrier()

    def all_agree(self, flag):
        """True on every rank iff ``flag`` is true on every rank (collective).
        """
        return not self.any_true(not flag)

    def any_true(self, flag):
        """True on every rank iff ``flag`` is true on some rank (collective).

        E.g. ``if dist.any_true(interrupted):`` at a window boundary, so that
        an interrupt seen by one rank stops all of them at the same point.
        """
        return bool(self.sum([1.0 if flag else 0.0])[0] > 0)

    def sum(self, values):
        """Element-wise sum of a small float64 vector over ranks (collective).

        Parameters
        ----------
        values : array_like
            The same length on every rank (e.g. ``[nll, tokens]`` of this
            rank's share of the validation set).

        Returns
        -------
        numpy.ndarray of float64
        """
        values = np.array(values, dtype=np.float64).reshape(-1)
        return self.comm.allreduce(values)
