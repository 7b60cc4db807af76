"""Which OpenBLAS kernels run our matrix products, and a hint when they are slow.

OpenBLAS picks its kernels for the CPU when it is loaded.  Some releases
(0.3.20 in NumPy < 1.24's wheels, Debian 12's 0.3.21) do not recognise some
newer CPUs and fall back to generic SSE3 kernels (reported as "Prescott"),
several times slower than the AVX2/AVX-512 kernels the CPU can run.  The
environment variable ``OPENBLAS_CORETYPE`` (read when OpenBLAS loads, i.e.
before ``import numpy``) selects the kernels by hand.

This module only *reports*: it never sets ``OPENBLAS_CORETYPE`` (the user's
environment is the user's).  :func:`coretype_hint` gives the one line a
command-line tool can print.
"""
import ctypes
import os

__all__ = ["loaded_openblas", "openblas_corename", "cpu_flags",
           "recommend_coretype", "coretype_hint"]

# OpenBLAS core names (lower case) whose kernels use AVX2 (and FMA).
AVX2_CORES = frozenset(["haswell", "zen", "skylakex", "cooperlake",
                        "sapphirerapids", "excavator"])
# CPU flags that OpenBLAS's SkylakeX kernels need.
_AVX512 = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


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


def cpu_flags(cpuinfo_path="/proc/cpuinfo"):
    """The CPU's feature flags (Linux), e.g. ``{'avx2', 'fma', ...}``.

    Returns
    -------
    frozenset of str
        Empty when they cannot be read.
    """
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


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
        or when the user already set ``OPENBLAS_CORETYPE``.
    """
    environ = os.environ if environ is None else environ
    if environ.get("OPENBLAS_CORETYPE"):
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

    Parameters are those of :func:`recommend_coretype`.

    Returns
    -------
    str or None
    """
    if corename is None:
        corename = openblas_corename()
    core = recommend_coretype(corename, flags, environ)
    if core is None:
        return None
    return ("hint: OpenBLAS runs its generic %r kernels on this CPU, which "
            "supports faster ones; start with OPENBLAS_CORETYPE=%s in the "
            "environment for faster matrix products" % (corename, core))
