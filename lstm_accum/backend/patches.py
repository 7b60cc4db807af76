"""Fixes that let Theano 1.0.5 and Lasagne 0.1 run on today's Python and NumPy.

Each fix is one function, applied by :mod:`lstm_accum.backend` in order, and
each one changes something only where the running Python, NumPy or
setuptools need it (a name that exists is never replaced).

Before ``import theano``:

* :func:`install_pkg_resources_fallback` -- setuptools >= 70 has no
  ``pkg_resources``; Lasagne 0.1 asks it for its own version.
* :func:`install_numpy_aliases` -- NumPy >= 1.24 removed ``np.bool``,
  ``np.int``, ``np.float``, ``np.complex`` and ``np.object`` (the builtins
  under other names), which Theano 1.0.5 uses.
* :func:`install_numpy_distutils` -- NumPy on Python 3.12 has no
  ``numpy.distutils``; Theano imports it for NumPy's include directory and
  for BLAS detection.
* :func:`hiding_mpi4py` -- ``theano.tensor.io`` would start MPI in every
  process.

After it:

* :func:`import_needing_imp` -- Python 3.12 removed ``imp``, imported by
  ``theano.tests.breakpoint`` (through ``theano.gpuarray``, at the first
  scan).
* :func:`install_downsample` -- ``theano.tensor.signal.downsample`` for
  Lasagne 0.1 (removed in Theano 0.9).
* :func:`version_ops_without_props` and :func:`stable_cop_version` -- keys
  for Theano's compile cache that stay the same from one process to the next.
* :class:`OnlyUnexpected` -- a log filter for a BLAS warning that is about a
  choice made on purpose.
"""
import contextlib
import hashlib
import importlib.util
import logging
import sys
import types
import warnings

__all__ = ["install_pkg_resources_fallback", "install_numpy_aliases",
           "install_numpy_distutils", "providing_imp", "import_needing_imp",
           "hiding_mpi4py",
           "OnlyUnexpected", "install_downsample", "EmptyProps",
           "version_ops_without_props", "stable_cop_version",
           "NUMPY_ALIASES"]

#: The aliases of builtins that NumPy 1.24 removed and Theano 1.0.5 uses.
NUMPY_ALIASES = {"bool": bool, "int": int, "float": float,
                 "complex": complex, "object": object}


def install_pkg_resources_fallback():
    """Provide ``pkg_resources.get_distribution`` when setuptools has none.

    Only ``get_distribution(name).version`` (and ``DistributionNotFound``),
    which is all Lasagne 0.1 asks of it, from :mod:`importlib.metadata`.
    Nothing is done when ``pkg_resources`` imports.
    """
    try:
        import pkg_resources  # noqa: F401  (setuptools < 70 still ships it)
        return
    except ImportError:
        pass
    from importlib import metadata

    module = types.ModuleType("pkg_resources")

    class DistributionNotFound(Exception):
        pass

    def get_distribution(name):
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise DistributionNotFound(name)
        return types.SimpleNamespace(project_name=name, version=version)

    module.DistributionNotFound = DistributionNotFound
    module.get_distribution = get_distribution
    module.__lstm_accum_fallback__ = True
    sys.modules["pkg_resources"] = module


def install_numpy_aliases(numpy_module=None):
    """Give NumPy back the aliases of builtins it removed in 1.24.

    Parameters
    ----------
    numpy_module : module, optional
        Default: :mod:`numpy`.

    Returns
    -------
    list of str
        The names added (empty on NumPy < 1.24, where they still exist).
    """
    if numpy_module is None:
        import numpy as numpy_module
    added = []
    for name, builtin in NUMPY_ALIASES.items():
        with warnings.catch_warnings():
            # NumPy 1.20-1.23: present, with a DeprecationWarning.
            warnings.simplefilter("ignore")
            present = hasattr(numpy_module, name)
        if not present:
            setattr(numpy_module, name, builtin)
            added.append(name)
    return added


