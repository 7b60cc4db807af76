"""The unigram baseline against hand-computed values, from a corpus and from
saved training counts."""
import math

import numpy as np
import pytest

from lstm_accum.data import EncodedCorpus
from lstm_accum.evaluation import (target_counts, unigram_perplexity,
                                   unigram_perplexity_from_counts,
                                   unigram_probabilities)
from lstm_accum.exceptions import InputError


def corpus_of(sentences):
    ids = np.concatenate([np.array(s, np.int32) for s in sentences]
                         + [np.zeros(0, np.int32)])
    return EncodedCorpus(ids, np.cumsum([0] + [len(s) for s in sentences]))


def test_unigram_perplexity_by_hand():
    train = corpus_of([[3, 3, 4], [5]])
    evaluation = corpus_of([[3], [4, 6]])
    # Training targets: 3 x2, 4, 5, </s> x2 -> N = 6; add-one over V = 7:
    # p(3) = 3/13, p(</s>) = 3/13, p(4) = 2/13, p(6) = 1/13.
    probs = unigram_probabilities(train, 7)
    np.testing.assert_allclose(probs, np.array([1, 1, 3, 3, 2, 2, 1]) / 13.0,
                               rtol=1e-15)
    # Evaluation targets: 3 </s> 4 6 </s>.
    expected = (13.0 ** 5 / (3 * 3 * 2 * 1 * 3)) ** (1.0 / 5)
    np.testing.assert_allclose(unigram_perplexity(train, evaluation, 7),
                               expected, rtol=1e-12)
    # Smoothing a = 0.5: p = (c + 0.5) / 9.5.
    p = (np.array([0, 0, 2, 2, 1, 1, 0]) + 0.5) / 9.5
    expected = math.exp(-(np.log(p[3]) + 2 * np.log(p[2]) + np.log(p[4])
                          + np.log(p[6])) / 5)
    np.testing.assert_allclose(
        unigram_perplexity(train, evaluation, 7, smoothing=0.5), expected,
        rtol=1e-12)


def test_unigram_errors():
    train = corpus_of([[3, 4]])
    with pytest.raises(InputError, match=r"\[0, 4\)"):
        unigram_perplexity(train, train, 4)
    with pytest.raises(InputError, match="smoothing"):
        unigram_probabilities(train, 7, smoothing=0)
    with pytest.raises(InputError, match="no target tokens"):
        unigram_perplexity(train, corpus_of([]), 7)


def test_target_counts_by_hand():
    train = corpus_of([[3, 4], [3, 5]])
    counts = target_counts(train, 6)
    assert counts.dtype == np.float64
    assert counts.tolist() == [0, 0, 2, 2, 1, 1]       # two </s>
    assert target_counts(corpus_of([]), 4).tolist() == [0, 0, 0, 0]
    with pytest.raises(InputError, match=r"\[0, 5\)"):
        target_counts(train, 5)


def test_baseline_from_counts_by_hand():
    V = 6
    train = corpus_of([[3, 4], [3, 5]])
    valid = corpus_of([[3, 0]])
    counts = target_counts(train, V)
    # add-one: p = (c + 1) / (6 + 6); targets of valid: 3, 0, </s>
    p = {3: 3 / 12.0, 0: 1 / 12.0, 2: 3 / 12.0}
    expected = np.exp(-(np.log(p[3]) + np.log(p[0]) + np.log(p[2])) / 3)
    got = unigram_perplexity_from_counts(counts, valid)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-12)
    assert unigram_perplexity(train, valid, V) == pytest.approx(expected,
                                                                rel=1e-12)
    # Smoothing a = 0.5: p = (c + 0.5) / (6 + 3).
    p = (counts + 0.5) / 9.0
    expected = math.exp(-(np.log(p[3]) + np.log(p[0]) + np.log(p[2])) / 3)
    assert unigram_perplexity_from_counts(counts, valid, smoothing=0.5) == \
        pytest.approx(expected, rel=1e-12)


def test_each_baseline_keeps_its_numbers():
    """Bit for bit the formulas of the two copies this module replaces
    (evaluation's from the corpus; training's from saved counts), on a
    corpus whose counts do not sum exactly in floating point."""
    rng = np.random.RandomState(0)
    V = 50
    train = corpus_of([list(rng.randint(3, V, rng.randint(0, 9)))
                       for _ in range(40)])
    valid = corpus_of([list(rng.randint(0, V, rng.randint(0, 9)))
                       for _ in range(15)])
    a = 0.37
    train_c = np.bincount(train.ids, minlength=V).astype(np.float64)
    train_c[2] += len(train)
    valid_c = np.bincount(valid.ids, minlength=V).astype(np.float64)
    valid_c[2] += len(valid)
    smoothed = train_c + a
    probs = smoothed / smoothed.sum()
    from_corpus = math.exp(-float(np.dot(valid_c, np.log(probs)))
                           / valid_c.sum())
    probs = (train_c + a) / (train_c.sum() + a * V)
    from_counts = float(np.exp(-np.dot(valid_c, np.log(probs))
                               / valid_c.sum()))
    assert unigram_perplexity(train, valid, V, smoothing=a) == from_corpus
    assert unigram_perplexity_from_counts(target_counts(train, V), valid,
                                          smoothing=a) == from_counts
    assert from_corpus == pytest.approx(from_counts, rel=1e-12)


def test_baseline_from_counts_errors():
    counts = target_counts(corpus_of([[3, 4]]), 5)
    with pytest.raises(InputError, match=r"\[0, 5\)"):
        unigram_perplexity_from_counts(counts, corpus_of([[3, 7]]))
    with pytest.raises(InputError, match="no sentences"):
        unigram_perplexity_from_counts(counts, corpus_of([]))
