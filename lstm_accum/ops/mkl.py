"""MKL for the team's matrix products, when the ``mkl`` package is installed.

The team (:mod:`.team`) multiplies the large float32 products of training
(the output layer's three, the recurrent weights' gradient) by calling a
BLAS ``sgemm`` on one thread from each of its threads.  NumPy's OpenBLAS
is always there; Intel's MKL (PyPI's ``mkl`` package, which the install
pulls in on Linux x86-64) runs these shapes faster -- it packs its operands
with less work and writes ``beta = 0`` results without zeroing them first.

MKL is loaded once, privately (``RTLD_LOCAL``: its symbols do not clash
with the OpenBLAS builds of NumPy and SciPy), before anything calls it,
and set up for the team:

* the sequential threading layer: each call runs on the thread that makes
  it, as the team needs, and MKL starts no threads of its own;
* conditional numerical reproducibility, strict (``MKL_CBWR_AUTO |
  MKL_CBWR_STRICT``): every element's sum has the same order whatever the
  share of rows or columns a thread multiplies and however the arrays are
  aligned, so the team's results do not depend on the number of threads.

The C code (``c_code/team_blas.c``) uses MKL only when it finds it loaded
with exactly these settings; otherwise it uses NumPy's OpenBLAS, as it does
when this module declines.  It declines when ``mkl`` is not installed, when
an MKL library is already loaded by someone else (its settings are not
ours to change), or when :data:`SWITCH_VARIABLE` is ``openblas``.  By
default (``auto``) it also declines on CPUs that are not Intel's: there MKL
runs these products through a generic code path, slower than OpenBLAS's
kernels for the CPU; ``mkl`` asks for MKL on any CPU (its strict mode then
keeps the team's results independent of the number of threads, which
OpenBLAS's Haswell and Zen kernels do not).  Nothing here changes the
environment.
"""
import ctypes
import functools
import os
from importlib import metadata

from ..backend.openblas import cpu_vendor
from ..exceptions import InputError

__all__ = ["load_mkl", "mkl_library", "SWITCH_VARIABLE"]

#: The user's switch: ``auto`` (the default: MKL when installed and the
#: CPU is Intel's), ``mkl`` (MKL on any CPU; an error if it cannot be had)
#: or ``openblas`` (NumPy's OpenBLAS runs the team's products).
SWITCH_VARIABLE = "LSTM_ACCUM_BLAS"
_SWITCH_VALUES = ("auto", "mkl", "openblas")
# The CPU vendor for which ``auto`` chooses MKL (/proc/cpuinfo's vendor_id).
_MKL_VENDOR = "GenuineIntel"
# MKL's constants (mkl_service.h, mkl_cbwr.h).
_THREADING_SEQUENTIAL = 1
_CBWR_AUTO = 2
_CBWR_STRICT = 0x10000
_CBWR_SUCCESS = 0
# The library whose file names libmkl_rt (the single dynamic library).
_RUNTIME = "libmkl_rt.so"


def _installed_runtime():
    """Path of the ``mkl`` distribution's ``libmkl_rt.so*``, or None."""
    try:
        files = metadata.distribution("mkl").files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if os.path.basename(str(f)).startswith(_RUNTIME):
            path = os.path.realpath(f.locate())
            if os.path.exists(path):
                return path
    return None


def _loaded_elsewhere(maps_path="/proc/self/maps"):
    """True when some MKL library is already mapped into this process."""
    try:
        with open(maps_path) as maps:
            return any("libmkl_" in line for line in maps)
    except OSError:
        return False


def _switch():
    """The switch's value, checked."""
    switch = os.environ.get(SWITCH_VARIABLE, "auto").strip().lower() or "auto"
    if switch not in _SWITCH_VALUES:
        raise InputError("%s=%r: expected one of %s (unset means auto)"
                         % (SWITCH_VARIABLE, os.environ[SWITCH_VARIABLE],
                            ", ".join(_SWITCH_VALUES)))
    return switch


@functools.lru_cache(maxsize=None)
def load_mkl():
    """Load MKL for the team's products, once per process.

    Returns
    -------
    (str or None, str or None)
        ``(path, None)`` when MKL is loaded, sequential and strictly
        reproducible; ``(None, why)`` when the team keeps NumPy's
        OpenBLAS, with the reason (e.g. ``'the mkl package is not
        installed'``).

    Raises
    ------
    InputError
        If :data:`SWITCH_VARIABLE` holds a value other than ``auto``,
        ``mkl`` or ``openblas``, or is ``mkl`` and MKL cannot be loaded as
        the team needs (the message says why and what to do).
    """
    switch = _switch()
    if switch == "openblas":
        return None, "%s=openblas" % SWITCH_VARIABLE
    vendor = cpu_vendor()
    if switch == "auto" and vendor != _MKL_VENDOR:
        return None, ("%s=auto uses MKL on %s CPUs only, and this one is "
                      "%s (%s=mkl uses MKL here)" % (
                          SWITCH_VARIABLE, _MKL_VENDOR,
                          vendor or "of an unknown vendor", SWITCH_VARIABLE))
    path = _installed_runtime()
    if path is None:
        why = "the mkl package is not installed"
        fix = "pip install mkl, or "
    else:
        path, why = _load(path)
        fix = ""
    if why and switch == "mkl":
        raise InputError("%s=mkl, but %s: %sunset %s (or set it to openblas) "
                         "to keep NumPy's OpenBLAS" % (
                             SWITCH_VARIABLE, why, fix, SWITCH_VARIABLE))
    return path, why


def _load(path):
    """Load the MKL at `path` as the team needs: ``(path, None)``, or
    ``(None, why)`` when it is not ours to set up or refuses."""
    if _loaded_elsewhere():
        return None, ("an MKL library is already loaded in this process: "
                      "its settings are not ours to change")
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL)
    except OSError as err:
        return None, "%s does not load: %s" % (path, err)
    lib.MKL_Set_Threading_Layer(_THREADING_SEQUENTIAL)
    mode = _CBWR_AUTO | _CBWR_STRICT
    if lib.MKL_CBWR_Set(mode) != _CBWR_SUCCESS or \
            lib.MKL_CBWR_Get(-1) != mode or lib.MKL_Get_Max_Threads() != 1:
        return None, "MKL refused the sequential, strictly reproducible mode"
    return path, None


def mkl_library():
    """Path of the MKL that runs the team's products, or None (see
    :func:`load_mkl`)."""
    return load_mkl()[0]