def install_numpy_distutils():
    """Provide the corner of ``numpy.distutils`` Theano uses, where it is gone.

    NumPy builds for Python 3.12 ship no ``numpy.distutils``.  Theano
    1.0.5 imports it at ``import theano`` and calls
    ``misc_util.get_numpy_include_dirs()`` for every C module, and asks
    ``system_info.get_info('blas_opt')`` to detect a BLAS when
    ``blas.ldflags`` is set nowhere (our default sets it).  The stand-in
    answers the first with ``[numpy.get_include()]``, what NumPy's own
    function returns outside NumPy's build, and the second with "no BLAS
    information" (``{}``), after which Theano tries its usual fallbacks.

    Returns
    -------
    bool
        True if the stand-in was installed, False when NumPy has its own.
    """
    import numpy
    if "numpy.distutils" in sys.modules or \
            importlib.util.find_spec("numpy.distutils") is not None:
        return False
    package = types.ModuleType("numpy.distutils")
    package.__doc__ = ("Stand-in from lstm_accum.backend for Theano 1.0.5: "
                       "NumPy on this Python has no numpy.distutils.")
    package.__path__ = []
    package.__lstm_accum_fallback__ = True
    misc_util = types.ModuleType("numpy.distutils.misc_util")
    misc_util.get_numpy_include_dirs = lambda: [numpy.get_include()]
    system_info = types.ModuleType("numpy.distutils.system_info")
    system_info.system_info = types.SimpleNamespace(verbosity=0)
    system_info.get_info = lambda name, notfound_action=0: {}
    for module in (misc_util, system_info):
        short = module.__name__.rsplit(".", 1)[1]
        setattr(package, short, module)
        sys.modules[module.__name__] = module
    sys.modules["numpy.distutils"] = package
    numpy.distutils = package
    return True


def _find_module(name, path=None):
    """``imp.find_module``'s answer to "is it there?" (all Theano asks)."""
    spec = importlib.util.find_spec(name) if path is None else None
    if spec is None:
        raise ImportError("No module named %r" % name)
    return (None, spec.origin, ("", "", 0))


@contextlib.contextmanager
def providing_imp():
    """Within the block, ``import imp`` works, on Pythons that removed it.

    ``theano/tests/breakpoint.py`` does ``import imp`` (removed in Python
    3.12) and only calls ``imp.find_module`` to see whether pudb or ipdb
    is installed.  The stand-in is in :data:`sys.modules` for the block
    only: modules imported meanwhile keep it, anyone else's ``import imp``
    fails as Python intends.
    """
    if importlib.util.find_spec("imp") is not None:
        yield
        return
    module = types.ModuleType("imp")
    module.__doc__ = ("Stand-in from lstm_accum.backend for Theano 1.0.5's "
                      "theano.tests.breakpoint (Python 3.12 removed imp).")
    module.find_module = _find_module
    sys.modules["imp"] = module
    try:
        yield
    finally:
        if sys.modules.get("imp") is module:
            del sys.modules["imp"]


def import_needing_imp(name):
    """Import module ``name``, which does ``import imp``, if ``imp`` is gone.

    ``theano.gpuarray``, imported by ``theano.scan`` at its first use,
    imports ``theano.tests.breakpoint``, which imports ``imp``.  Importing
    that module now, inside :func:`providing_imp`, leaves it in
    :data:`sys.modules` for later.  Where ``imp`` exists nothing is
    imported: it is imported where Theano asks for it, as before.

    Parameters
    ----------
    name : str
        The module's full name.

    Returns
    -------
    module or None
        The module, or None when nothing needed doing.
    """
    if importlib.util.find_spec("imp") is not None:
        return None
    with providing_imp():
        return importlib.import_module(name)


