"""The version of lstm_accum (one place: setup.py and checkpoints read it)."""
__version__ = "0.1.0"
