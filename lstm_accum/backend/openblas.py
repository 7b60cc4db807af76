"""Which OpenBLAS kernels run our matrix products, and faster ones when safe.

OpenBLAS picks its kernels for the CPU when it is loaded.  Some releases
(0.3.20 in NumPy < 1.24's wheels, Debian 12's 0.3.21) do not recognise some
newer CPUs and fall back to generic SSE3 kernels (reported as "Prescott"),
several times slower than the AVX2/AVX-512 kernels the CPU can run.  The
environment variable ``OPENBLAS_CORETYPE`` (read when OpenBLAS loads, i.e.
at ``import numpy``) selects the kernels by hand.

Importing this module (or ``lstm_accum``) never changes the environment.
Only the programs' entry points (the ``lstm-accum`` command line and
``examples/train_lm.py``) call :func:`select_kernels`, first thing: when
OpenBLAS chose kernels without AVX2 on a CPU that has AVX2 or AVX-512 and
the user set no ``OPENBLAS_CORETYPE``, it starts the same program again with
``OPENBLAS_CORETYPE`` set (the only way: NumPy is already loaded), and the
new process checks a matrix product against a reference computed without
BLAS before it trains.  ``LSTM_ACCUM_CORETYPE=off`` turns this off;
:func:`coretype_hint` then gives the one line a tool can print instead.
"""
import ctypes
import os
import subprocess
import sys

from ..exceptions import InputError, LstmAccumError

__all__ = ["loaded_openblas", "openblas_corename", "cpu_flags", "cpu_vendor",
           "recommend_coretype", "coretype_hint", "select_kernels",
           "restart_arguments", "check_kernels", "under_mpi",
           "SWITCH_VARIABLE", "MARKER_VARIABLE", "REJECTED"]

# OpenBLAS core names (lower case) whose kernels use AVX2 (and FMA).
AVX2_CORES = frozenset(["haswell", "zen", "skylakex", "cooperlake",
                        "sapphirerapids", "excavator"])
# CPU flags that OpenBLAS's SkylakeX kernels need.
_AVX512 = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")

#: The user's switch: ``auto`` (the default: select faster kernels when
#: safe) or ``off`` (leave OpenBLAS's choice alone).
SWITCH_VARIABLE = "LSTM_ACCUM_CORETYPE"
_SWITCH_VALUES = ("auto", "off")
#: Set by :func:`select_kernels` in the environment of the program it starts
#: again: the core type it selected, or :data:`REJECTED` when those kernels
#: failed the check.  While it is set, nothing is re-executed again.
MARKER_VARIABLE = "LSTM_ACCUM_CORETYPE_SELECTED"
REJECTED = "rejected"
# Variables through which MPI launchers (Open MPI, MPICH/Hydra, PMI-2, PMIx,
# MVAPICH2) announce a rank: re-executing under them is not worth the risk.
_MPI_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE",
                  "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
# Largest relative error check_kernels accepts, by dtype: far above the
# rounding of a correct product (~1e-7 in float32), far below a wrong one.
_TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


def loaded_openblas(maps_path="/proc/self/maps"):
    """Paths of the OpenBLAS libraries loaded in this process.

    Parameters
    ----------
    maps_path : str, optional
        The process's memory map (Linux); other systems return ``[]``.

    Returns
    -------
    list of str
        In load order; NumPy's is there once ``numpy`` is imported.
    """
    paths = []
    try:
        with open(maps_path) as f:
            for line in f:
                path = line.split(None, 5)[-1].strip()
                name = os.path.basename(path)
                if "openblas" in name.lower() and ".so" in name \
                        and path not in paths:
                    paths.append(path)
    except OSError:
        return []
    return paths


def openblas_corename(path=None):
    """The kernel set an OpenBLAS library chose, e.g. ``'Haswell'``.

    Parameters
    ----------
    path : str, optional
        The library; default: NumPy's (the one Theano uses with the default
        ``blas.ldflags=``), else the first OpenBLAS loaded in this process.

    Returns
    -------
    str or None
        What ``openblas_get_corename`` returns (also for the 64-bit-integer
        builds in NumPy wheels, whose symbols end in ``64_``), or None when
        there is no OpenBLAS or it does not say.
    """
    if path is None:
        import numpy  # noqa: F401  (loads NumPy's BLAS)
        found = loaded_openblas()
        if not found:
            return None
        numpy_dir = os.path.dirname(os.path.dirname(numpy.__file__))
        ours = [p for p in found if p.startswith(
            os.path.join(numpy_dir, "numpy"))]
        path = (ours or found)[0]
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for name in ("openblas_get_corename", "openblas_get_corename64_",
                 "scipy_openblas_get_corename"):
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = ctypes.c_char_p
            value = fn()
            return value.decode("ascii", "replace").strip() if value else None
    return None


