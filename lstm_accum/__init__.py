"""lstm_accum: gradient accumulation for Theano/Lasagne language models.

Run N variable-length samples, then update the parameters once with the
average gradient: summed on the device, no masks needed, memory constant in N.

The public API (everything else stays importable from its own part, e.g.
``lstm_accum.data.iterate_buckets`` or ``lstm_accum.checkpoint``):

- :class:`GradientAccumulator` -- the two compiled functions (``accumulate``,
  ``apply``) around any Lasagne network and update rule; the same graphs as
  plain functions for your own ``theano.function``:
  :func:`window_variables` (the accumulators and counters),
  :func:`accumulate_updates`, :func:`apply_updates`, and
  :func:`averaged_gradients`, the window's averaged gradients as a list
  that any ``lasagne.updates`` rule takes in place of a loss;
  :func:`warmup`, a learning-rate warm-up for any update rule;
- :func:`build_model`, :class:`LanguageModel`, :func:`load_model` -- the
  LSTM language models (one-hot or id input, per sentence, equal-length
  buckets or masked batches, GRU, stacked, custom); on the CPU their LSTM
  layers run as one fused C operation per layer (:class:`FusedLSTMLayer`);
- the data pipeline: :class:`Vocabulary`, :func:`prepare_corpus`,
  :func:`encode_file`, :func:`split_corpus`, :func:`plan_epoch`,
  :func:`make_batch`;
- evaluation and generation: :func:`perplexity`, :func:`unigram_perplexity`,
  :func:`score_sentences` (each sentence's and word's log-probability),
  :func:`sample_sentences`;
- training: :class:`TrainConfig`, :func:`train`, :class:`Trainer` (and the
  ``lstm-accum`` command line);
- the exceptions every part raises.
"""
from . import backend  # noqa: F401  (must come first: it imports Theano)
from .exceptions import (LstmAccumError, InputError, NonFiniteError,
                         IncompatibleStateError, CheckpointError)
from .accumulation import (GradientAccumulator, window_variables,
                           accumulate_updates, averaged_gradients,
                           apply_updates, warmup)
from .data import (Vocabulary, prepare_corpus, encode_file, split_corpus,
                   plan_epoch, make_batch)
from .models import build_model, LanguageModel, FusedLSTMLayer, load_model
from .evaluation import (perplexity, unigram_perplexity, score_sentences,
                         sample_sentences)
from .training import TrainConfig, Trainer, train
from .version import __version__  # noqa: F401

__all__ = [
    "GradientAccumulator", "window_variables", "accumulate_updates",
    "averaged_gradients", "apply_updates", "warmup",
    "build_model", "LanguageModel", "FusedLSTMLayer", "load_model",
    "Vocabulary", "prepare_corpus", "encode_file", "split_corpus",
    "plan_epoch", "make_batch",
    "perplexity", "unigram_perplexity", "score_sentences",
    "sample_sentences",
    "TrainConfig", "train", "Trainer",
    "LstmAccumError", "InputError", "NonFiniteError",
    "IncompatibleStateError", "CheckpointError",
]
