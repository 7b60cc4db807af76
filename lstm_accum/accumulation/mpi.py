"""MPI itself: importing it, launching ranks, ending them, sending arrays.

mpi4py is imported lazily: :func:`require_mpi` imports it, or raises an
:class:`~lstm_accum.exceptions.InputError` that says how to install MPI;
nothing else here imports it, so a single process never does.

* :func:`mpi_available`, :func:`require_mpi`: the import;
* :func:`mpirun_world_size`, :func:`local_mpirun_command`: the launcher;
* :func:`is_root`, :func:`wait_for_all`: rank 0 and a sleeping barrier;
* :func:`install_abort_on_exception`, :func:`exit_all`: one rank's error
  ends every rank instead of leaving the others waiting;
* :func:`broadcast_arrays`: a dict of numpy arrays from one rank to all,
  through the buffer-based ``Bcast``, without pickle.

Launch with e.g. ``mpirun -n 2 lstm-accum train CORPUS --out DIR``.  On one
machine, as root and without a network, Open MPI 4 wants::

    mpirun -n 2 --oversubscribe --mca btl self,vader \\
        --mca mpi_yield_when_idle 1 --bind-to none --allow-run-as-root ...

(``--allow-run-as-root`` only as root; ``--oversubscribe`` when there are
more ranks than cores; ``--mca btl self,vader`` keeps all traffic in shared
memory, so no network interface is needed; see
:func:`local_mpirun_command` for the others.)
"""
import json
import os
import sys
import time

import numpy as np

from ..exceptions import InputError

__all__ = ["MPI_INSTALL_HINT", "mpi_available", "require_mpi",
           "mpirun_world_size", "local_mpirun_command", "is_root",
           "wait_for_all", "install_abort_on_exception", "exit_all",
           "broadcast_arrays"]

#: How to install what :func:`require_mpi` needs (Debian/Ubuntu).
MPI_INSTALL_HINT = (
    "install Open MPI and mpi4py: 'apt-get install openmpi-bin "
    "libopenmpi-dev && pip install mpi4py' (then launch with "
    "'mpirun -n K ...')")

#: Environment variables through which MPI launchers announce the number of
#: ranks (Open MPI, MPICH/Hydra and PMI-2, MVAPICH2).
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def require_mpi():
    """Import and return ``mpi4py.MPI``, or explain how to install it.

    Returns
    -------
    module
        ``mpi4py.MPI``.

    Raises
    ------
    InputError
        When mpi4py or the MPI library is missing; the message gives the
        install command.
    """
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise InputError("distributed training needs mpi4py, which could "
                         "not be imported (%s): %s" % (err, MPI_INSTALL_HINT))
    except (RuntimeError, OSError) as err:
        # mpi4py's binary wheels load the system's libmpi at import time.
        raise InputError("mpi4py is installed but no MPI library could be "
                         "loaded (%s): %s" % (err, MPI_INSTALL_HINT))
    return MPI


def mpi_available():
    """Whether mpi4py and an MPI library can be used.

    Returns
    -------
    bool
        True when ``from mpi4py import MPI`` succeeds.

    Notes
    -----
    Importing ``mpi4py.MPI`` initialises MPI in this process, so call this
    only when you are about to use MPI.
    """
    try:
        require_mpi()
    except InputError:
        return False
    return True


def mpirun_world_size(environ=None):
    """Number of ranks announced by an MPI launcher, without importing MPI.

    Parameters
    ----------
    environ : mapping, optional
        Default ``os.environ``.

    Returns
    -------
    int or None
        The size from ``OMPI_COMM_WORLD_SIZE`` (Open MPI), ``PMI_SIZE``
        (MPICH) or ``MV2_COMM_WORLD_SIZE`` (MVAPICH2); None when the process
        was not started by ``mpirun``.
    """
    environ = os.environ if environ is None else environ
    for name in _SIZE_VARIABLES:
        value = environ.get(name)
        if value:
            try:
                return int(value)
            except ValueError:
                continue
    return None


