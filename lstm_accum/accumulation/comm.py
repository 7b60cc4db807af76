"""The two communicators :class:`~.distributed.Distributed` talks to.

Both offer the same few collectives, so a training loop runs the same code
with or without MPI:

* :class:`OneProcess`: rank 0 of 1, no MPI.  Every collective returns at
  once and leaves its buffers as they are (over one rank, a sum or a
  maximum is the rank's own value and a broadcast has no one to reach).
* :class:`MPICommunicator`: an mpi4py communicator (default
  ``MPI.COMM_WORLD``), through the buffer-based calls only.

A collective must be called by every rank, in the same order.
"""
from .mpi import broadcast_arrays, exit_all, require_mpi, wait_for_all

__all__ = ["OneProcess", "MPICommunicator"]


class OneProcess(object):
    """The communicator of a run without MPI: collectives do nothing.

    ``moves_data`` is False: the window of the only rank already is the
    window's sum, so there is nothing to copy into a buffer and back.
    mpi4py is never imported.
    """

    rank = 0
    size = 1
    moves_data = False

    def allreduce(self, buffer, op="sum"):
        """Return ``buffer`` unchanged (the reduction over one rank)."""
        return buffer

    def broadcast_arrays(self, arrays, root=0):
        """A new dict of the same arrays (nothing is copied or sent)."""
        return dict(arrays)

    def wait_for_all(self):
        """Return 0.0: no rank to wait for."""
        return 0.0

    def barrier(self):
        """Return at once."""

    def abort(self, status):
        """Exit with ``status`` (:class:`SystemExit`)."""
        raise SystemExit(int(status))


class MPICommunicator(object):
    """The collectives over an mpi4py communicator.

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.

    Attributes
    ----------
    mpi_comm : mpi4py communicator
        The communicator itself, for calls of your own.
    rank, size : int

    Raises
    ------
    InputError
        When mpi4py or an MPI library is missing (with the install command).
    """

    moves_data = True

    def __init__(self, comm=None):
        self._mpi = require_mpi()
        self.mpi_comm = self._mpi.COMM_WORLD if comm is None else comm
        self.rank = self.mpi_comm.Get_rank()
        self.size = self.mpi_comm.Get_size()

    def allreduce(self, buffer, op="sum"):
        """``MPI_Allreduce`` in place over a contiguous numpy ``buffer``.

        Parameters
        ----------
        buffer : numpy.ndarray
        op : {'sum', 'max'}

        Returns
        -------
        numpy.ndarray
            ``buffer``, now holding the reduction over all ranks.
        """
        ops = {"sum": self._mpi.SUM, "max": self._mpi.MAX}
        self.mpi_comm.Allreduce(self._mpi.IN_PLACE, buffer, op=ops[op])
        return buffer

    def broadcast_arrays(self, arrays, root=0):
        """``root``'s dict of arrays on every rank (no pickle); see
        :func:`~.mpi.broadcast_arrays`. The other ranks' ``arrays`` are
        ignored."""
        return broadcast_arrays(arrays if self.rank == root else None,
                                self.mpi_comm, root)

    def wait_for_all(self):
        """A barrier that sleeps (:func:`~.mpi.wait_for_all`); seconds
        waited."""
        return wait_for_all(self.mpi_comm)

    def barrier(self):
        """``MPI_Barrier``."""
        self.mpi_comm.Barrier()

    def abort(self, status):
        """End every rank with ``status`` (:func:`~.mpi.exit_all`)."""
        exit_all(status)
