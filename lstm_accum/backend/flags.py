"""Theano configuration defaults that never override the user.

Theano reads its configuration once, at ``import theano``, from
``THEANO_FLAGS`` and ``.theanorc`` files (``THEANORC``).  This module fills
in :data:`DEFAULT_FLAGS` for the keys the user set in neither place, for the
duration of that import only: what the user set always wins, and
``os.environ`` is left as the user had it.
"""
import configparser
import contextlib
import os
import warnings

__all__ = ["DEFAULT_FLAGS", "DEFAULTED", "user_config_keys",
           "defaults_to_apply", "flags_with_defaults", "defaults_in_environ"]

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
    # operations (lstm_accum.ops) keep -O3.  -g0 drops the debug
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


def defaults_to_apply(environ):
    """The keys of :data:`DEFAULT_FLAGS` the user set in neither place.

    Parameters
    ----------
    environ : mapping
        The environment to read ``THEANO_FLAGS`` and ``THEANORC`` from.

    Returns
    -------
    list of str
    """
    user = user_config_keys(environ)
    return [k for k in DEFAULT_FLAGS if _normalize_key(k) not in user]


def flags_with_defaults(environ):
    """``THEANO_FLAGS`` with the defaults the user did not set put first:
    the value to give it while Theano imports (``environ`` as for
    :func:`defaults_to_apply`)."""
    defaults = ["%s=%s" % (k, DEFAULT_FLAGS[k])
                for k in defaults_to_apply(environ)]
    # The user's own flags come last: in THEANO_FLAGS a later key wins, so
    # even a key we failed to recognise stays the user's.
    user_flags = environ.get("THEANO_FLAGS", "")
    return ",".join([f for f in defaults + [user_flags] if f])


@contextlib.contextmanager
def defaults_in_environ():
    """Within the block, ``THEANO_FLAGS`` carries the defaults; restored after.

    Records the keys applied in :data:`DEFAULTED`.  Use it around
    ``import theano`` only: Theano reads its flags once, at import.
    """
    saved = os.environ.get("THEANO_FLAGS")
    DEFAULTED.update(defaults_to_apply(os.environ))
    os.environ["THEANO_FLAGS"] = flags_with_defaults(os.environ)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["THEANO_FLAGS"]
        else:
            os.environ["THEANO_FLAGS"] = saved
