"""lstm_accum: gradient accumulation for Theano/Lasagne language models."""
from . import backend  # noqa: F401  (must come first: it imports Theano)

__version__ = "0.1.0"
