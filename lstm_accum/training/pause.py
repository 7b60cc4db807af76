"""A test hook: sleep at a named point of a run, so a test can kill it there.

Nothing here runs unless the environment asks for it; the kill-and-resume
tests (``tests/test_kill_resume.py``) use it to land a ``kill -9`` inside a
window, a validation or a checkpoint write.
"""
import os
import sys
import time

__all__ = ["pause_point", "PAUSE_ENV", "PAUSE_SECONDS_ENV"]

#: ``point@n[,point@n]``: pause at the n-th arrival (1-based) at each point.
PAUSE_ENV = "LSTM_ACCUM_TEST_PAUSE"
#: How long to sleep there, in seconds (default 120).
PAUSE_SECONDS_ENV = "LSTM_ACCUM_TEST_PAUSE_SECONDS"

_counts = {}


def pause_point(point):
    """Sleep at a named point when the test hook asks for it.

    The environment variable ``LSTM_ACCUM_TEST_PAUSE=point@n[,point@n]``
    makes the ``n``-th arrival (1-based) at ``point`` print
    ``LSTM_ACCUM_PAUSED point n`` on stderr and sleep for
    ``LSTM_ACCUM_TEST_PAUSE_SECONDS`` (default 120) seconds, so that a test
    can kill the process exactly there. Without the variable it does nothing.

    Parameters
    ----------
    point : str
        One of ``'window'``, ``'validation'``, ``'checkpoint-write'``.
    """
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    _counts[point] = _counts.get(point, 0) + 1
    for item in spec.split(","):
        name, _, nth = item.strip().partition("@")
        if name == point and int(nth or 1) == _counts[point]:
            sys.stderr.write("LSTM_ACCUM_PAUSED %s %d\n"
                             % (point, _counts[point]))
            sys.stderr.flush()
            time.sleep(float(os.environ.get(PAUSE_SECONDS_ENV, "120")))