def _cpuinfo_field(name, cpuinfo_path):
    """The value of the first ``name : value`` line of /proc/cpuinfo, or
    None when there is none or the file cannot be read."""
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo_path="/proc/cpuinfo"):
    """The CPU's feature flags (Linux), e.g. ``{'avx2', 'fma', ...}``.

    Returns
    -------
    frozenset of str
        Empty when they cannot be read.
    """
    return frozenset((_cpuinfo_field("flags", cpuinfo_path) or "").split())


def cpu_vendor(cpuinfo_path="/proc/cpuinfo"):
    """The CPU's vendor (Linux x86: ``GenuineIntel``, ``AuthenticAMD``...),
    or None when /proc/cpuinfo does not say."""
    return _cpuinfo_field("vendor_id", cpuinfo_path)


def recommend_coretype(corename=None, flags=None, environ=None):
    """The ``OPENBLAS_CORETYPE`` that would give faster kernels, if any.

    Parameters
    ----------
    corename : str, optional
        The kernels OpenBLAS chose (default: :func:`openblas_corename`).
    flags : iterable of str, optional
        The CPU's flags (default: :func:`cpu_flags`).
    environ : mapping, optional
        Default ``os.environ``.

    Returns
    -------
    str or None
        ``'SkylakeX'`` for a CPU with AVX-512 (F, CD, BW, DQ, VL), or
        ``'Haswell'`` for one with AVX2 and FMA, when OpenBLAS chose kernels
        without AVX2; None when the kernels are fine, when nothing is known,
        when the user already set ``OPENBLAS_CORETYPE``, or when this
        program was restarted because the selected kernels failed
        :func:`check_kernels` (``LSTM_ACCUM_CORETYPE_SELECTED=rejected``).
    """
    environ = os.environ if environ is None else environ
    if environ.get("OPENBLAS_CORETYPE") or \
            environ.get(MARKER_VARIABLE) == REJECTED:
        return None
    if corename is None:
        corename = openblas_corename()
    if not corename or corename.lower() in AVX2_CORES:
        return None
    flags = frozenset(cpu_flags() if flags is None else flags)
    if all(f in flags for f in _AVX512):
        return "SkylakeX"
    if "avx2" in flags and "fma" in flags:
        return "Haswell"
    return None


def coretype_hint(corename=None, flags=None, environ=None):
    """One line telling the user how to get faster BLAS kernels, or None.

    For where :func:`select_kernels` did not switch the kernels itself
    (``LSTM_ACCUM_CORETYPE=off``, under MPI, a program it cannot restart).

    Parameters are those of :func:`recommend_coretype`.

    Returns
    -------
    str or None
    """
    environ = os.environ if environ is None else environ
    if corename is None:
        corename = openblas_corename()
    core = recommend_coretype(corename, flags, environ)
    if core is None:
        return None
    hint = ("hint: OpenBLAS runs its generic %r kernels on this CPU, which "
            "supports faster ones; start with OPENBLAS_CORETYPE=%s in the "
            "environment for faster matrix products" % (corename, core))
    if under_mpi(environ):
        hint += (" (not selected automatically under MPI; with Open MPI: "
                 "mpirun -x OPENBLAS_CORETYPE=%s ...)" % core)
    return hint


def under_mpi(environ=None):
    """True when an MPI launcher (``mpirun``, ``mpiexec``, ``srun --mpi``)
    started this process, judged from ``environ`` (default ``os.environ``)
    only: any of the variables such launchers set is there."""
    environ = os.environ if environ is None else environ
    return any(name in environ for name in _MPI_VARIABLES)


def _switch(environ):
    value = environ.get(SWITCH_VARIABLE, "").strip().lower()
    if value == "":
        return "auto"
    if value not in _SWITCH_VALUES:
        raise InputError(
            "%s=%r is not a valid setting: expected 'auto' (the default: "
            "restart with faster OpenBLAS kernels when OpenBLAS chose generic "
            "ones) or 'off' (keep OpenBLAS's choice)"
            % (SWITCH_VARIABLE, environ[SWITCH_VARIABLE]))
    return value


