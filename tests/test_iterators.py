"""Iterators: exact batches on a hand-written corpus, bucket and plan
properties, determinism, resumption, errors."""
import tracemalloc

import numpy as np
import pytest

from lstm_accum.backend import theano
from lstm_accum.data.corpus import EncodedCorpus, encode_file
from lstm_accum.exceptions import InputError
from lstm_accum.data.batches import (EpochPlan, iterate_batches, iterate_buckets,
                                  iterate_padded, iterate_sentences,
                                  make_batch, plan_epoch)
from lstm_accum.data.vocabulary import Vocabulary

TEXT = ("the cat sat\n"
        "a dog\n"
        "\n"
        "the dog sat down\n"
        "cat sat\n"
        "dog sat the\n")
# the=3 cat=4 sat=5 dog=6; 'a' and 'down' are <unk>=0
SENTENCES = [[3, 4, 5], [0, 6], [3, 6, 5, 0], [4, 5], [6, 5, 3]]
V = 7


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("it") / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    vocab = Vocabulary(["the", "cat", "sat", "dog"])
    assert len(vocab) == V
    c, _ = encode_file(str(path), vocab, use_cache=False)
    assert [s.tolist() for s in c] == SENTENCES
    return c


def random_corpus(n=200, seed=0, max_len=6):
    rng = np.random.RandomState(seed)
    lengths = rng.randint(1, max_len + 1, size=n)
    ids = rng.randint(3, 50, size=lengths.sum())
    return EncodedCorpus(ids, np.r_[0, np.cumsum(lengths)])


# ----------------------------------------------------------------------
# exact batches

def test_sample_ids_and_onehot_exact(corpus):
    X, y = make_batch(corpus, [0], "sample", "ids", V)
    assert X.dtype == np.int32 and y.dtype == np.int32
    assert X.tolist() == [[1, 3, 4, 5]]          # <s> the cat sat
    assert y.tolist() == [3, 4, 5, 2]            # the cat sat </s>
    Xo, yo = make_batch(corpus, [1], "sample", "onehot", V,
                        dtype=np.float64)
    expected = np.zeros((1, 3, V))
    expected[0, 0, 1] = expected[0, 1, 0] = expected[0, 2, 6] = 1
    assert Xo.dtype == np.float64
    np.testing.assert_array_equal(Xo, expected)
    assert yo.tolist() == [0, 6, 2]


def test_onehot_default_dtype_is_floatx(corpus):
    X, _ = make_batch(corpus, [0], "sample", "onehot", V)
    assert X.dtype == np.dtype(theano.config.floatX)
    _, _, mask = make_batch(corpus, [0, 1], "mask", "ids", V)
    assert mask.dtype == np.dtype(theano.config.floatX)


def test_bucket_batch_exact(corpus):
    X, y = make_batch(corpus, [1, 3], "bucket", "ids", V)
    assert X.tolist() == [[1, 0, 6], [1, 4, 5]]
    assert y.tolist() == [[0, 6, 2], [4, 5, 2]]
    Xo, yo = make_batch(corpus, [1, 3], "bucket", "onehot", V,
                        dtype=np.float32)
    assert Xo.shape == (2, 3, V) and Xo.dtype == np.float32
    np.testing.assert_array_equal(Xo.sum(axis=2), 1)
    np.testing.assert_array_equal(Xo.argmax(axis=2), X)
    np.testing.assert_array_equal(yo, y)


