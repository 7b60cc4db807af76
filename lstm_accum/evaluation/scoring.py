"""Perplexity on held-out data, and the unigram baseline to read it against.

Definition (the same for the model and the baseline)::

    perplexity = exp( total NLL / total target tokens )

where the targets of a sentence ``w1 .. wn`` are ``w1 .. wn </s>`` (the
iterator convention: input ``<s> w1 .. wn``), so every sentence contributes
``n + 1`` target tokens, ``</s>`` included, and ``<s>`` is never predicted.
Padding of masked minibatches is excluded (the mask zeroes its loss and it
is not counted).  NLL is in nats.
"""
import collections
import math

import numpy as np

from ..exceptions import InputError

__all__ = ["Score", "perplexity", "score_corpus", "perplexity_of_batches",
           "unigram_probabilities", "unigram_perplexity"]

#: Result of scoring a corpus: summed NLL (nats), target tokens, sentences,
#: and ``perplexity = exp(nll / tokens)``.
Score = collections.namedtuple("Score",
                               ["nll", "tokens", "sentences", "perplexity"])


def _finish(nll, tokens, sentences):
    if tokens <= 0:
        raise InputError("nothing to score: the data has no target tokens "
                         "(an empty corpus?); give at least one sentence")
    return Score(float(nll), int(tokens), int(sentences),
                 float(math.exp(nll / tokens)))


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
    return _finish(nll, tokens, sentences)


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

    Raises
    ------
    InputError
        For an empty corpus, or missing settings with a function.

    Notes
    -----
    Batches come from :func:`lstm_accum.iterators.plan_epoch` and
    :func:`~lstm_accum.iterators.make_batch` in corpus order
    (``shuffle=False``); the order does not change the sums.
    """
    from ..data import batches as iterators
    from ..models.language_model import LanguageModel

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
    plan = iterators.plan_epoch(corpus, batching, int(batch_size),
                                shuffle=False)
    batches = (iterators.make_batch(corpus, indices, batching, input_kind,
                                    vocab_size, dtype=dtype)
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


def _target_counts(corpus, vocab_size):
    ids = np.asarray(corpus.ids)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise InputError("corpus ids must lie in [0, %d), got values from %d "
                         "to %d; was it encoded with another vocabulary?"
                         % (vocab_size, ids.min(), ids.max()))
    counts = np.bincount(ids, minlength=vocab_size).astype(np.float64)
    from ..data.vocabulary import EOS_ID
    counts[EOS_ID] += len(corpus)  # one </s> target per sentence
    return counts


def unigram_probabilities(train_corpus, vocab_size, smoothing=1.0):
    """Add-``smoothing`` unigram distribution of the training targets.

    ``p(w) = (c(w) + a) / (N + a V)`` where ``c`` counts the target tokens
    of the training sentences (words and one ``</s>`` per sentence) and
    ``N`` is their total.

    Parameters
    ----------
    train_corpus : EncodedCorpus
    vocab_size : int
    smoothing : float
        ``a > 0`` (1: add-one / Laplace).  It keeps every word, unseen ones
        included, at a finite perplexity.

    Returns
    -------
    numpy.ndarray of float64, shape ``(vocab_size,)``

    Notes
    -----
    The support is all V ids, ``<s>`` included although it is never a
    target, exactly like the model's softmax, so the two are compared over
    the same outcomes.
    """
    if not smoothing > 0:
        raise InputError("smoothing must be > 0, got %r" % (smoothing,))
    counts = _target_counts(train_corpus, int(vocab_size)) + smoothing
    return counts / counts.sum()


def unigram_perplexity(train_corpus, eval_corpus, vocab_size,
                       smoothing=1.0):
    """Perplexity of the add-one unigram model of `train_corpus` on
    `eval_corpus`: the baseline for :func:`perplexity`.

    Parameters
    ----------
    train_corpus, eval_corpus : EncodedCorpus
    vocab_size : int
    smoothing : float
        See :func:`unigram_probabilities`.

    Returns
    -------
    float
        ``exp(-sum log p(target) / number of targets)`` over the words and
        the ``</s>`` of every evaluation sentence.

    Raises
    ------
    InputError
        For an empty evaluation corpus or ids outside ``[0, vocab_size)``.
    """
    probs = unigram_probabilities(train_corpus, vocab_size, smoothing)
    counts = _target_counts(eval_corpus, int(vocab_size))
    tokens = counts.sum()
    nll = -float(np.dot(counts, np.log(probs)))
    return _finish(nll, tokens, len(eval_corpus)).perplexity
