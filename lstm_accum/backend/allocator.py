"""glibc's malloc keeps the memory of one compiled call for the next.

Every call of a compiled Theano function allocates its intermediate
arrays -- logits, softmax, gradients of a few MB each -- and frees them
before the next call, whose shapes differ (one bucket length after
another).  glibc's malloc returns such blocks to the operating system:
those above its mmap threshold on every ``free``, and the top of the heap
whenever more than its trim threshold is free there.  The next call then
takes new pages, and the kernel zeroes each one on first touch (hundreds of
page faults per call, system time that is a tenth of a training step).

:func:`keep_freed_memory` makes every block come from the heap -- no
block is mapped on its own (``M_MMAP_MAX`` 0), so neither those up to
glibc's largest mmap threshold (32 MB) nor the larger arrays of a large
model (the joined recurrent weights and their gradient are 268 MB each at
H=4096) -- and keeps up to 1 GB of freed memory at the top of the heap:
the next call reuses it.  The process's resident memory is then its peak
so far (what one call needs), as before between calls, not more: nothing
grows with the number of calls.  (Should the heap not be able to grow,
glibc still maps memory for it.)

It is a default that never overrides the user: when any of glibc's malloc
settings is in the environment (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_`` or
``glibc.malloc`` in ``GLIBC_TUNABLES``), nothing is changed.  Other C
libraries (musl, macOS) are left alone.  ``lstm_accum.backend`` calls it on
import; the environment is not changed.
"""
import ctypes
import ctypes.util
import os

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "MMAP_MAX",
           "TRIM_THRESHOLD", "USER_VARIABLES"]

#: Blocks from this size up would be mapped on their own (and unmapped on
#: free), were mapping not off (MMAP_MAX): glibc's largest allowed value on
#: 64-bit systems.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Blocks mapped on their own at a time: none, whatever their size.
MMAP_MAX = 0
#: Free memory at the top of the heap kept before any is returned.
TRIM_THRESHOLD = 1024 * 1024 * 1024
#: The environment variables through which a user sets glibc's malloc.
USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                  "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
# mallopt's parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4

_state = {"applied": None}


def _user_set(environ):
    return (any(name in environ for name in USER_VARIABLES)
            or "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""))


def keep_freed_memory(environ=None):
    """Keep freed memory in the process for the next call (see the module).

    Parameters
    ----------
    environ : mapping, optional
        Where to look for the user's own malloc settings (default
        ``os.environ``).

    Returns
    -------
    bool
        True when glibc's thresholds are (now) set by us; False when the
        user set malloc in the environment, or the C library is not glibc.
    """
    environ = os.environ if environ is None else environ
    if _state["applied"] is not None:
        return _state["applied"]
    applied = False
    if not _user_set(environ):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
            gnu = libc.gnu_get_libc_version     # glibc only
        except (OSError, AttributeError):
            mallopt = gnu = None
        if mallopt is not None and gnu is not None:
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
                bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and \
                bool(mallopt(_M_MMAP_MAX, MMAP_MAX))
    _state["applied"] = applied
    return applied
