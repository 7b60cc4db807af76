"""The forward and the gradient of a summed softmax cross-entropy in one
pass (``SoftmaxNLLAndGrad``) compute what the two passes and SciPy do.

References: the two operations it stands for (``SoftmaxNLL``, then
``SoftmaxNLLGrad`` of a gradient of one), compiled without the rewrite,
bit for bit; SciPy's ``logsumexp`` and ``softmax`` in float64 for the
numbers themselves.  Also: where the rewrite applies and where it must
not, errors for bad targets and shapes, Theano's Python linker.  Its
results on 1, 2 and 3 threads: ``tests/test_team.py``.
"""
import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from lstm_accum.backend import theano, T
from lstm_accum.ops.softmax_nll import (SoftmaxNLL, SoftmaxNLLAndGrad,
                                       SoftmaxNLLGrad, WITH_GRAD, softmax_nll)
from lstm_accum.ops.team import include_team, team_unavailable

PY_MODE = theano.Mode(linker="py", optimizer="fast_run")


def _graph(dtype, index, cost=lambda nll: nll.sum()):
    x = T.matrix("logits", dtype=dtype)
    b = T.vector("b", dtype=dtype)
    y = T.vector("y", dtype=index)
    nll = softmax_nll(x, b, y)
    return [x, b, y], [nll] + theano.grad(cost(nll), [x, b])


def _ops(fn):
    return [type(n.op) for n in fn.maker.fgraph.toposort()
            if "Softmax" in type(n.op).__name__]


def _data(rng, N, V, dtype, index):
    return ((rng.randn(N, V) * 3).astype(dtype),
            rng.randn(V).astype(dtype),
            rng.randint(0, V, N).astype(index))


def _reference(x, b, y):
    """float64 nll, softmax - onehot, its sum over the rows (SciPy)."""
    z = x.astype(np.float64) + b.astype(np.float64)
    rows = np.arange(len(y))
    d = softmax(z, axis=1)
    d[rows, y] -= 1
    return logsumexp(z, axis=1) - z[rows, y], d, d.sum(axis=0)


def test_a_summed_loss_gets_one_pass():
    ins, outs = _graph("float32", "int32")
    assert _ops(theano.function(ins, outs)) == [SoftmaxNLLAndGrad]
    assert _ops(theano.function(ins, outs[1:])) == [SoftmaxNLLAndGrad]


@pytest.mark.parametrize("cost", [
    lambda nll: nll.mean(),                       # g = 1 / N
    lambda nll: (nll * np.float32(2)).sum(),      # g = 2
    lambda nll: (nll * T.fvector("r")).sum(),     # g = r
], ids=["mean", "twice", "weighted"])
def test_other_gradients_keep_the_two_passes(cost):
    x, b, y = T.fmatrix(), T.fvector(), T.ivector()
    nll = softmax_nll(x, b, y)
    c = cost(nll)
    ins = [x, b, y] + [v for v in theano.gof.graph.inputs([c])
                       if getattr(v, "name", None) == "r"]
    fn = theano.function(ins, theano.grad(c, [x, b]))
    assert SoftmaxNLLAndGrad not in _ops(fn)
    assert SoftmaxNLLGrad in _ops(fn)


def test_a_cost_that_uses_the_softmax_keeps_the_two_passes():
    x, b, y = T.fmatrix(), T.fvector(), T.ivector()
    nll, sm = SoftmaxNLL()(x, b, y)
    fn = theano.function([x, b, y], theano.grad(nll.sum() + sm[:, 0].sum(),
                                                [x, b]))
    assert SoftmaxNLLAndGrad not in _ops(fn)


@pytest.mark.parametrize("team", [False, True])
@pytest.mark.parametrize("dtype,index", [("float32", "int32"),
                                         ("float32", "int64"),
                                         ("float64", "int32")])
def test_equals_the_two_passes_bit_for_bit(team, dtype, index):
    # Where the team cannot run (no AVX-512, another BLAS), include_team
    # leaves the mode alone and the op runs its loops on one thread.
    on_team = team and team_unavailable() is None
    ins, outs = _graph(dtype, index)
    mode = theano.compile.mode.get_default_mode()
    if team:
        mode = include_team(mode)
    one = theano.function(ins, outs, mode=mode)
    two = theano.function(ins, outs, mode=mode.excluding(WITH_GRAD))
    assert _ops(one) == [SoftmaxNLLAndGrad]
    assert all(op.team == on_team for op in
               (n.op for n in one.maker.fgraph.toposort())
               if type(op) is SoftmaxNLLAndGrad)
    assert SoftmaxNLLGrad in _ops(two)
    rng = np.random.RandomState(1)
    # row counts around the blocks of 16; 333 x 2000 is shared out
    for N, V in ((0, 5), (1, 1), (15, 7), (16, 7), (17, 7), (40, 300),
                 (333, 2000)):
        args = _data(rng, N, V, dtype, index)
        args[2][:2] = (0, V - 1)[:N]
        for name, a, w in zip(("nll", "dlogits", "db"), one(*args),
                              two(*args)):
            assert a.dtype == np.dtype(dtype) and a.shape == w.shape
            assert np.array_equal(a, w), (name, N, V)


@pytest.mark.parametrize("linker", ["c", "py"])
def test_equals_scipy_reference(linker):
    mode = PY_MODE if linker == "py" else None
    rng = np.random.RandomState(2)
    for dtype, tol in (("float64", 1e-12), ("float32", 2e-6)):
        ins, outs = _graph(dtype, "int32")
        fn = theano.function(ins, outs, mode=mode)
        assert _ops(fn) == [SoftmaxNLLAndGrad]
        for N, V in ((3, 4), (17, 50), (70, 1001)):
            args = _data(rng, N, V, dtype, "int32")
            for name, a, w in zip(("nll", "dlogits", "db"), fn(*args),
                                  _reference(*args)):
                err = np.abs(a - w).max() / max(np.abs(w).max(), 1e-300)
                assert err < tol, (dtype, name, N, V, err)


@pytest.mark.parametrize("linker", ["c", "py"])
def test_bad_targets_and_shapes_raise(linker):
    ins, outs = _graph("float32", "int32")
    fn = theano.function(ins, outs,
                         mode=PY_MODE if linker == "py" else None)
    assert _ops(fn) == [SoftmaxNLLAndGrad]
    x, b, y = _data(np.random.RandomState(3), 4, 6, "float32", "int32")
    for bad, pattern in ((np.array([0, 1, 6, 2], "int32"), "target 6"),
                         (np.array([0, -1, 2, 2], "int32"), "target -1"),
                         (y[:3], "inconsistent shapes")):
        with pytest.raises(ValueError, match=pattern):
            fn(x, b, bad)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        fn(x, b[:5], y)


def test_infer_shape_needs_no_computation():
    x, b, y = T.fmatrix(), T.fvector(), T.ivector()
    nll, dx, db = SoftmaxNLLAndGrad()(x, b, y)
    fn = theano.function([x, b, y], [nll.shape, dx.shape, db.shape])
    assert _ops(fn) == []
    got = fn(np.zeros((3, 5), "float32"), np.zeros(5, "float32"),
             np.zeros(3, "int32"))
    assert [tuple(s) for s in got] == [(3,), (3, 5), (5,)]
