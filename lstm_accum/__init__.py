"""lstm_accum: gradient accumulation for Theano/Lasagne language models.

Run N variable-length samples, then update the parameters once with the
average gradient: summed on the device, no masks needed, memory constant in N.

The public API:

- :class:`GradientAccumulator` -- the two compiled functions (``accumulate``,
  ``apply``) around any Lasagne network and update rule;
- :func:`build_model` -- the LSTM language models (one-hot or id input, per
  sentence, equal-length buckets or masked batches, GRU, stacked, custom);
  on the CPU their LSTM layers run as one fused C operation per layer
  (:class:`FusedLSTMLayer`, :func:`fused_lstm`) instead of ``theano.scan``;
- the data pipeline (:class:`Vocabulary`, :func:`prepare_corpus`,
  :func:`plan_epoch`, :func:`make_batch`, the ``iterate_*`` generators);
- evaluation and generation (:func:`perplexity`, :func:`unigram_perplexity`,
  :func:`sample_sentences`);
- training (:class:`TrainConfig`, :func:`train`) and the ``lstm-accum``
  command line.
"""
from . import backend  # noqa: F401  (must come first: it imports Theano)
from .exceptions import (LstmAccumError, InputError, NonFiniteError,
                         IncompatibleStateError, CheckpointError)
from .accumulation.accumulator import GradientAccumulator, AccumulateResult, ApplyResult
from .data.vocabulary import Vocabulary
from .data import (EncodedCorpus, ReadStats, tokenize, load_text,
                   count_words, encode_file, prepare_corpus, split_corpus)
from .data.batches import (plan_epoch, make_batch, iterate_sentences,
                        iterate_buckets, iterate_padded)
from .models import build_model, LanguageModel, FusedLSTMLayer, IdLSTMLayer
from .ops.fused_lstm import fused_lstm
from .evaluation import (perplexity, score_corpus, unigram_perplexity,
                         sample_sentences)
from .checkpoint import save_checkpoint, load_checkpoint
from .training import TrainConfig, Trainer, train
from .models import load_model
from .accumulation import Distributed, DistributedAccumulator, shard_indices

from .version import __version__  # noqa: F401

__all__ = [
    "GradientAccumulator", "AccumulateResult", "ApplyResult",
    "Vocabulary", "EncodedCorpus", "ReadStats", "tokenize", "load_text",
    "count_words", "encode_file", "prepare_corpus", "split_corpus",
    "plan_epoch", "make_batch", "iterate_sentences", "iterate_buckets",
    "iterate_padded",
    "build_model", "LanguageModel", "FusedLSTMLayer", "IdLSTMLayer",
    "fused_lstm",
    "perplexity", "score_corpus", "unigram_perplexity", "sample_sentences",
    "save_checkpoint", "load_checkpoint",
    "TrainConfig", "Trainer", "train", "load_model",
    "Distributed", "DistributedAccumulator", "shard_indices",
    "LstmAccumError", "InputError", "NonFiniteError",
    "IncompatibleStateError", "CheckpointError",
]
