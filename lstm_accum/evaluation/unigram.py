"""The add-one unigram baseline to read a model's perplexity against.

``p(w) = (c(w) + a) / (N + a V)``, where ``c`` counts the target tokens of
the training sentences (their words and one ``</s>`` each, the iterator
convention; ``<s>`` is never a target) and ``N`` is their total. The support
is all V ids, ``<s>`` included, exactly like the model's softmax, so the two
are compared over the same outcomes. Its perplexity is defined as the
model's (:mod:`lstm_accum.evaluation.scoring`): ``exp(total NLL / target
tokens)`` over the words and the ``</s>`` of every evaluation sentence.

It is computed from the training corpus (:func:`unigram_perplexity`, at the
start of training) or from the training counts a checkpoint stores
(:func:`unigram_perplexity_from_counts`, for ``lstm-accum eval`` on any
corpus).
"""
import numpy as np

from ..data import EOS_ID
from ..exceptions import InputError
from .scoring import score_of

__all__ = ["target_counts", "unigram_probabilities", "unigram_perplexity",
           "unigram_perplexity_from_counts"]


def target_counts(corpus, vocab_size):
    """Counts of every target id in a corpus: words, and one ``</s>`` per
    sentence (the iterator convention).

    Parameters
    ----------
    corpus : EncodedCorpus
    vocab_size : int

    Returns
    -------
    numpy.ndarray of float64, shape ``(vocab_size,)``

    Raises
    ------
    InputError
        For ids outside ``[0, vocab_size)``.
    """
    ids = np.asarray(corpus.ids)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise InputError("corpus ids must lie in [0, %d), got values from %d "
                         "to %d; was it encoded with another vocabulary?"
                         % (vocab_size, ids.min(), ids.max()))
    counts = np.bincount(ids, minlength=vocab_size).astype(np.float64)
    counts[EOS_ID] += len(corpus)  # one </s> target per sentence
    return counts


def unigram_probabilities(train_corpus, vocab_size, smoothing=1.0):
    """Add-``smoothing`` unigram distribution of the training targets.

    ``p(w) = (c(w) + a) / (N + a V)`` (see the module).

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
        ``p`` over all V ids (summing to 1 up to rounding).

    Raises
    ------
    InputError
        For ``smoothing <= 0``, or as :func:`target_counts` raises.
    """
    if not smoothing > 0:
        raise InputError("smoothing must be > 0, got %r" % (smoothing,))
    counts = target_counts(train_corpus, int(vocab_size)) + smoothing
    return counts / counts.sum()


def unigram_perplexity(train_corpus, eval_corpus, vocab_size,
                       smoothing=1.0):
    """Perplexity of the add-one unigram model of `train_corpus` on
    `eval_corpus`: the baseline for :func:`~lstm_accum.evaluation.perplexity`.

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
    counts = target_counts(eval_corpus, int(vocab_size))
    tokens = counts.sum()
    nll = -float(np.dot(counts, np.log(probs)))
    return score_of(nll, tokens, len(eval_corpus)).perplexity


def unigram_perplexity_from_counts(train_counts, eval_corpus, smoothing=1.0):
    """The unigram baseline on a corpus, from saved training counts.

    The same model as :func:`unigram_perplexity`, computed from the
    :func:`target_counts` of the training split (a checkpoint stores them
    as ``'data/train_target_counts'``) instead of the training corpus.

    Parameters
    ----------
    train_counts : array of float, shape ``(V,)``
        :func:`target_counts` of the training split.
    eval_corpus : EncodedCorpus
    smoothing : float

    Returns
    -------
    float

    Raises
    ------
    InputError
        Ids outside ``[0, V)`` or a corpus without sentences.

    Notes
    -----
    The normaliser is ``N + a V`` and the result goes through ``numpy.exp``
    (:func:`unigram_perplexity` sums the smoothed counts and uses
    ``math.exp``): each keeps the numbers it has always given, which may
    differ from the other's in the last bit.
    """
    train_counts = np.asarray(train_counts, dtype=np.float64)
    V = len(train_counts)
    counts = target_counts(eval_corpus, V)
    if len(eval_corpus) == 0:
        raise InputError("the corpus to evaluate has no sentences")
    probs = (train_counts + smoothing) / (train_counts.sum() + smoothing * V)
    return float(np.exp(-np.dot(counts, np.log(probs)) / counts.sum()))
