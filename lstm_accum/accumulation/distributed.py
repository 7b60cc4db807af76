"""Data-parallel gradient accumulation over MPI (mpi4py + Open MPI).

Gradient accumulation is the natural unit of data parallelism: every process
(*rank*) accumulates its share of a window locally, one allreduce sums the
accumulators and the counters of all ranks, and every rank then runs the same
compiled ``apply`` on the same sums, so all ranks keep identical parameters
without ever sending them again.

* :class:`DistributedAccumulator` wraps a
  :class:`~lstm_accum.accumulation.accumulator.GradientAccumulator`:
  :meth:`~DistributedAccumulator.broadcast_parameters` copies rank 0's state
  (parameters, optimizer state, counters, hyper-parameters) to every rank at
  start; :meth:`~DistributedAccumulator.apply` sums every accumulator and
  every counter across ranks with **one** ``MPI_Allreduce`` over one
  preallocated contiguous buffer, then runs the wrapped ``apply``.
* :class:`Distributed`: the few calls a training loop needs (``is_root``,
  ``owns``, ``shard``, ``wrap``, ``check_resume``, ``any_true``, ``sum``,
  ``abort``), which also work, as no-ops, without MPI.
* :func:`check_resume`: a run resumes only on as many ranks as wrote it.

MPI itself (importing it, the launcher, aborting, broadcasting arrays) is
:mod:`.mpi`; the sharding rule is :mod:`.sharding`.
"""
import json
import time
import zlib
from collections import namedtuple

import numpy as np

from ..exceptions import IncompatibleStateError, InputError
from .mpi import (broadcast_arrays, exit_all, install_abort_on_exception,
                  mpirun_world_size, require_mpi, wait_for_all)
from .sharding import shard_indices, shard_owner

__all__ = ["SIZE_KEY", "AllreduceStats", "check_resume",
           "DistributedAccumulator", "Distributed"]

#: Key added to :meth:`DistributedAccumulator.state` holding the number of
#: ranks that produced it.
SIZE_KEY = "distributed/size"

AllreduceStats = namedtuple("AllreduceStats",
                            ["bytes", "seconds", "wait_seconds"])
AllreduceStats.__doc__ = """What the last allreduce moved and how long it took.

``bytes`` is the size of the buffer every rank contributes (and receives);
``seconds`` the wall time of copy in, ``MPI_Allreduce`` and copy out;
``wait_seconds`` the time spent before it waiting for the slowest rank to
finish its share of the window (load imbalance, not communication)."""


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
            "DistributedAccumulator needs an accumulator that lists the "
            "counters its accumulate function adds to (attribute "
            "'counter_variables'); got a %s, which has none"
            % type(accumulator).__name__)
    if isinstance(counters, dict):
        counters = list(counters.values())
    return accumulators + list(counters)


