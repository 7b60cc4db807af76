"""TODO: one paragraph: what this part owns and what it may import."""
from .language_model import (build_model, LanguageModel, FusedLSTMLayer,
                             IdLSTMLayer, IdGRULayer)
