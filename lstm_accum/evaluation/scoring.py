"""Perplexity of a model on held-out data.

Definition (the same for the model and the baseline)::

    perplexity = exp( total NLL / total target tokens )

where the targets of a sentence ``w1 .. wn`` are ``w1 .. wn </s>`` (the
iterator convention: input ``<s> w1 .. wn``), so every sentence contributes
``n + 1`` target tokens, ``</s>`` included, and ``<s>`` is never predicted.
Padding of masked minibatches is excluded (the mask zeroes its loss and it
is not counted).  NLL is in nats.  The unigram baseline to read it against
is :mod:`lstm_accum.evaluation.unigram`.
"""
import collections
import math

import numpy as np

from ..data import make_batch, plan_epoch
from ..exceptions import InputError
from ..models import LanguageModel

__all__ = ["Score", "score_of", "perplexity", "score_corpus",
           "perplexity_of_batches"]

#: Result of scoring a corpus: summed NLL (nats), target tokens, sentences,
#: and ``perplexity = exp(nll / tokens)``.
Score = collections.namedtuple("Score",
                               ["nll", "tokens", "sentences", "perplexity"])


def score_of(nll, tokens, sentences):
    """The :class:`Score` of summed NLL (nats) over target tokens.

    Raises
    ------
    InputError
        When there is no target token.
    """
    if tokens <= 0:
        raise InputError("nothing to score: the data has no target tokens "
                         "(an empty corpus?); give at least one sentence")
    try:
        ppl = math.exp(nll / tokens)
    except OverflowError:   # a diverged model: > ~709 nats per token
        ppl = math.inf
    return Score(float(nll), int(tokens), int(sentences), float(ppl))


def perplexity_of_batches(score_fn, batches):
    """Score an iterable of batches with a compiled scoring function.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(*batch) -> (summed NLL, target tokens)``, e.g.
        ``model.score_function()``.
    batches : iterable of tuples of arrays
        Each in the order the function takes them; the first array's first
        dimension is the number of sentences.

    Returns
    -------
    Score

    Raises
    ------
    InputError
        When the batches contain no target token.
    """
    nll, tokens, sentences = 0.0, 0, 0
    for batch in batches:
        batch_nll, batch_tokens = score_fn(*batch)
        nll += float(batch_nll)
        tokens += int(batch_tokens)
        sentences += int(np.shape(batch[0])[0])
    return score_of(nll, tokens, sentences)


def score_corpus(model_or_fn, corpus, batch_size=32, batching=None,
                 input_kind=None, vocab_size=None):
    """Summed NLL, tokens and perplexity of a model on an encoded corpus.

    Parameters
    ----------
    model_or_fn : LanguageModel or callable
        A model (its cached ``score_function()`` is used, dropout off) or a
        scoring function ``f(*batch) -> (nll, tokens)``.
    corpus : EncodedCorpus
        The held-out sentences.
    batch_size : int
        Sentences per batch for ``'bucket'`` and ``'mask'`` (ignored for
        ``'sample'``).
    batching, input_kind, vocab_size : optional
        Taken from the model; required when a function is given.

    Returns
    -------
    Score
        As :func:`perplexity_of_batches` gives it for the corpus's batches.

    Raises
    ------
    InputError
        For an empty corpus, or missing settings with a function.

    Notes
    -----
    Batches come from :func:`lstm_accum.data.plan_epoch` and
    :func:`~lstm_accum.data.make_batch` in corpus order
    (``shuffle=False``); the order does not change the sums.
    """
    dtype = None
    if isinstance(model_or_fn, LanguageModel):
        model = model_or_fn
        # One-hot inputs and masks in the dtype the model was built with.
        dtype = next((v.dtype for v in model.inputs
                      if v.dtype.startswith("float")), None)
        score_fn = model.score_function()
        batching = batching or model.batching
        input_kind = input_kind or model.input_kind
        vocab_size = vocab_size or model.vocab_size
        if (batching, input_kind, vocab_size) != (
                model.batching, model.input_kind, model.vocab_size):
            raise InputError(
                "the model takes batching=%r, input=%r, V=%d; got "
                "batching=%r, input_kind=%r, vocab_size=%r"
                % (model.batching, model.input_kind, model.vocab_size,
                   batching, input_kind, vocab_size))
    elif callable(model_or_fn):
        score_fn = model_or_fn
        if batching is None or input_kind is None or vocab_size is None:
            raise InputError("with a scoring function, give batching, "
                             "input_kind and vocab_size")
    else:
        raise InputError("expected a LanguageModel or a scoring function, "
                         "got %r" % (model_or_fn,))
    if len(corpus) == 0:
        raise InputError("the corpus to score is empty")
    if batching == "sample":
        batch_size = 1
    elif int(batch_size) < 1:
        raise InputError("batch_size must be >= 1, got %r" % (batch_size,))
    plan = plan_epoch(corpus, batching, int(batch_size), shuffle=False)
    batches = (make_batch(corpus, indices, batching, input_kind, vocab_size,
                          dtype=dtype)
               for indices in plan)
    return perplexity_of_batches(score_fn, batches)


def perplexity(model_or_fn, corpus, batch_size=32, batching=None,
               input_kind=None, vocab_size=None):
    """Perplexity ``exp(total NLL / total target tokens)`` on a corpus.

    ``</s>`` is a target of every sentence and counted; padding is not.
    See :func:`score_corpus` for the parameters.

    Returns
    -------
    float
    """
    return score_corpus(model_or_fn, corpus, batch_size, batching,
                        input_kind, vocab_size).perplexity
