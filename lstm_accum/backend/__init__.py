"""The Theano/Lasagne environment: every other module imports them from here.

Theano 1.0.5 and Lasagne 0.1 predate Python 3.11 and NumPy 1.2x. This module
makes them importable and quiet there, and owns every such fix, so the rest of
the package can simply write ``from .backend import theano, T, lasagne``.

What it does, in order, before Theano is imported:

1. Refuses Python 3.12 and newer with a clear message (Theano needs
   ``distutils``, which 3.12 removed).
2. Fills in configuration *defaults* -- ``floatX=float32`` and a working
   ``blas.ldflags`` -- for keys that the user set neither in ``THEANO_FLAGS``
   nor in a ``.theanorc`` file (``THEANORC``).  What the user set always wins.
   ``os.environ`` is left as the user had it.
3. Installs the scan loop: Theano's bundled Cython extension for scan was
   generated for Python <= 3.7 and does not compile on 3.11; see
   :mod:`lstm_accum.scan_ext` for the compiled replacement or the fallback to
   scan's Python loop.
4. Provides ``pkg_resources`` (only ``get_distribution(...).version``, which
   is all Lasagne 0.1 asks of it) when setuptools no longer ships it.

and after:

5. Provides ``theano.tensor.signal.downsample.max_pool_2d`` on top of
   ``theano.tensor.signal.pool.pool_2d`` (removed in Theano 0.9; Lasagne 0.1
   imports it).
6. Silences Theano's "Using NumPy C-API based implementation for BLAS"
   warning when that implementation is the one we chose on purpose.
"""
import configparser
import logging
import os
import sys
import types
import warnings

__all__ = ["theano", "T", "lasagne", "floatX", "user_config_keys",
           "DEFAULT_FLAGS", "describe"]

if sys.version_info >= (3, 12):  # pragma: no cover - exercised only on 3.12+
    raise ImportError(
        "lstm_accum needs Python 3.8 to 3.11: Theano 1.0.5 imports "
        "'distutils', which Python 3.12 removed (PEP 632). Create the "
        "environment with python3.11 (e.g. 'python3.11 -m venv .venv').")

#: Defaults filled in for keys the user did not set.  ``blas.ldflags`` empty
#: means "call NumPy's BLAS through its C API": it works on every machine with
#: a NumPy wheel and no system BLAS, and it is as fast as linking the OpenBLAS
#: that ships inside the SciPy wheel on the LSTM step (see the benchmarks
#: in ``benchmarks/blas.py`` and README's "BLAS" section).
DEFAULT_FLAGS = {
    "floatX": "float32",
    "blas.ldflags": "",
    # -O1 instead of Theano's -O3 cuts g++ time of its many small modules
    # at no measured run-time cost (benchmarks/compile_time.py); our own C
    # operations (lstm_accum.cops) keep -O3.  -g0 drops the debug
    # information Theano asks for with -g (10-25 % of g++'s time per
    # module).  Elementwise fusion stays on: with the fused LSTM and softmax
    # operations it means fewer modules (cold compile of the bucketed id
    # training functions 27 s against 38 s without fusion) and a faster
    # Adagrad apply.
    "gcc.cxxflags": "-O1 -g0",
}


#: The keys of DEFAULT_FLAGS that were applied when Theano was imported
#: (the user set them nowhere); empty when Theano was imported before us.
DEFAULTED = set()


def _normalize_key(key):
    key = key.strip().replace("__", ".")
    if key.startswith("global."):
        key = key[len("global."):]
    return key.lower()


def user_config_keys(environ=None):
    """Theano configuration keys that the user set explicitly.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read ``THEANO_FLAGS`` and ``THEANORC`` from
        (default ``os.environ``).

    Returns
    -------
    set of str
        Lower-cased keys such as ``'floatx'`` or ``'blas.ldflags'``, from
        ``THEANO_FLAGS`` and from every readable ``.theanorc`` file.
    """
    environ = os.environ if environ is None else environ
    keys = set()
    for item in environ.get("THEANO_FLAGS", "").split(","):
        if "=" in item:
            keys.add(_normalize_key(item.split("=", 1)[0]))
    rc_files = [os.path.expanduser(p) for p in
                environ.get("THEANORC", "~/.theanorc").split(os.pathsep)]
    parser = configparser.RawConfigParser()
    try:
        parser.read(rc_files)
    except configparser.Error as err:
        warnings.warn("lstm_accum: could not parse %s (%s); Theano will "
                      "complain about it too" % (rc_files, err))
    for section in parser.sections():
        for option in parser.options(section):
            key = option if section == "global" else section + "." + option
            keys.add(_normalize_key(key))
    return keys


