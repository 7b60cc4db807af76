"""The Theano environment: Theano 1.0.5 and Lasagne 0.1, set up and imported.

This part owns everything that must happen around ``import theano``: the
configuration defaults that never override the user (:mod:`.flags`), the
fixes that make Theano and Lasagne run on Python 3.11 and 3.12 with NumPy
1.2x (:mod:`.patches`), the compiled scan loop (:mod:`.scan_loop`),
OpenBLAS's kernel choice (:mod:`.openblas`), glibc's malloc thresholds
(:mod:`.allocator`: freed memory kept for the next call, unless the user set
malloc's own) and the fixes of Theano's GPU backend for devices that are not
CUDA (:mod:`.opencl`); it exports
``theano``, ``T``, ``lasagne``, ``floatX``, :func:`describe` and
:func:`transfers` (what a compiled function moves between the host and the
device), so the rest of the package writes ``from ..backend import theano,
T, lasagne``.  It may import only
the base modules of the package (``exceptions``, ``checks``, ``files``,
``checkpoint``), never a part above it; its own modules do not import this
``__init__`` (it imports them, in the order: refuse an unsupported Python,
prepare the scan loop, patch, import Theano with the defaults, patch).
"""
import logging
import sys
import warnings

if sys.version_info >= (3, 13):  # pragma: no cover - exercised only on 3.13+
    raise ImportError(
        "lstm_accum needs Python 3.11 or 3.12 (this is %d.%d): NumPy 1.26, "
        "the last NumPy whose C API Theano 1.0.5's C code builds against, "
        "has no wheels for Python 3.13 or newer." % sys.version_info[:2])

from . import allocator, flags, opencl, patches, scan_loop  # noqa: E402
from .flags import DEFAULT_FLAGS, DEFAULTED, user_config_keys  # noqa: E402
from .patches import EmptyProps  # noqa: E402
from .transfers import Transfer, transfers, unexpected_transfers  # noqa: E402

__all__ = ["theano", "T", "lasagne", "floatX", "user_config_keys",
           "DEFAULT_FLAGS", "DEFAULTED", "EmptyProps", "describe",
           "Transfer", "transfers", "unexpected_transfers"]


def _import_theano():
    # Scan imports its loop lazily, at the first scan compilation, so this
    # works even when the user imported Theano before us.
    scan_loop.prepare()
    if "theano" in sys.modules:
        # Imported before us: its configuration is fixed already; we can
        # only add what comes after import.
        return sys.modules["theano"]
    logging.getLogger("theano.tensor.blas").addFilter(patches.OnlyUnexpected())
    patches.install_numpy_aliases()
    patches.install_numpy_distutils()
    with flags.defaults_in_environ(), patches.hiding_mpi4py(), \
            warnings.catch_warnings():
        # Theano 1.0.5 on NumPy 1.2x / Python 3.11+ emits deprecation
        # noise from its own modules; none of it is actionable by users.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        import theano
        patches.import_needing_imp("theano.tests.breakpoint")
    return theano


allocator.keep_freed_memory()
patches.install_pkg_resources_fallback()
theano = _import_theano()
import theano.tensor as T  # noqa: E402
patches.install_downsample(theano)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import lasagne  # noqa: E402
    import lasagne.layers.pool  # noqa: E402,F401  (proves the shim works)
patches.version_ops_without_props(theano)
patches.stable_cop_version(theano)
opencl.install(theano)

floatX = theano.config.floatX


def describe():
    """One line describing the Theano configuration in use.

    Returns
    -------
    str
        Device, floatX, BLAS and scan loop in use.
    """
    ldflags = theano.config.blas.ldflags
    return "theano %s, device=%s, floatX=%s, blas=%s, scan loop=%s" % (
        theano.__version__, theano.config.device, theano.config.floatX,
        ldflags or "numpy C-API", scan_loop.status())
