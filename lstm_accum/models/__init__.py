"""The language models: their recurrent steps and layers (:mod:`.steps`,
:mod:`.layers`), the model object with its loss, input check and state
(:mod:`.language_model`, :mod:`.random_state`), the builder
(:mod:`.build`) and rebuilding a model from a checkpoint (:mod:`.loading`).
It may import the data part (vocabulary, choice tuples), our C operations,
the Theano backend and the base modules (exceptions, checks, checkpoint);
nothing above it (accumulation, evaluation, training, the command line).
"""
from .steps import (lstm_step, gru_step, lstm_stacked_params,
                    gru_stacked_params, step_kind)
from .layers import FusedLSTMLayer, IdLSTMLayer, IdGRULayer, IdsToOneHotLayer
from .language_model import LanguageModel, stable_log_softmax
from .build import build_model
from .loading import load_model

__all__ = ["lstm_step", "gru_step", "lstm_stacked_params",
           "gru_stacked_params", "step_kind", "FusedLSTMLayer", "IdLSTMLayer",
           "IdGRULayer", "IdsToOneHotLayer", "LanguageModel",
           "stable_log_softmax", "build_model", "load_model"]
