"""Minibatches without a mask are exact: bucketed (and masked) accumulation
gives the parameters of accumulating the same sentences one by one.

For a window of N sentences, cut into equal-length buckets (B, T) of several
lengths (or into padded, masked minibatches), the parameters after
``apply`` must equal those of the original question's per-sentence
accumulation of the same N sentences, for ``normalize='samples'`` and
``'tokens'``: relative error < 1e-10 in float64, < 1e-5 in float32.

Independent reference: per-sentence gradients from a separately compiled
``theano.grad`` function of the question's network, summed and averaged in
numpy, and the SGD step ``p - lr * mean_grad`` done in numpy.

The update rule is plain SGD on purpose: it is linear in the averaged
gradient, so any error in the sum or in the denominator shows up in full in
the parameters.  (Adagrad's first step is about ``lr * sign(g)`` and would
hide a wrong scale.)  Parameters are also compared as *deltas* from the
initial weights in float64, which is stricter than comparing the weights.

Models are tiny (V=12, H=5, as in ``test_model.py``) so compiled functions
come from Theano's cache; everything compiled is shared per module.
"""
import contextlib

import numpy as np
import pytest

from lstm_accum.backend import theano, lasagne
from lstm_accum.accumulation import GradientAccumulator
from lstm_accum.data import EncodedCorpus, make_batch, plan_epoch
from lstm_accum.models import build_model

V, H = 12, 5
LR = 0.5
TOL = {"float64": 1e-10, "float32": 1e-5}
NORMALIZE = ("samples", "tokens")
# Sentence lengths (words) of the window: 5 distinct lengths, so with
# batch_size 3 the window spans several buckets, some full, some not.
LENGTHS = [3, 1, 4, 3, 2, 4, 3, 1, 4, 2, 3]


@contextlib.contextmanager
def floatx(dtype):
    """Build and compile in ``dtype`` (Lasagne reads floatX when it creates
    parameters and input variables), then restore the previous setting."""
    saved = theano.config.floatX
    theano.config.floatX = dtype
    try:
        yield
    finally:
        theano.config.floatX = saved


def window_corpus(seed=3):
    rng = np.random.RandomState(seed)
    lengths = np.array(LENGTHS, dtype=np.int64)
    ids = rng.randint(3, V, size=int(lengths.sum())).astype(np.int32)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return EncodedCorpus(ids, offsets)


class Paths(object):
    """Models (same initial weights) and SGD accumulators for one dtype.

    ``models[(input, batching)]`` and ``accs[(input, batching, normalize)]``;
    the question's per-sentence one-hot network is ``('onehot', 'sample')``.
    """

    def __init__(self, dtype, kinds):
        self.dtype = dtype
        self.models, self.accs = {}, {}
        with floatx(dtype):
            for kind in kinds:
                self.models[kind] = build_model(V, H, input=kind[0],
                                                batching=kind[1], seed=0)
            first = self.models[kinds[0]]
            self.init = first.param_values()
            for kind, model in self.models.items():
                model.set_param_values(self.init)
                for normalize in NORMALIZE:
                    self.accs[kind + (normalize,)] = GradientAccumulator(
                        model.loss(), model.params, model.inputs,
                        normalize=normalize, update=lasagne.updates.sgd,
                        learning_rate=LR, num_tokens=model.num_tokens(),
                        vocab_size=V, name="accum_" + normalize)
            reference = self.models.get(("onehot", "sample"))
            if reference is not None:
                # The independent reference: per-sentence gradients only.
                self.grad_fn = theano.function(
                    reference.inputs,
                    theano.grad(reference.loss(), reference.params))

    def run(self, input_kind, batching, normalize, batches):
        """Reset weights, accumulate ``batches`` (index arrays), apply once.

        Returns the parameters after ``apply`` (name -> array) and the
        per-call (samples, tokens) counts.
        """
        model = self.models[(input_kind, batching)]
        acc = self.accs[(input_kind, batching, normalize)]
        model.set_param_values(self.init)
        corpus = window_corpus()
        counts = []
        for indices in batches:
            arrays = make_batch(corpus, indices, batching, input_kind, V,
                                dtype=self.dtype)
            r = acc.accumulate(*arrays)
            counts.append((r.samples, r.tokens))
        result = acc.apply()
        assert result.applied
        assert result.samples == len(LENGTHS)
        assert result.tokens == sum(LENGTHS) + len(LENGTHS)
        return model.param_values(), counts


@pytest.fixture(scope="module")
def f64():
    return Paths("float64", [("onehot", "sample"), ("ids", "sample"),
                             ("onehot", "bucket"), ("ids", "bucket"),
                             ("ids", "mask")])


@pytest.fixture(scope="module")
def f32():
    return Paths("float32", [("ids", "sample"), ("ids", "bucket"),
                             ("ids", "mask")])


def one_by_one():
    return [np.array([i]) for i in range(len(LENGTHS))]


def buckets():
    plan = plan_epoch(window_corpus(), "bucket", batch_size=3, seed=5)
    return [np.asarray(b) for b in plan]


def padded():
    # 4 sentences per batch in a fixed order that mixes lengths: padding.
    plan = plan_epoch(window_corpus(), "mask", batch_size=4, seed=5)
    return [np.asarray(b) for b in plan]


def rel_err(got, want):
    """Largest relative error over parameters: ||got - want|| / ||want||
    (0 for parameters equal to 0 in both, e.g. untrained deltas)."""
    assert sorted(got) == sorted(want)
    worst = 0.0
    for k in want:
        diff = np.linalg.norm(np.asarray(got[k], np.float64) - want[k])
        if diff:
            worst = max(worst, diff / np.linalg.norm(want[k]))
    return worst


def deltas(values, init):
    return {k: values[k] - init[k] for k in init}