def restart_arguments(orig_argv=None, argv=None, main=None):
    """The interpreter arguments that start this program again, or None.

    Parameters
    ----------
    orig_argv : list of str, optional
        The interpreter's own command line, executable first (default
        ``sys.orig_argv``, Python >= 3.10).
    argv : list of str, optional
        The program's arguments (default ``sys.argv``).
    main : module, optional
        The ``__main__`` module (default ``sys.modules['__main__']``).

    Returns
    -------
    list of str or None
        What follows the executable: the interpreter's options, then
        ``-m MODULE``, ``-c CODE`` or the script's path, then the program's
        arguments.  None when the program cannot be started again: an
        interactive session, a script read from standard input, a frozen
        executable.

    Notes
    -----
    ``python -m lstm_accum.cli`` restarts as ``-m lstm_accum.cli``, not as
    ``sys.argv[0]`` (the module's file, which cannot run as a script: its
    relative imports fail).  A script's path is replaced by the absolute path
    Python recorded at start-up (``__main__.__file__``), so a relative path
    still works if the program changed directory since.  Before Python 3.10
    (no ``sys.orig_argv``) the command is rebuilt from ``sys.flags``,
    ``__main__.__spec__`` and ``sys.argv``; ``-c`` programs then cannot be
    restarted.
    """
    argv = sys.argv if argv is None else argv
    main = sys.modules.get("__main__") if main is None else main
    if orig_argv is None:
        orig_argv = getattr(sys, "orig_argv", None)
    if getattr(sys, "frozen", False) or not argv or argv[0] in ("", "-"):
        return None
    main_file = getattr(main, "__file__", None)
    if main_file:
        main_file = os.path.abspath(main_file)
        if not os.path.isfile(main_file):
            main_file = None
    if orig_argv:
        args = list(orig_argv[1:])
        # The program's arguments end the command line: args[k] is the
        # script, the module name after -m, or the code after -c.  Only a
        # script that is __main__'s own file is made absolute (not, say, a
        # wrapper that runs another file through runpy).
        k = len(args) - len(argv)
        if k >= 0 and main_file and args[k] == argv[0] and \
                (k == 0 or args[k - 1] not in ("-m", "-c")) and \
                os.path.basename(args[k]) == os.path.basename(main_file):
            args[k] = main_file
        return args
    options = subprocess._args_from_interpreter_flags()
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        name = spec.name
        if name.endswith(".__main__"):      # python -m package
            name = name[:-len(".__main__")]
        return options + ["-m", name] + list(argv[1:])
    if argv[0] != "-c" and main_file:
        return options + [main_file] + list(argv[1:])
    return None


def check_kernels(seed=0):
    """Relative errors of a few BLAS products against a reference computed
    without BLAS.

    Float32 GEMM (67x131 by 131x53, plain and with a transposed operand),
    float32 GEMV, and float64 GEMM, through ``numpy.dot``, against
    ``numpy.einsum(..., optimize=False)`` in float64 (NumPy's own loops, not
    BLAS) on the same values.  About a millisecond.

    Parameters
    ----------
    seed : int
        Seed of the random operands.

    Returns
    -------
    dict
        Product name -> ``(relative error, tolerance)``; the relative error
        is the largest absolute difference over the largest absolute value
        of the reference (NaN when the product is not finite).
    """
    import numpy as np
    rng = np.random.RandomState(seed)
    a = rng.standard_normal((67, 131))
    b = rng.standard_normal((131, 53))
    t = rng.standard_normal((131, 67))      # used as t.T: a transposed GEMM
    v = rng.standard_normal(131)
    cases = [("float32 GEMM", "float32", a, b, "ij,jk->ik"),
             ("float32 GEMM (transposed)", "float32", t.T, b, "ij,jk->ik"),
             ("float32 GEMV", "float32", a, v, "ij,j->i"),
             ("float64 GEMM", "float64", a, b, "ij,jk->ik")]
    errors = {}
    for name, dtype, x, y, subscripts in cases:
        x, y = x.astype(dtype), y.astype(dtype)
        got = np.dot(x, y).astype(np.float64)
        exact = np.einsum(subscripts, x.astype(np.float64),
                          y.astype(np.float64), optimize=False)
        with np.errstate(invalid="ignore", over="ignore"):
            error = float(np.abs(got - exact).max() / np.abs(exact).max())
        errors[name] = (error if np.isfinite(error) else float("nan"),
                        _TOLERANCE[dtype])
    return errors