def _defaults_to_apply(environ):
    """The keys of DEFAULT_FLAGS the user set in neither place."""
    user = user_config_keys(environ)
    return [k for k in DEFAULT_FLAGS if _normalize_key(k) not in user]


def _flags_with_defaults(environ):
    defaults = ["%s=%s" % (k, DEFAULT_FLAGS[k])
                for k in _defaults_to_apply(environ)]
    # The user's own flags come last: in THEANO_FLAGS a later key wins, so
    # even a key we failed to recognise stays the user's.
    user_flags = environ.get("THEANO_FLAGS", "")
    return ",".join([f for f in defaults + [user_flags] if f])


def _install_pkg_resources_fallback():
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


class _HideMpi4py(object):
    """Meta-path finder hiding mpi4py while Theano imports.

    ``theano.tensor.io`` does ``from mpi4py import MPI`` at import time, for
    MPI ops nobody uses; with mpi4py installed that initialises MPI (and
    spawns an Open MPI daemon) in every process that imports Theano.
    :mod:`lstm_accum.distributed` imports mpi4py itself when asked to.
    """

    def find_spec(self, name, path=None, target=None):
        if name == "mpi4py" or name.startswith("mpi4py."):
            raise ImportError("hidden by lstm_accum while Theano imports")
        return None


class _OnlyUnexpected(logging.Filter):
    """Drop Theano's BLAS warning about the NumPy C-API implementation."""

    def filter(self, record):
        return "NumPy C-API based implementation" not in record.getMessage()


def _import_theano():
    # Scan imports its loop lazily, at the first scan compilation, so this
    # works even when the user imported Theano before us.
    from . import scan_loop as scan_ext
    scan_ext.prepare()
    if "theano" in sys.modules:
        # Imported before us: its configuration is fixed already; we can
        # only add what comes after import.
        return sys.modules["theano"]
    logging.getLogger("theano.tensor.blas").addFilter(_OnlyUnexpected())
    saved = os.environ.get("THEANO_FLAGS")
    DEFAULTED.update(_defaults_to_apply(os.environ))
    os.environ["THEANO_FLAGS"] = _flags_with_defaults(os.environ)
    hide_mpi = None
    if "mpi4py.MPI" not in sys.modules:
        hide_mpi = _HideMpi4py()
        sys.meta_path.insert(0, hide_mpi)
    try:
        with warnings.catch_warnings():
            # Theano 1.0.5 on NumPy 1.2x / Python 3.11 emits deprecation
            # noise from its own modules; none of it is actionable by users.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            import theano
    finally:
        if hide_mpi is not None:
            sys.meta_path.remove(hide_mpi)
        if saved is None:
            del os.environ["THEANO_FLAGS"]
        else:
            os.environ["THEANO_FLAGS"] = saved
    return theano


def _install_downsample(theano):
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


class _EmptyProps(tuple):
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


def _stable_cop_version(theano):
    """``COp.c_code_cache_version`` (DimShuffle, ...) is ``hash()`` of the
    op's C source, which Python 3 salts per process: a new cache key, and a
    recompilation, in every process. Use sha256 of the same source."""
    import hashlib
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


def _version_ops_without_props(theano):
    empty = _EmptyProps()
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
                    not isinstance(sub.__dict__["__props__"], _EmptyProps):
                sub.__props__ = empty


_install_pkg_resources_fallback()
theano = _import_theano()
import theano.tensor as T  # noqa: E402
_install_downsample(theano)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import lasagne  # noqa: E402
    import lasagne.layers.pool  # noqa: E402,F401  (proves the shim works)
_version_ops_without_props(theano)
_stable_cop_version(theano)

floatX = theano.config.floatX


def describe():
    """One line describing the Theano configuration in use.

    Returns
    -------
    str
        Device, floatX, BLAS and scan loop in use.
    """
    from . import scan_loop as scan_ext
    ldflags = theano.config.blas.ldflags
    return "theano %s, device=%s, floatX=%s, blas=%s, scan loop=%s" % (
        theano.__version__, theano.config.device, theano.config.floatX,
        ldflags or "numpy C-API", scan_ext.status())