def numpy_sgd(paths, normalize):
    """Independent reference: per-sentence theano.grad gradients summed in
    numpy, divided by the window's sentences or target tokens, SGD step."""
    model = paths.models[("onehot", "sample")]
    model.set_param_values(paths.init)
    corpus = window_corpus()
    names = [p.name for p in model.params]
    total = {k: np.zeros_like(paths.init[k], dtype=np.float64)
             for k in names}
    tokens = 0
    eye = np.eye(V)
    for i in range(len(corpus)):
        s = corpus.sentence(i)
        x = np.concatenate([[1], s])            # <s> w1 .. wn
        y = np.concatenate([s, [2]]).astype(np.int32)   # w1 .. wn </s>
        grads = paths.grad_fn(eye[x][None].astype(paths.dtype), y)
        for k, g in zip(names, grads):
            total[k] += g
        tokens += len(y)
    denominator = len(corpus) if normalize == "samples" else tokens
    want = dict(paths.init)     # hid_init, cell_init: not trained
    for k in names:
        want[k] = paths.init[k] - LR * total[k] / denominator
    return want


def test_window_spans_buckets_of_several_lengths():
    corpus = window_corpus()
    plan = buckets()
    lengths = [set(corpus.lengths[b].tolist()) for b in plan]
    assert all(len(s) == 1 for s in lengths)                # no mixing
    assert len(set().union(*lengths)) == len(set(LENGTHS))  # all lengths
    assert sorted(np.concatenate(plan).tolist()) == list(range(len(LENGTHS)))
    assert max(len(b) for b in plan) == 3 and min(len(b) for b in plan) < 3
    assert any(len(set(corpus.lengths[b].tolist())) > 1 for b in padded())


@pytest.mark.parametrize("normalize", NORMALIZE)
def test_per_sentence_equals_numpy_reference(f64, normalize):
    want = numpy_sgd(f64, normalize)
    got, counts = f64.run("onehot", "sample", normalize, one_by_one())
    assert counts == [(1, n + 1) for n in LENGTHS]
    assert rel_err(deltas(got, f64.init), deltas(want, f64.init)) < 1e-10


@pytest.mark.parametrize("input_kind", ["onehot", "ids"])
@pytest.mark.parametrize("normalize", NORMALIZE)
def test_bucketed_equals_one_by_one_float64(f64, input_kind, normalize):
    ref, _ = f64.run(input_kind, "sample", normalize, one_by_one())
    got, counts = f64.run(input_kind, "bucket", normalize, buckets())
    corpus = window_corpus()
    # Each call counts B samples and B*T tokens (T = words + 1).
    assert counts == [(len(b), len(b) * (corpus.lengths[b[0]] + 1))
                      for b in buckets()]
    assert rel_err(deltas(got, f64.init), deltas(ref, f64.init)) < 1e-10
    want = numpy_sgd(f64, normalize)
    assert rel_err(deltas(got, f64.init), deltas(want, f64.init)) < 1e-10
    assert rel_err(got, want) < TOL["float64"]


@pytest.mark.parametrize("normalize", NORMALIZE)
def test_masked_equals_one_by_one_float64(f64, normalize):
    ref, _ = f64.run("ids", "sample", normalize, one_by_one())
    got, counts = f64.run("ids", "mask", normalize, padded())
    corpus = window_corpus()
    # Padding is not counted: tokens are the real targets of the batch.
    assert counts == [(len(b), int((corpus.lengths[b] + 1).sum()))
                      for b in padded()]
    assert rel_err(deltas(got, f64.init), deltas(ref, f64.init)) < 1e-10
    want = numpy_sgd(f64, normalize)
    assert rel_err(deltas(got, f64.init), deltas(want, f64.init)) < 1e-10


@pytest.mark.parametrize("batching", ["sample", "bucket"])
def test_onehot_and_ids_give_same_params(f64, batching):
    batches = one_by_one() if batching == "sample" else buckets()
    onehot, _ = f64.run("onehot", batching, "tokens", batches)
    ids, _ = f64.run("ids", batching, "tokens", batches)
    assert rel_err(deltas(ids, f64.init), deltas(onehot, f64.init)) < 1e-10


@pytest.mark.parametrize("batching", ["bucket", "mask"])
@pytest.mark.parametrize("normalize", NORMALIZE)
def test_batched_equals_one_by_one_float32(f32, batching, normalize):
    ref, _ = f32.run("ids", "sample", normalize, one_by_one())
    got, _ = f32.run("ids", batching, normalize,
                     buckets() if batching == "bucket" else padded())
    assert all(v.dtype == np.float32 for v in got.values())
    assert rel_err(got, ref) < TOL["float32"]
    # The step itself is resolved well beyond float32 noise.
    assert rel_err(deltas(got, f32.init), deltas(ref, f32.init)) < 1e-4


def test_wrong_denominator_would_be_caught(f64):
    """The comparison can fail: 'samples' and 'tokens' differ by far more
    than the tolerance on this window, as does a window missing one
    sentence."""
    samples, _ = f64.run("ids", "bucket", "samples", buckets())
    tokens, _ = f64.run("ids", "bucket", "tokens", buckets())
    assert rel_err(deltas(samples, f64.init), deltas(tokens, f64.init)) > 0.1
    want = numpy_sgd(f64, "samples")
    model = f64.models[("ids", "bucket")]
    acc = f64.accs[("ids", "bucket", "samples")]
    model.set_param_values(f64.init)
    for indices in buckets()[1:]:
        acc.accumulate(*make_batch(window_corpus(), indices, "bucket", "ids",
                                   V))
    acc.apply()
    short = model.param_values()
    assert rel_err(deltas(short, f64.init), deltas(want, f64.init)) > 1e-3