class HideMpi4py(object):
    """Meta-path finder hiding mpi4py while Theano imports.

    ``theano.tensor.io`` does ``from mpi4py import MPI`` at import time, for
    MPI ops nobody uses; with mpi4py installed that initialises MPI (and
    spawns an Open MPI daemon) in every process that imports Theano.
    :mod:`lstm_accum.accumulation` imports mpi4py itself when asked to.
    """

    def find_spec(self, name, path=None, target=None):
        if name == "mpi4py" or name.startswith("mpi4py."):
            raise ImportError("hidden by lstm_accum while Theano imports")
        return None


@contextlib.contextmanager
def hiding_mpi4py():
    """Within the block, mpi4py cannot be imported (unless MPI is running)."""
    if "mpi4py.MPI" in sys.modules:
        yield
        return
    finder = HideMpi4py()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


class OnlyUnexpected(logging.Filter):
    """Drop Theano's BLAS warning about the NumPy C-API implementation."""

    def filter(self, record):
        return "NumPy C-API based implementation" not in record.getMessage()


def install_downsample(theano):
    """Provide ``theano.tensor.signal.downsample`` (Theano 0.8) for Lasagne.

    Parameters
    ----------
    theano : module
        The imported :mod:`theano`.
    """
    from theano.tensor.signal import pool

    module = types.ModuleType("theano.tensor.signal.downsample")
    module.__doc__ = ("Compatibility module for Lasagne 0.1, provided by "
                      "lstm_accum on top of theano.tensor.signal.pool.")

    def max_pool_2d(input, ds, ignore_border=None, st=None, padding=(0, 0),
                    mode="max"):
        """Theano 0.8's ``max_pool_2d``, implemented with ``pool_2d``."""
        if ignore_border is None:
            ignore_border = False  # Theano 0.8's default
        return pool.pool_2d(input, ws=tuple(ds), ignore_border=ignore_border,
                            stride=None if st is None else tuple(st),
                            pad=tuple(padding), mode=mode)

    module.max_pool_2d = max_pool_2d
    module.max_pool_2d_same_size = pool.max_pool_2d_same_size
    module.DownsampleFactorMax = pool.Pool
    sys.modules["theano.tensor.signal.downsample"] = module
    theano.tensor.signal.downsample = module


class EmptyProps(tuple):
    """``()`` that is true: Theano 1.0.5's CLinker puts each op's
    ``__props__`` into the compile-cache version and treats any false entry
    as "unversioned", so every graph holding an op without properties
    (Alloc, Softmax, DeepCopyOp, AdvancedSubtensor1, ...) was compiled again
    in every process and deleted at exit. Equal to, hashed, printed and
    pickled as ``()``, so op equality and cache keys on disk are unchanged."""

    def __bool__(self):
        return True

    def __reduce__(self):
        return (tuple, ((),))


def stable_cop_version(theano):
    """``COp.c_code_cache_version`` (DimShuffle, ...) is ``hash()`` of the
    op's C source, which Python 3 salts per process: a new cache key, and a
    recompilation, in every process. Use sha256 of the same source.

    Parameters
    ----------
    theano : module
        The imported :mod:`theano`.
    """
    cop = theano.gof.op.COp
    if hasattr(cop.c_code_cache_version, "__wrapped__"):
        return
    original = cop.c_code_cache_version

    def c_code_cache_version(self):
        digest = hashlib.sha256(
            "\0".join(self.func_codes).encode("utf-8")).hexdigest()
        version = (int(digest[:15], 16),)
        if hasattr(self, "params_type"):
            version += (self.params_type.c_code_cache_version(),)
        return version

    c_code_cache_version.__wrapped__ = original
    cop.c_code_cache_version = c_code_cache_version


def version_ops_without_props(theano):
    """Give every op class with ``__props__ == ()`` an :class:`EmptyProps`.

    Parameters
    ----------
    theano : module
        The imported :mod:`theano`.
    """
    empty = EmptyProps()
    pending = [theano.gof.op.PureOp]
    seen = set()
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub in seen:
                continue
            seen.add(sub)
            pending.append(sub)
            if sub.__dict__.get("__props__", None) == () and \
                    not isinstance(sub.__dict__["__props__"], EmptyProps):
                sub.__props__ = empty