def local_mpirun_command(num_ranks, mpirun="mpirun"):
    """The ``mpirun`` prefix for ``num_ranks`` ranks on this one machine.

    Open MPI options: ``--oversubscribe`` (more ranks than cores is
    allowed), ``--mca btl self,vader`` (shared memory only: no network
    interface needed or used), ``--mca mpi_yield_when_idle 1`` (a waiting
    rank yields its core instead of spinning, which matters when ranks
    share cores), ``--bind-to none`` (Open MPI binds each of 1 or 2 ranks
    to one core by default, which would confine a rank's BLAS threads to
    that core), ``--allow-run-as-root`` when running as root.

    Parameters
    ----------
    num_ranks : int
    mpirun : str
        The launcher (default ``'mpirun'`` on ``PATH``).

    Returns
    -------
    list of str
        Append the program and its arguments, e.g.
        ``local_mpirun_command(2) + ['lstm-accum', 'train', ...]``.
    """
    command = [mpirun, "-n", str(int(num_ranks)), "--oversubscribe",
               "--mca", "btl", "self,vader",
               "--mca", "mpi_yield_when_idle", "1", "--bind-to", "none"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")
    return command

def is_root(comm=None):
    """Whether this process is rank 0 (the one that writes files).

    Parameters
    ----------
    comm : mpi4py communicator or None
        None means "not distributed": the only process is the root.

    Returns
    -------
    bool
    """
    return comm is None or comm.Get_rank() == 0


def wait_for_all(comm, poll_seconds=0.005):
    """A barrier that sleeps instead of spinning (collective).

    MPI implementations busy-poll inside collectives; when one rank is
    still compiling Theano functions (a minute on a cold cache) the others
    would burn a core each.  ``MPI_Ibarrier`` polled with sleeps waits
    without that cost.

    Parameters
    ----------
    comm : mpi4py communicator
    poll_seconds : float
        Sleep between polls.

    Returns
    -------
    float
        Seconds waited.
    """
    start = time.perf_counter()
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(poll_seconds)
    return time.perf_counter() - start


def install_abort_on_exception(comm):
    """Make an uncaught exception end every rank, not hang the others.

    After an uncaught exception Python runs ``MPI_Finalize`` at exit, which
    waits for the other ranks -- who wait in their next collective for this
    one: the job hangs.  The hook prints the traceback as usual, then calls
    ``MPI_Abort`` (what ``python -m mpi4py`` does), so ``mpirun`` ends all
    ranks and exits non-zero.  :class:`Distributed` installs it when there
    is more than one rank.

    Parameters
    ----------
    comm : mpi4py communicator
    """
    previous = sys.excepthook
    if getattr(previous, "_lstm_accum_abort", False):
        return

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stderr.flush()
        comm.Abort(1)

    hook._lstm_accum_abort = True
    sys.excepthook = hook


def exit_all(status):
    """Exit with ``status``; under MPI with several ranks, end all of them.

    For a command line's error path: an error seen by only some ranks
    (rank 0 could not write a checkpoint) must not leave the others waiting
    in a collective.  Uses ``MPI_Abort`` only when mpi4py was already
    imported and initialised with more than one rank, so single-process
    runs never import MPI here.

    Parameters
    ----------
    status : int
        Exit status (``mpirun`` exits with it too).

    Raises
    ------
    SystemExit
        When not aborting.
    """
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and \
            not mpi.Is_finalized() and mpi.COMM_WORLD.Get_size() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        mpi.COMM_WORLD.Abort(int(status))
    raise SystemExit(int(status))


def _as_bytes(array):
    """A writable uint8 view of a C-contiguous array (any fixed-size dtype)."""
    return array.reshape(-1).view(np.uint8)


def broadcast_arrays(arrays, comm, root=0):
    """Broadcast a dict of numpy arrays from ``root`` to every rank.

    No pickle is involved: a JSON header (names, dtypes, shapes) goes first,
    then each array's bytes through ``MPI_Bcast``.

    Parameters
    ----------
    arrays : dict of str -> array_like, or None
        The arrays on ``root``; ignored on the other ranks (pass None).
    comm : mpi4py communicator
    root : int

    Returns
    -------
    dict of str -> numpy.ndarray
        The root's arrays (copies on the other ranks, the root's own
        contiguous arrays on the root), in the root's order.

    Raises
    ------
    InputError
        On the root, for an object array (it has no bytes to send).
    """
    mpi = require_mpi()
    if comm.Get_rank() == root:
        # np.require, not ascontiguousarray: the latter makes 0-d arrays 1-d.
        arrays = {str(k): np.require(v, requirements="C")
                  for k, v in arrays.items()}
        for name, value in arrays.items():
            if value.dtype.hasobject:
                raise InputError("cannot broadcast %r: object arrays have no "
                                 "fixed-size bytes (got dtype %s)"
                                 % (name, value.dtype))
        header = json.dumps([[name, value.dtype.str, list(value.shape)]
                             for name, value in arrays.items()])
        header = np.frombuffer(header.encode("utf-8"), dtype=np.uint8).copy()
        length = np.array([header.size], dtype=np.int64)
    else:
        length = np.zeros(1, dtype=np.int64)
    comm.Bcast([length, mpi.INT64_T], root=root)
    if comm.Get_rank() != root:
        header = np.empty(int(length[0]), dtype=np.uint8)
    comm.Bcast([header, mpi.BYTE], root=root)
    layout = json.loads(header.tobytes().decode("utf-8"))
    result = {}
    for name, dtype, shape in layout:
        if comm.Get_rank() == root:
            value = arrays[name]
        else:
            value = np.empty(tuple(shape), dtype=np.dtype(dtype))
        if value.size:
            comm.Bcast([_as_bytes(value), mpi.BYTE], root=root)
        result[name] = value
    return result
