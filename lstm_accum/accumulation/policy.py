"""What to do after a window: the bad-window rule.

The compiled ``apply`` already refuses a non-finite window on the device
(parameters and optimizer state stay bit-identical; non-finite samples were
never added). What is left is host-side and pluggable, in the spirit of
``optax.MultiSteps``' skip rule: a policy sees every
:class:`~lstm_accum.accumulation.accumulator.ApplyResult` and decides
whether to log, count or stop. A policy is any object with

``bad_windows``
    an int (saved in the accumulator's state as ``<name>/bad_windows``);
``record(result, name)``
    called after every ``apply``; may raise to stop training.
"""
import logging

from ..exceptions import NonFiniteError
from .inputs import check_max_bad_windows

__all__ = ["ConsecutiveBadWindows"]

logger = logging.getLogger("lstm_accum")


class ConsecutiveBadWindows(object):
    """Stop after ``max_bad_windows`` consecutive non-finite windows.

    A good window resets the count and logs a warning if it skipped
    samples; a bad one logs a warning and adds one to the count.

    Parameters
    ----------
    max_bad_windows : int
        ``>= 1``; settable later (it is read at each bad window).

    Raises
    ------
    InputError
        For a ``max_bad_windows`` below 1 or not an int.

    Examples
    --------
    >>> policy = ConsecutiveBadWindows(3)
    >>> policy.bad_windows
    0
    """

    def __init__(self, max_bad_windows=5):
        self.max_bad_windows = check_max_bad_windows(max_bad_windows)
        self.bad_windows = 0

    def record(self, result, name="accum"):
        """Count and log ``result``; raise after too many bad windows.

        Parameters
        ----------
        result : ApplyResult
        name : str
            The accumulator's name, for the log.

        Raises
        ------
        NonFiniteError
            When this is the ``max_bad_windows``-th consecutive bad window.
        """
        if result.applied:
            self.bad_windows = 0
            if result.skipped:
                logger.warning("%s: skipped %d non-finite samples in a window "
                               "of %d", name, result.skipped,
                               result.samples + result.skipped)
            return
        self.bad_windows += 1
        logger.warning("%s: non-finite window (%d good samples, %d skipped, "
                       "gradient norm %s): parameters and optimizer state "
                       "left unchanged (%d consecutive)", name,
                       result.samples, result.skipped, result.grad_norm,
                       self.bad_windows)
        if self.bad_windows >= self.max_bad_windows:
            raise NonFiniteError(
                "%d consecutive windows had non-finite gradients or losses "
                "(limit max_bad_windows=%d); lower the learning rate, set "
                "max_norm, or check the data" %
                (self.bad_windows, self.max_bad_windows))
