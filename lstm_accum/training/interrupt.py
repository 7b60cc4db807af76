"""Ctrl-C during training: the first one asks the loop to stop at the next
safe point (it then saves a checkpoint), a second one aborts at once."""
import signal

__all__ = ["SigintGuard"]

MESSAGE = ("\ninterrupt: finishing the current step and saving a "
           "checkpoint (Ctrl-C again to abort at once)")


class SigintGuard(object):
    """A context manager that turns the first SIGINT into a flag.

    Inside the ``with`` block the first Ctrl-C sets :attr:`interrupted` and
    logs one line; the next raises ``KeyboardInterrupt``. On exit the
    previous handler is put back. Outside the main thread (where Python
    cannot set handlers) it does nothing and Ctrl-C keeps its default.

    Parameters
    ----------
    log : callable
        Receives the line printed at the first Ctrl-C.

    Examples
    --------
    >>> with SigintGuard(print) as guard:
    ...     stop = guard.interrupted
    >>> stop
    False
    """

    def __init__(self, log):
        self.log = log
        self.interrupted = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        self.log(MESSAGE)

    def __enter__(self):
        self.interrupted = False
        try:
            self._previous = [signal.signal(signal.SIGINT, self._handler)]
        except ValueError:   # not the main thread: keep Python's default
            self._previous = None
        return self

    def __exit__(self, *exc_info):
        if self._previous is not None:
            # None means a handler not set from Python: back to the default
            previous = self._previous[0]
            signal.signal(signal.SIGINT, previous if previous is not None
                          else signal.default_int_handler)
            self._previous = None
        return False