class DistributedAccumulator(object):
    """A GradientAccumulator whose windows are spread over MPI ranks.

    Every rank calls :meth:`accumulate` on its own share of a window (see
    :func:`shard_indices`), then every rank calls :meth:`apply`: one
    ``MPI_Allreduce(MPI_IN_PLACE, buffer, MPI_SUM)`` sums all accumulators
    and all counters (samples, tokens, summed loss, skipped non-finite
    samples) of all ranks, and the wrapped compiled ``apply`` runs on the
    sums.  Since every rank starts from the same state
    (:meth:`broadcast_parameters`) and applies the same sums, all ranks stay
    identical, and the update equals that of one process accumulating the
    whole window (up to the order of the floating-point sums).

    Parameters
    ----------
    accumulator : GradientAccumulator
        Built identically on every rank (same model, same arguments).
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.
    root : int
        The rank whose state :meth:`broadcast_parameters` copies.
    polite : bool
        Wait for all ranks with :func:`wait_for_all` (sleeping, not
        spinning) before each allreduce (default True): costs one barrier
        latency, frees the cores of ranks that finished their share early
        and separates load imbalance from communication time in
        :attr:`last_allreduce`.

    Raises
    ------
    InputError
        When mpi4py/MPI is missing (with the install command), or when the
        ranks' accumulators do not have the same layout.

    Notes
    -----
    The buffer is allocated once, with the dtype of the accumulators
    (``floatX``); its size, :attr:`bytes_per_update`, is what each rank
    sends per update.  On the CPU, :meth:`allreduce` is one memcpy per
    variable into the buffer (``get_value(borrow=True)`` gives Theano's own
    arrays, no copy), the in-place allreduce, and one memcpy back
    (``set_value(borrow=True)`` hands Theano a view of the buffer).  On a
    GPU with a CUDA-aware MPI the buffer could be a ``pygpu`` array and
    stay on the device; this module implements the CPU path only.

    Integer counters travel in the floating-point buffer.  They are exact
    up to ``2**24`` (float32) or ``2**53`` (float64) per window; a larger
    sum raises :class:`~lstm_accum.exceptions.InputError` rather than
    silently rounding.  The summed loss (a float64 counter) is rounded to
    the buffer's dtype: with float32 the reported window loss keeps about 7
    significant digits; gradients and updates are unaffected.

    Collective calls (:meth:`broadcast_parameters`, :meth:`allreduce`,
    :meth:`apply`) must be made by every rank, in the same order.
    """

    def __init__(self, accumulator, comm=None, root=0, polite=True):
        self._mpi = require_mpi()
        self.polite = bool(polite)
        self.accumulator = accumulator
        self.comm = self._mpi.COMM_WORLD if comm is None else comm
        self.root = int(root)
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
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
        self._buffer = np.zeros(offset, dtype=self.dtype)
        self._counter_slices = self._slices[len(accumulator.accumulators):]
        self.last_allreduce = AllreduceStats(self._buffer.nbytes, 0.0, 0.0)
        # The other ranks may still be compiling: wait without spinning.
        wait_for_all(self.comm)
        self._check_same_layout()

    # -- layout ---------------------------------------------------------
    def _check_same_layout(self):
        """All ranks must reduce the same variables with the same shapes."""
        layout = json.dumps([[v.name, str(v.dtype), list(shape)]
                             for v, _, _, shape in self._slices])
        crc = zlib.crc32(layout.encode("utf-8"))
        bounds = np.array([crc, -crc], dtype=np.int64)
        self.comm.Allreduce(self._mpi.IN_PLACE, bounds, op=self._mpi.MAX)
        if bounds[0] != crc or -bounds[1] != crc:
            # Every rank sees the same max/min, so every rank raises.
            raise InputError(
                "the accumulators differ between ranks (rank %d has %s): "
                "build the same model with the same arguments on every rank"
                % (self.rank, layout[:300]))

    @property
    def bytes_per_update(self):
        """Bytes each rank contributes to (and receives from) one allreduce."""
        return self._buffer.nbytes

    @property
    def buffer(self):
        """The contiguous allreduce buffer (read-only use, for inspection)."""
        return self._buffer

    # -- delegation -----------------------------------------------------
    def __getattr__(self, name):
        # Everything not distributed (params, learning_rate, samples, ...)
        # is the wrapped accumulator's; samples/tokens are this rank's share
        # until apply().
        if name == "accumulator":
            raise AttributeError(name)
        return getattr(self.accumulator, name)

    def accumulate(self, *arrays):
        """Add this rank's share: see ``GradientAccumulator.accumulate``.

        The arrays are checked once, by the wrapped accumulator.
        """
        return self.accumulator.accumulate(*arrays)

    def reset(self):
        """Discard this rank's share of the open window (not collective).

        Every rank must discard the same window (e.g. the partial window
        at the end of an epoch, which every rank sees end at the same
        batch); see ``GradientAccumulator.reset``.
        """
        self.accumulator.reset()

    # -- collectives ----------------------------------------------------
    def broadcast_parameters(self):
        """Copy the root's whole accumulator state to every rank (collective).

        Parameters, optimizer state, accumulators, counters and
        hyper-parameters: everything ``state()`` holds.  Call it once after
        building (or after the root loaded a checkpoint) and before the
        first :meth:`accumulate`.

        Returns
        -------
        None
        """
        state = self.accumulator.state() if self.rank == self.root else None
        state = broadcast_arrays(state, self.comm, self.root)
        if self.rank != self.root:
            self.accumulator.load_state(state)

    def allreduce(self):
        """Sum accumulators and counters over all ranks, in place (collective).

        Returns
        -------
        AllreduceStats
            Bytes per rank and seconds spent (copies included).

        Raises
        ------
        InputError
            When a summed counter exceeds the exactly representable integers
            of the buffer's dtype.
        """
        waited = wait_for_all(self.comm) if self.polite else 0.0
        start = time.perf_counter()
        buffer = self._buffer
        for variable, offset, count, _ in self._slices:
            buffer[offset:offset + count] = np.reshape(
                variable.get_value(borrow=True), -1)
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        for variable, offset, count, _ in self._counter_slices:
            # Checked before anything changes.  Every rank sees the same
            # sums, so every rank raises together.
            if variable.dtype.startswith(("int", "uint")) and count and \
                    np.max(np.abs(buffer[offset:offset + count])) \
                    >= self._exact_limit:
                raise InputError(
                    "counter %r summed over %d ranks is %r, beyond the exact "
                    "integers of %s: apply smaller windows" % (
                        variable.name, self.size,
                        float(buffer[offset:offset + count].max()),
                        self.dtype))
        for variable, offset, count, shape in self._slices:
            view = buffer[offset:offset + count].reshape(shape)
            if view.dtype != variable.dtype:
                view = view.astype(variable.dtype)
            variable.set_value(view, borrow=True)
        self.last_allreduce = AllreduceStats(
            buffer.nbytes, time.perf_counter() - start, waited)
        return self.last_allreduce

    def apply(self):
        """Sum over ranks, then apply the averaged update (collective).

        Returns
        -------
        ApplyResult
            The wrapped ``apply``'s result, for the whole window of all
            ranks; identical on every rank.

        Raises
        ------
        Whatever the wrapped ``apply`` raises (e.g. ``NonFiniteError``
        after too many bad windows), on every rank alike.
        """
        self.allreduce()
        return self.accumulator.apply()

    # -- saved state ----------------------------------------------------
    def state(self):
        """This rank's state plus the number of ranks (:data:`SIZE_KEY`).

        Take it right after :meth:`apply`: accumulators and counters are
        then empty and every rank holds the same state, so the root's state
        is the state of the run.

        Returns
        -------
        dict of str -> numpy.ndarray
        """
        state = dict(self.accumulator.state())
        state[SIZE_KEY] = np.array(self.size, dtype=np.int64)
        return state

    def load_state(self, state):
        """Load a state saved by :meth:`state` with the same number of ranks.

        Parameters
        ----------
        state : dict of str -> array

        Raises
        ------
        IncompatibleStateError
            When the state was saved by a different number of ranks (or by
            a run that was not distributed), naming both numbers; or
            whatever the wrapped ``load_state`` raises.
        """
        state = dict(state)
        saved = state.pop(SIZE_KEY, None)
        check_resume(None if saved is None else int(np.asarray(saved)),
                     self.size)
        self.accumulator.load_state(state)


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


