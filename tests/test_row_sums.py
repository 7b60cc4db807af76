"""The sparse gradient of a row lookup (RowSums) against dense references.

References: a numpy loop that adds row ``k`` into row ``ids[k]`` of zeros
(the dense gradient's arithmetic, in the order of ``k``), and Theano's own
``AdvancedIncSubtensor1`` gradient of ``W[ids]`` compiled separately and
summed in numpy. The accumulators of the id-input models must equal the
latter bit for bit: the dense zeros are skipped, not the arithmetic.
"""
import numpy as np
import pytest

from lstm_accum.backend import theano, T, lasagne
from lstm_accum.accumulation import GradientAccumulator
from lstm_accum.data.batches import make_batch, plan_epoch
from lstm_accum.data.encoded import EncodedCorpus
from lstm_accum.models import build_model
from lstm_accum.ops.row_sums import row_sums

PY = theano.compile.Mode(linker="py", optimizer="fast_run")


def dense_reference(rows, ids, num_rows):
    out = np.zeros((num_rows, rows.shape[1]), rows.dtype)
    for k in range(len(ids)):
        out[ids[k]] += rows[k]
    return out


@pytest.fixture(scope="module")
def row_sums_fns():
    fns = {}
    for dtype in ("float32", "float64"):
        for itype in ("int32", "int64"):
            r = T.matrix(dtype=dtype)
            i = T.vector(dtype=itype)
            n = T.lscalar()
            outs = row_sums(r, i, n)
            fns[dtype, itype] = [theano.function([r, i, n], outs),
                                 theano.function([r, i, n], outs, mode=PY)]
    return fns


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("itype", ["int32", "int64"])
@pytest.mark.parametrize("n", [0, 1, 9, 700])
def test_row_sums_are_the_dense_scatter_add(row_sums_fns, dtype, itype, n):
    """C and Python code: distinct words in the order of first occurrence,
    each row the in-order sum, so that scattering them gives the dense
    result bit for bit; negative indices wrap as in numpy."""
    V = 13
    rng = np.random.RandomState(n)
    rows = rng.normal(size=(n, 5)).astype(dtype)
    # Zipf-like: some indices repeat many times, as words do
    ids = np.minimum(rng.zipf(1.3, size=n), V) - 1
    ids = np.where(rng.rand(n) < 0.2, ids - V, ids).astype(itype)
    want = dense_reference(rows, ids, V)
    wrapped = np.where(ids < 0, ids + V, ids)
    first_seen = list(dict.fromkeys(wrapped.tolist()))
    for fn in row_sums_fns[dtype, itype]:
        words, sums = fn(rows, ids, V)
        assert words.dtype == np.int64 and sums.dtype == np.dtype(dtype)
        assert words.tolist() == first_seen
        got = np.zeros_like(want)
        got[words] = sums
        assert np.array_equal(got, want)


def test_row_sums_refuse_out_of_range_indices(row_sums_fns):
    rows = np.ones((3, 2), "float32")
    for fn in row_sums_fns["float32", "int32"]:
        for bad in (4, -5):
            with pytest.raises(IndexError, match="index %d \\(position 1\\)"
                               " is out of bounds for 4 rows" % bad):
                fn(rows, np.array([0, bad, 1], "int32"), 4)
        with pytest.raises(ValueError, match="3 rows but 2 ids"):
            fn(rows, np.array([0, 1], "int32"), 4)


def small_corpus(V, n, seed):
    """Words ``3 .. V-1`` (0-2 are the special tokens), Zipf-like, so that
    a batch holds some words many times; lengths 1-8."""
    rng = np.random.RandomState(seed)
    lengths = rng.randint(1, 9, size=n)
    ids = np.minimum(rng.zipf(1.4, size=int(lengths.sum())), V - 3) + 2
    return EncodedCorpus(ids, np.concatenate([[0], np.cumsum(lengths)]))


@pytest.mark.parametrize("batching", ["bucket", "sample", "mask"])
def test_id_model_accumulators_equal_dense_gradients_bit_for_bit(batching):
    """The accumulate step reads the input weights' gradient as touched
    rows (no AdvancedIncSubtensor1 left in it); its accumulators equal the
    running numpy sum of Theano's dense gradients exactly, and a NaN
    sample leaves them untouched."""
    V, H = 40, 8
    model = build_model(V, H, input="ids", batching=batching, seed=5,
                        impl="scan" if batching == "mask" else "auto")
    acc = GradientAccumulator(
        model.loss(), model.params, model.inputs, normalize="samples",
        update=lasagne.updates.sgd, learning_rate=0.1,
        num_tokens=model.num_tokens(), vocab_size=V)
    ops = [type(n.op).__name__
           for n in acc.accumulate_fn.maker.fgraph.toposort()]
    assert "RowSums" in ops and "AdvancedIncSubtensor1" not in ops
    ref = theano.function(model.inputs,
                          theano.grad(model.loss(), model.params))
    corpus = small_corpus(V, 300, 2)
    plan = plan_epoch(corpus, batching, 16, 2, 0)[:8]
    running = [np.zeros_like(p.get_value()) for p in model.params]
    for k, idx in enumerate(plan):
        arrays = make_batch(corpus, idx, batching, "ids", V,
                            theano.config.floatX)
        acc.accumulate(*arrays)
        for s, g in zip(running, ref(*arrays)):
            s += g
        for a, s in zip(acc.accumulators, running):
            assert np.array_equal(a.get_value(), s), (k, a.name)
    before = [a.get_value() for a in acc.accumulators]
    for p in model.params[:1]:
        p.set_value(np.full_like(p.get_value(), np.nan))
    arrays = make_batch(corpus, plan[0], batching, "ids", V,
                        theano.config.floatX)
    assert acc.accumulate(*arrays).skipped == len(plan[0])
    for a, b in zip(acc.accumulators, before):
        assert np.array_equal(a.get_value(), b)
