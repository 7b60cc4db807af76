"""The synthetic corpus every benchmark path reads: Zipf words, English lengths.

Word ids follow a Zipf law (probability of the k-th most frequent word
proportional to 1/k) over the model's vocabulary minus the three special
tokens (``<unk>``=0, ``<s>``=1, ``</s>``=2 are never drawn, as in a corpus
encoded with :class:`lstm_accum.data.vocabulary.Vocabulary`; word ids are
``3 .. V-1``).  Sentence lengths (words, boundaries not included) are drawn
from a log-normal with median 20 and sigma 0.5, rounded and clipped to
2..80: like English newswire, median about 20 words, a long right tail.

Everything is a function of ``(num_sentences, vocab_size, seed)``: the same
arguments give the same :class:`~lstm_accum.data.corpus.EncodedCorpus` in every
process, so paths measured in separate processes read the same sentences.

Run it to print a summary::

    .venv/bin/python benchmarks/synthetic.py --sentences 5000
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from lstm_accum.data.corpus import EncodedCorpus  # noqa: E402  (after sys.path)
from lstm_accum.exceptions import InputError  # noqa: E402

__all__ = ["zipf_corpus", "VOCAB_SIZE", "MEDIAN_LENGTH", "MIN_LENGTH",
           "MAX_LENGTH", "SIGMA", "SEED", "NUM_SPECIAL"]

VOCAB_SIZE = 2000    # V of the model, special tokens included
MEDIAN_LENGTH = 20   # words per sentence, median of the log-normal
SIGMA = 0.5          # log-normal sigma of the lengths
MIN_LENGTH = 2       # shortest sentence (words)
MAX_LENGTH = 80      # longest sentence (words)
SEED = 1234          # default seed of numpy.random.RandomState
NUM_SPECIAL = 3      # <unk>, <s>, </s>: ids 0..2, never drawn as words


def zipf_corpus(num_sentences, vocab_size=VOCAB_SIZE, seed=SEED,
                median_length=MEDIAN_LENGTH, min_length=MIN_LENGTH,
                max_length=MAX_LENGTH, sigma=SIGMA):
    """A deterministic corpus of Zipf-distributed word ids.

    Parameters
    ----------
    num_sentences : int
        Number of sentences (>= 1).
    vocab_size : int
        V, the model's vocabulary size including the 3 special tokens
        (> 3). Words are ids ``3 .. V-1``, rank ``k`` (id ``k + 2``) drawn
        with probability proportional to ``1 / k``.
    seed : int
        Seed of ``numpy.random.RandomState``.
    median_length, min_length, max_length : int
        Sentence lengths in words: log-normal with this median, rounded and
        clipped to ``[min_length, max_length]``.
    sigma : float
        Log-normal sigma of the lengths.

    Returns
    -------
    EncodedCorpus

    Raises
    ------
    InputError
        For a count < 1, a vocabulary of 3 or fewer ids, or inconsistent
        lengths.

    Examples
    --------
    >>> c = zipf_corpus(100, vocab_size=50, seed=0)
    >>> len(c), int(c.ids.min()) >= 3, int(c.ids.max()) < 50
    (100, True, True)
    """
    if isinstance(num_sentences, bool) or not isinstance(
            num_sentences, (int, np.integer)) or num_sentences < 1:
        raise InputError("num_sentences must be an integer >= 1, got %r"
                         % (num_sentences,))
    if isinstance(vocab_size, bool) or not isinstance(
            vocab_size, (int, np.integer)) or vocab_size <= NUM_SPECIAL:
        raise InputError("vocab_size must be an integer > %d (the special "
                         "tokens), got %r" % (NUM_SPECIAL, vocab_size))
    if not 1 <= min_length <= median_length <= max_length:
        raise InputError("need 1 <= min_length <= median_length <= "
                         "max_length, got %r, %r, %r"
                         % (min_length, median_length, max_length))
    rng = np.random.RandomState(seed)
    lengths = np.clip(np.round(rng.lognormal(np.log(median_length), sigma,
                                             num_sentences)),
                      min_length, max_length).astype(np.int64)
    ranks = np.arange(1, vocab_size - NUM_SPECIAL + 1, dtype=np.float64)
    p = 1.0 / ranks
    cdf = np.cumsum(p / p.sum())
    cdf[-1] = 1.0
    total = int(lengths.sum())
    ids = np.searchsorted(cdf, rng.random_sample(total), side="right")
    ids = (ids + NUM_SPECIAL).astype(np.int32)
    offsets = np.zeros(num_sentences + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return EncodedCorpus(ids, offsets)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=5000)
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    c = zipf_corpus(args.sentences, args.vocab_size, args.seed)
    lengths = c.lengths
    counts = np.bincount(c.ids, minlength=args.vocab_size)
    print("%r" % c)
    print("lengths: median %d, mean %.1f, min %d, max %d, %d distinct"
          % (np.median(lengths), lengths.mean(), lengths.min(),
             lengths.max(), len(np.unique(lengths))))
    print("top words: %s" % ", ".join(
        "%d:%d" % (i, counts[i]) for i in np.argsort(-counts)[:5]))
    print("types seen: %d of %d" % ((counts > 0).sum(),
                                     args.vocab_size - NUM_SPECIAL))


if __name__ == "__main__":
    main()
