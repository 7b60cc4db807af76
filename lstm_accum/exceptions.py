"""The exceptions lstm_accum raises on purpose.

Every error a user can cause by their input is an :class:`InputError` (a
``ValueError``) whose message says what was given, what was expected and how
to fix it; the command line prints it as one line and exits with status 2.
"""

__all__ = ["LstmAccumError", "InputError", "NonFiniteError",
           "IncompatibleStateError", "CheckpointError"]


class LstmAccumError(Exception):
    """Base class of every error raised on purpose by lstm_accum."""


class InputError(LstmAccumError, ValueError):
    """Bad input from the user: a file, an argument, an array."""


class NonFiniteError(LstmAccumError, FloatingPointError):
    """Too many consecutive windows whose gradients were NaN or Inf."""


class IncompatibleStateError(LstmAccumError, ValueError):
    """Saved state that does not fit the model, vocabulary or accumulator."""


class CheckpointError(LstmAccumError, IOError):
    """A checkpoint that cannot be written, or read back intact."""