def select_kernels(argv=None, environ=None, corename=None, flags=None,
                   prog=None):
    """Start this program again with faster OpenBLAS kernels, when useful
    and safe; in the restarted program, check them.

    Call it first thing in a program's ``main`` (before it changes directory,
    starts threads or opens files): it may replace the process with
    ``os.execve(sys.executable, [sys.executable] + argv, env)``, where
    ``env`` is the environment plus ``OPENBLAS_CORETYPE`` and
    ``LSTM_ACCUM_CORETYPE_SELECTED`` (the marker that prevents a loop).  It
    does so only when all hold:

    - ``LSTM_ACCUM_CORETYPE`` is unset, empty or ``auto`` (``off`` opts out);
    - the user set no ``OPENBLAS_CORETYPE`` and no marker is set;
    - :func:`recommend_coretype` names faster kernels (NumPy's OpenBLAS
      chose kernels without AVX2 on a CPU with AVX2+FMA or AVX-512);
    - no MPI launcher started the process (:func:`under_mpi`);
    - the program can be started again (:func:`restart_arguments`; a POSIX
      system, not a frozen executable).

    It writes one line on stderr saying what it selected and how to opt out.
    In the restarted program it runs :func:`check_kernels`; if a product is
    wrong it says so and starts the program once more with OpenBLAS's own
    choice (marker ``rejected``: no further restart, no hint).

    Parameters
    ----------
    argv : list of str, optional
        The interpreter arguments that start this program again (default:
        :func:`restart_arguments`).
    environ : mapping, optional
        Default ``os.environ`` (read only: the new process gets a copy).
    corename, flags : optional
        As for :func:`recommend_coretype` (defaults: NumPy's OpenBLAS, the
        CPU's flags).
    prog : str, optional
        Name that starts the stderr lines (default: the script's name).

    Returns
    -------
    str
        Why it returned (a restart does not return): ``'off'``, ``'user'``
        (``OPENBLAS_CORETYPE`` set by the user), ``'fine'`` (nothing faster
        to select), ``'mpi'``, ``'cannot-restart'``, ``'checked'`` (this is
        the restarted program and the kernels passed the check) or
        ``'rejected'`` (restarted after the selected kernels failed it).

    Raises
    ------
    InputError
        When ``LSTM_ACCUM_CORETYPE`` is neither ``auto`` nor ``off``.
    LstmAccumError
        When the selected kernels fail the check and the program cannot be
        started again without them (it must not train with them).
    """
    environ = os.environ if environ is None else environ
    prog = prog or os.path.basename(sys.argv[0] if sys.argv else "") or \
        "python"
    if _switch(environ) == "off":
        return "off"
    marker = environ.get(MARKER_VARIABLE)
    if marker == REJECTED:
        return "rejected"
    if environ.get("OPENBLAS_CORETYPE"):
        if marker and environ["OPENBLAS_CORETYPE"] == marker:
            return _check_selected(marker, argv, environ, prog)
        return "user"
    if marker:
        return "user"       # a marker without our OPENBLAS_CORETYPE
    if corename is None:
        corename = openblas_corename()
    core = recommend_coretype(corename, flags, environ)
    if core is None:
        return "fine"
    if under_mpi(environ):
        return "mpi"
    if argv is None:
        argv = restart_arguments()
    if argv is None or os.name != "posix" or not sys.executable:
        return "cannot-restart"
    env = dict(environ)
    env["OPENBLAS_CORETYPE"] = core
    env[MARKER_VARIABLE] = core
    _say(prog, "OpenBLAS chose its generic %r kernels on this CPU; "
               "restarting with OPENBLAS_CORETYPE=%s (%s) for faster matrix "
               "products (set %s=off to keep OpenBLAS's choice)"
         % (corename, core, "AVX-512" if core == "SkylakeX" else "AVX2",
            SWITCH_VARIABLE))
    _restart(argv, env)


def _check_selected(core, argv, environ, prog):
    """In the restarted program: are the selected kernels right?"""
    errors = check_kernels()
    wrong = ["%s: relative error %.1e > %.0e" % (name, err, tol)
             for name, (err, tol) in sorted(errors.items())
             if not err <= tol]
    if not wrong:
        actual = openblas_corename()
        if actual is not None and actual.lower() != core.lower():
            _say(prog, "note: OpenBLAS did not switch to its %s kernels "
                       "(it reports %r); set %s=off to skip the restart"
                 % (core, actual, SWITCH_VARIABLE))
        return "checked"
    message = ("OpenBLAS's %s kernels (OPENBLAS_CORETYPE=%s, selected "
               "automatically) compute wrong products on this machine (%s)"
               % (core, core, "; ".join(wrong)))
    if argv is None:
        argv = restart_arguments()
    if argv is None or os.name != "posix" or not sys.executable:
        raise LstmAccumError(message + "; start again with %s=off"
                             % SWITCH_VARIABLE)
    _say(prog, "warning: %s; restarting with OpenBLAS's own choice (set "
               "%s=off to skip this)" % (message, SWITCH_VARIABLE))
    env = dict(environ)
    del env["OPENBLAS_CORETYPE"]
    env[MARKER_VARIABLE] = REJECTED
    _restart(argv, env)


def _say(prog, text):
    sys.stderr.write("%s: %s\n" % (prog, text))


def _restart(argv, env):
    # execve replaces the process without flushing Python's buffers.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable] + list(argv), env)