def test_mask_batch_exact(corpus):
    X, y, mask = make_batch(corpus, [2, 1], "mask", "ids", V,
                            dtype=np.float64)
    assert X.tolist() == [[1, 3, 6, 5, 0], [1, 0, 6, 0, 0]]
    assert y.tolist() == [[3, 6, 5, 0, 2], [0, 6, 2, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    Xo, yo, mo = make_batch(corpus, [2, 1], "mask", "onehot", V,
                            dtype=np.float64)
    # padding is the one-hot of id 0, so one-hot and ids are the same data
    np.testing.assert_array_equal(Xo.argmax(axis=2), X)
    np.testing.assert_array_equal(Xo.sum(axis=2), 1)
    np.testing.assert_array_equal(mo, mask)


def test_unshuffled_plans_exact(corpus):
    as_lists = lambda plan: [b.tolist() for b in plan]
    assert as_lists(plan_epoch(corpus, "sample", shuffle=False)) == \
        [[0], [1], [2], [3], [4]]
    # by length (2: s1 s3; 3: s0 s4; 4: s2), corpus order within a length
    assert as_lists(plan_epoch(corpus, "bucket", 2, shuffle=False)) == \
        [[1, 3], [0, 4], [2]]
    assert as_lists(plan_epoch(corpus, "mask", 2, shuffle=False)) == \
        [[0, 1], [2, 3], [4]]
    assert as_lists(plan_epoch(corpus, "mask", 2, shuffle=False,
                               pool_size=2)) == [[1, 3], [0, 2], [4]]


def test_shuffled_plans_follow_the_documented_rng(corpus):
    for seed, epoch in [(0, 0), (5, 3)]:
        perm = np.random.RandomState([seed, epoch]).permutation(5)
        assert [b.tolist() for b in plan_epoch(corpus, "sample", 1, seed,
                                               epoch)] == \
            [[int(i)] for i in perm]
        assert [b.tolist() for b in plan_epoch(corpus, "mask", 2, seed,
                                               epoch)] == \
            [perm[:2].tolist(), perm[2:4].tolist(), perm[4:].tolist()]


def test_iterate_sentences_exact_targets(corpus):
    batches = list(iterate_sentences(corpus, V, input_kind="ids",
                                     shuffle=False))
    assert [X.tolist() for X, _ in batches] == \
        [[[1] + s] for s in SENTENCES]
    assert [y.tolist() for _, y in batches] == [s + [2] for s in SENTENCES]
    onehot = list(iterate_sentences(corpus, V, seed=4))
    perm = np.random.RandomState([4, 0]).permutation(5)
    for (X, y), i in zip(onehot, perm):
        assert X.shape == (1, len(SENTENCES[i]) + 1, V)
        assert X[0].argmax(axis=1).tolist() == [1] + SENTENCES[i]
        assert y.tolist() == SENTENCES[i] + [2]


def test_iterate_padded_covers_every_sentence_once(corpus):
    seen = []
    for X, y, mask in iterate_padded(corpus, 2, V, seed=1):
        for b in range(len(y)):
            n = int(mask[b].sum())
            seen.append(y[b, :n - 1].tolist())
            assert y[b, n - 1] == 2 and (y[b, n:] == 0).all()
            assert X[b, 0] == 1 and X[b, 1:n].tolist() == y[b, :n - 1].tolist()
    assert sorted(seen) == sorted(SENTENCES)


# ----------------------------------------------------------------------
# buckets

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bucket_every_sentence_once_never_mixed(seed):
    c = random_corpus(seed=seed)
    plan = plan_epoch(c, "bucket", 7, seed=seed, epoch=2)
    flat = np.concatenate(list(plan))
    assert sorted(flat.tolist()) == list(range(len(c)))
    lengths = c.lengths
    for b in plan:
        assert len(set(lengths[b].tolist())) == 1
    counts = np.bincount(lengths)
    # per length: full batches of 7 and at most one smaller remainder
    for length, k in enumerate(counts):
        sizes = sorted((len(b) for b in plan if lengths[b[0]] == length),
                       reverse=True)
        assert sizes == [7] * (k // 7) + ([k % 7] if k % 7 else [])
    assert len(plan) == sum(-(-k // 7) for k in counts)
    # shuffled across buckets: batch lengths are not in sorted order
    blen = [int(lengths[b[0]]) for b in plan]
    assert blen != sorted(blen)
    # the arrays agree with the plan
    for (X, y), b in zip(iterate_buckets(c, 7, seed=seed, epoch=2), plan):
        assert X.shape == (len(b), lengths[b[0]] + 1) == y.shape
        for row, i in zip(y, b):
            assert row.tolist() == c.sentence(i).tolist() + [2]


def test_mask_pool_sorting_reduces_padding_and_keeps_every_sentence():
    c = random_corpus(n=300, seed=3, max_len=20)
    pad = {}
    for pool in (None, 8):
        plan = plan_epoch(c, "mask", 10, seed=3, pool_size=pool)
        assert sorted(np.concatenate(list(plan)).tolist()) == \
            list(range(300))
        pad[pool] = sum(int(c.lengths[b].max()) * len(b)
                        - int(c.lengths[b].sum()) for b in plan)
    assert pad[8] < pad[None] / 2


def test_plans_are_deterministic_and_differ_by_epoch_and_seed():
    c = random_corpus()
    for batching in ("sample", "bucket", "mask"):
        a = [b.tolist() for b in plan_epoch(c, batching, 5, seed=9, epoch=1)]
        b = [b.tolist() for b in plan_epoch(c, batching, 5, seed=9, epoch=1)]
        assert a == b
        assert a != [x.tolist() for x in plan_epoch(c, batching, 5, seed=9,
                                                    epoch=2)]
        assert a != [x.tolist() for x in plan_epoch(c, batching, 5, seed=10,
                                                    epoch=1)]


def test_start_resumes_mid_epoch():
    c = random_corpus()
    full = list(iterate_buckets(c, 4, seed=2, epoch=5))
    rest = list(iterate_buckets(c, 4, seed=2, epoch=5, start=7))
    assert len(rest) == len(full) - 7
    for (X1, y1), (X2, y2) in zip(full[7:], rest):
        np.testing.assert_array_equal(X1, X2)
        np.testing.assert_array_equal(y1, y2)


def test_epoch_plan_is_a_sequence():
    c = random_corpus(n=10)
    plan = plan_epoch(c, "mask", 3, shuffle=False)
    assert isinstance(plan, EpochPlan) and len(plan) == 4
    assert plan[-1].tolist() == [9]
    assert [b.tolist() for b in plan[1:3]] == [[3, 4, 5], [6, 7, 8]]
    assert len(plan[5:]) == 0
    with pytest.raises(IndexError):
        plan[4]
    assert len(plan_epoch(EncodedCorpus([], [0]), "bucket", 3)) == 0


def test_onehot_is_built_per_batch_only():
    n, V_big = 400, 3000
    c = EncodedCorpus(np.full(n * 9, 5), np.arange(0, n * 9 + 1, 9))
    batch_bytes = 10 * V_big * 4                       # (1, 10, V) float32
    tracemalloc.start()
    try:
        for X, y in iterate_sentences(c, V_big, dtype=np.float32):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the one-hot corpus would be n * batch_bytes = 48 MB
    assert peak < 4 * batch_bytes + 2 ** 20


# ----------------------------------------------------------------------
# errors

def test_make_batch_errors(corpus):
    with pytest.raises(InputError, match="exactly one sentence"):
        make_batch(corpus, [0, 1], "sample", "ids", V)
    with pytest.raises(InputError, match="one length"):
        make_batch(corpus, [0, 1], "bucket", "ids", V)
    with pytest.raises(InputError, match="word id 6 but vocab_size is 5"):
        make_batch(corpus, [1], "sample", "ids", 5)
    with pytest.raises(InputError, match="needs vocab_size"):
        make_batch(corpus, [1], "sample", "onehot")
    with pytest.raises(InputError, match="batching"):
        make_batch(corpus, [1], "minibatch", "ids", V)
    with pytest.raises(InputError, match="input_kind"):
        make_batch(corpus, [1], "sample", "embedding", V)
    with pytest.raises(InputError, match="at least one"):
        make_batch(corpus, [], "mask", "ids", V)


def test_iterator_errors_are_raised_at_the_call(corpus):
    with pytest.raises(InputError, match="batch_size"):
        iterate_buckets(corpus, 0)
    with pytest.raises(InputError, match="word id 6 but vocab_size is 4"):
        iterate_padded(corpus, 2, 4)
    with pytest.raises(InputError, match="needs vocab_size"):
        iterate_sentences(corpus)
    with pytest.raises(InputError, match="seed"):
        iterate_batches(corpus, "mask", 2, seed=-1)
    with pytest.raises(InputError, match="pool_size"):
        plan_epoch(corpus, "mask", 2, pool_size=0)
    with pytest.raises(InputError, match="start"):
        iterate_buckets(corpus, 2, start=-1)
