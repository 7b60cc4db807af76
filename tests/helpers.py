"""Helpers shared by the test modules (imported as ``helpers``: pytest puts
this directory on ``sys.path``)."""
import contextlib

from lstm_accum.backend import theano


@contextlib.contextmanager
def float64():
    """Build and compile in float64 (Lasagne reads floatX at build time)."""
    saved = theano.config.floatX
    theano.config.floatX = "float64"
    try:
        yield
    finally:
        theano.config.floatX = saved