class Distributed(object):
    """The hooks a training loop calls, with or without MPI.

    ``Distributed(enabled=False)`` (or no MPI launcher) is a single process:
    rank 0 of 1, ``shard`` returns its argument, ``wrap`` returns the
    accumulator itself, and mpi4py is never imported.  Enabled, it uses
    ``MPI.COMM_WORLD``.

    The loop then needs exactly four changes:

    1. build the accumulator as usual, then ``acc = dist.wrap(acc)`` --
       this broadcasts rank 0's parameters and optimizer state (after rank
       0 loaded a checkpoint, if resuming: see :meth:`check_resume`);
    2. every rank plans the same epoch and cuts the same windows; each rank
       accumulates only its items: ``dist.shard(window)``, or the
       minibatches ``b`` (numbered in the epoch's plan) with
       ``dist.owns(b)`` -- the same rule, item ``i`` belongs to rank
       ``i % size`` (:func:`~lstm_accum.accumulation.sharding.shard_owner`);
    3. ``acc.apply()`` as before: it allreduces first;
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
    """

    def __init__(self, enabled=None, comm=None):
        if enabled is None:
            enabled = comm is not None or (mpirun_world_size() or 1) > 1
        self.enabled = bool(enabled)
        if self.enabled:
            mpi = require_mpi()
            self.comm = mpi.COMM_WORLD if comm is None else comm
            self.rank = self.comm.Get_rank()
            self.size = self.comm.Get_size()
            if self.size > 1:
                install_abort_on_exception(self.comm)
        else:
            self.comm = None
            self.rank = 0
            self.size = 1

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

    def wrap(self, accumulator):
        """A :class:`DistributedAccumulator` in sync with rank 0 (collective).

        Parameters
        ----------
        accumulator : GradientAccumulator

        Returns
        -------
        DistributedAccumulator or GradientAccumulator
            The accumulator itself when not distributed.
        """
        if not self.enabled:
            return accumulator
        wrapped = DistributedAccumulator(accumulator, self.comm)
        wrapped.broadcast_parameters()
        return wrapped

    def abort(self, status=1):
        """End every rank now with exit ``status`` (nothing when single).

        Use it instead of ``sys.exit`` for an error only some ranks may have
        seen (e.g. rank 0 could not write a checkpoint): a rank that merely
        exits leaves the others waiting forever in their next collective.
        """
        exit_all(status)

    def check_resume(self, saved_size):
        """Raise IncompatibleStateError unless ``saved_size`` ranks == ours.

        Parameters
        ----------
        saved_size : int or None
            ``state[SIZE_KEY]`` of the checkpoint (None when absent).
        """
        check_resume(saved_size, self.size)

    def broadcast_arrays(self, arrays):
        """Rank 0's dict of arrays on every rank (collective; no pickle).

        For a checkpoint that only rank 0 can read, or any other state the
        ranks must share (RNG state, iterator position).
        """
        if not self.enabled:
            return dict(arrays)
        return broadcast_arrays(arrays if self.is_root else None, self.comm)

    def barrier(self):
        """Wait for every rank (collective; nothing when not distributed)."""
        if self.enabled:
            self.comm.Barrier()

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
        if self.enabled:
            mpi = require_mpi()
            self.comm.Allreduce(mpi.IN_PLACE, values, op=mpi.SUM)
        return values
