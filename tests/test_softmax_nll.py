"""The fused softmax cross-entropy computes what an independent reference does.

References: SciPy's ``logsumexp`` and ``softmax`` in float64 (not our code)
for the losses and, by the formula ``r_n (softmax(z_n) - onehot(y_n))``, for
the gradients of ``sum(nll * r)`` with respect to the logits and the bias;
and Theano's own ``crossentropy_softmax_argmax_1hot_with_bias`` with its
gradient.  Through the C implementation and through the NumPy ``perform``
(Theano's Python linker), with int32 and int64 targets; extreme logits; the
float32 path against float64; errors for bad targets and shapes.
"""
import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from lstm_accum.backend import theano, T
from lstm_accum.ops.softmax_nll import (SoftmaxNLL, SoftmaxNLLGrad,
                                       SoftmaxNLLLoss, softmax_nll)
from lstm_accum.ops.team import include_team, team_unavailable

PY_MODE = theano.Mode(linker="py", optimizer="fast_run")
MODES = {"c": None, "py": PY_MODE}


def _compile(dtype, linker, index="int32"):
    """f(logits, b, y, r) -> [nll, d sum(nll * r) / d logits, ... / d b]."""
    x = T.matrix("logits", dtype=dtype)
    b = T.vector("b", dtype=dtype)
    y = T.vector("y", dtype=index)
    r = T.vector("r", dtype=dtype)
    nll = softmax_nll(x, b, y)
    fn = theano.function([x, b, y, r],
                         [nll] + theano.grad((nll * r).sum(), [x, b]),
                         mode=MODES[linker])
    ops = {type(n.op) for n in fn.maker.fgraph.toposort()}
    assert SoftmaxNLL in ops and SoftmaxNLLGrad in ops
    return fn


@pytest.fixture(scope="module")
def fns():
    """Compiled once per module: (dtype, linker, target dtype) -> f."""
    cache = {}

    def get(dtype="float64", linker="c", index="int32"):
        key = (dtype, linker, index)
        if key not in cache:
            cache[key] = _compile(*key)
        return cache[key]
    return get


def reference(logits, b, y, r):
    """float64 nll, gradient wrt logits, gradient wrt b (SciPy)."""
    z = np.asarray(logits, np.float64) + np.asarray(b, np.float64)
    rows = np.arange(len(y))
    nll = logsumexp(z, axis=1) - z[rows, y]
    onehot = np.zeros_like(z)
    onehot[rows, y] = 1.0
    d = np.asarray(r, np.float64)[:, None] * (softmax(z, axis=1) - onehot)
    return nll, d, d.sum(axis=0)


def _rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    if want.size == 0:
        return 0.0
    return np.abs(got - want).max() / max(np.abs(want).max(), 1e-300)


def _data(rng, N, V, scale=3.0, dtype="float64", index="int32"):
    return (rng.normal(0, scale, (N, V)).astype(dtype),
            rng.normal(0, 1, V).astype(dtype),
            rng.randint(0, V, N).astype(index),
            rng.normal(0, 2, N).astype(dtype))


@pytest.mark.parametrize("linker,index", [("c", "int32"), ("py", "int32"),
                                          ("c", "int64")])
def test_equals_scipy_reference_float64(fns, linker, index):
    f = fns("float64", linker, index)
    rng = np.random.RandomState(0)
    for N, V in ((5, 7), (1, 1), (13, 3), (4, 300)):
        args = _data(rng, N, V, index=index)
        got = f(*args)
        for name, a, w in zip(("nll", "dlogits", "db"), got,
                              reference(*args)):
            assert a.dtype == np.float64, name
            assert _rel_err(a, w) < 1e-12, (name, N, V, _rel_err(a, w))


@pytest.mark.parametrize("linker", ["c", "py"])
def test_strided_inputs(fns, linker):
    """Column slices, Fortran order, every other target: the C code takes
    contiguous copies where it needs them."""
    f = fns("float64", linker)
    logits, b, y, r = _data(np.random.RandomState(6), 10, 12)
    args = (np.asfortranarray(logits[:, ::2]), b[1::2],
            np.repeat(y // 2, 2)[::2], r)
    assert not args[0].flags.c_contiguous
    assert not (args[1].flags.c_contiguous or args[2].flags.c_contiguous)
    for a, w in zip(f(*args), reference(*args)):
        assert _rel_err(a, w) < 1e-12


@pytest.mark.parametrize("linker", ["c", "py"])
def test_extreme_and_equal_logits_are_finite_and_exact(fns, linker):
    f = fns("float64", linker)
    V = 6
    big = np.full((4, V), -1e4)
    big[:, 2] = 1e4
    big[3, 4] = 1e4                      # a tie for the maximum
    logits = np.vstack([big, np.full((1, V), 123.25)])   # all equal
    b = np.zeros(V)
    y = np.array([2, 0, 5, 4, 1], "int32")
    r = np.array([1.0, -2.0, 0.5, 1.0, 3.0])
    nll, dx, db = f(logits, b, y, r)
    assert np.isfinite(nll).all() and np.isfinite(dx).all()
    # by hand: the target at the max costs 0, one 2e4 below it 2e4, a tie
    # for the max log 2, any class of an all-equal row log V
    assert np.allclose(nll, [0.0, 2e4, 2e4, np.log(2), np.log(V)],
                       rtol=1e-15, atol=0)
    want = reference(logits, b, y, r)
    for a, w in zip((nll, dx, db), want):
        assert _rel_err(a, w) < 1e-12
    # float32 (C): the same by hand values
    nll32, dx32, _ = fns("float32", "c")(logits.astype("float32"),
                                         b.astype("float32"), y,
                                         r.astype("float32"))
    assert np.isfinite(nll32).all() and np.isfinite(dx32).all()
    assert np.allclose(nll32, want[0], rtol=1e-6, atol=0)
    assert np.abs(dx32 - want[1]).max() < 1e-6


def test_float32_close_to_float64(fns):
    f32, f64 = fns("float32", "c"), fns("float64", "c")
    rng = np.random.RandomState(1)
    args = _data(rng, 40, 50, scale=4.0)
    want = f64(*args)
    got = f32(*[a.astype("float32") if a.dtype == np.float64 else a
                for a in args])
    for name, a, w in zip(("nll", "dlogits", "db"), got, want):
        assert a.dtype == np.float32, name
        assert _rel_err(a, w) < 1e-5, (name, _rel_err(a, w))


def test_float32_bias_gradient_summed_accurately(fns):
    """Summed row by row in float32, db over 20000 rows is off by ~1.4e-6
    of its largest element (numpy, same terms); the operation's sums are
    kept in double, leaving float32's final rounding."""
    f = fns("float32", "c")
    rng = np.random.RandomState(5)
    N, V = 20000, 3
    logits = rng.normal(0, 1, (N, V)).astype("float32")
    y = rng.choice(V, N, p=[0.7, 0.15, 0.15]).astype("int32")
    r = rng.uniform(0.5, 1.5, N).astype("float32")
    b = np.zeros(V, "float32")
    _, dx, db = f(logits, b, y, r)
    exact = dx.astype(np.float64).sum(axis=0)   # the same float32 terms
    assert _rel_err(db, exact) < 2e-7
    naive = np.zeros(V, np.float32)
    for row in dx:
        naive += row
    assert _rel_err(naive, exact) > 5e-7     # the test can tell them apart


@pytest.mark.parametrize("linker", ["c", "py"])
def test_equals_theano_crossentropy_softmax(fns, linker):
    x, b, y, r = T.dmatrix(), T.dvector(), T.ivector(), T.dvector()
    nll = T.nnet.crossentropy_softmax_argmax_1hot_with_bias(x, b, y)[0]
    theirs = theano.function([x, b, y, r],
                             [nll] + theano.grad((nll * r).sum(), [x, b]),
                             mode=MODES[linker])
    ours = fns("float64", linker)
    rng = np.random.RandomState(2)
    args = _data(rng, 9, 17, scale=5.0)
    for a, w in zip(ours(*args), theirs(*args)):
        assert _rel_err(a, w) < 1e-12


@pytest.mark.parametrize("linker", ["c", "py"])
def test_targets_out_of_range_raise(fns, linker):
    f = fns("float64", linker)
    logits, b, _, r = _data(np.random.RandomState(3), 3, 7)
    for bad in (7, -1, 100):
        y = np.array([0, bad, 6], "int32")
        with pytest.raises(ValueError,
                           match=r"target %d \(row 1\).*V = 7" % bad):
            f(logits, b, y, r)


@pytest.mark.parametrize("linker", ["c", "py"])
def test_gradient_op_checks_targets_and_shapes(linker):
    g, sm, y = T.dvector(), T.dmatrix(), T.ivector()
    f = theano.function([g, sm, y], SoftmaxNLLGrad()(g, sm, y),
                        mode=MODES[linker])
    sm_value = np.full((2, 4), 0.25)
    with pytest.raises(ValueError, match=r"target 4 \(row 1\).*V = 4"):
        f(np.ones(2), sm_value, np.array([0, 4], "int32"))
    with pytest.raises(ValueError, match="inconsistent shapes.*g \\(3,"):
        f(np.ones(3), sm_value, np.array([0, 1], "int32"))
    dx, db = f(np.array([1.0, 2.0]), sm_value, np.array([3, 0], "int32"))
    assert np.array_equal(dx, [[0.25, 0.25, 0.25, -0.75],
                               [-1.5, 0.5, 0.5, 0.5]])
    assert np.array_equal(db, [-1.25, 0.75, 0.75, -0.25])


@pytest.mark.parametrize("linker", ["c", "py"])
def test_inconsistent_shapes_raise(fns, linker):
    f = fns("float64", linker)
    logits, b, y, r = _data(np.random.RandomState(4), 3, 5)
    with pytest.raises(ValueError,
                       match=r"inconsistent shapes: logits \(3, 5\), b \(4,"):
        f(logits, b[:4], y, r)
    with pytest.raises(ValueError, match=r"y \(2,\)"):
        f(logits, b, y[:2], r[:2])


def test_build_time_type_errors():
    x, b, y = T.dmatrix(), T.dvector(), T.ivector()
    with pytest.raises(TypeError, match="int32 or int64, got float64"):
        softmax_nll(x, b, T.dvector())
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        softmax_nll(T.imatrix(), b, y)
    with pytest.raises(TypeError, match="logits must have 2 dimension"):
        softmax_nll(T.dtensor3(), b, y)
    with pytest.raises(TypeError, match="y must have 1 dimension"):
        softmax_nll(x, b, T.imatrix())


@pytest.mark.parametrize("linker", ["c", "py"])
def test_zero_rows(fns, linker):
    f = fns("float64", linker)
    V = 5
    nll, dx, db = f(np.zeros((0, V)), np.arange(V, dtype=float),
                    np.zeros(0, "int32"), np.zeros(0))
    assert nll.shape == (0,) and dx.shape == (0, V)
    assert db.shape == (V,) and not db.any()


def test_gradient_through_the_softmax_equals_reference():
    """A cost that uses the softmax output too: gradients equal an
    independent numpy reference (the softmax Jacobian written out)."""
    x, b, y = T.dmatrix(), T.dvector(), T.ivector()
    r, q = T.dvector(), T.dmatrix()
    nll, sm = SoftmaxNLL()(x, b, y)
    cost = (nll * r).sum() + (sm * q).sum()
    f = theano.function([x, b, y, r, q], theano.grad(cost, [x, b]))
    rng = np.random.RandomState(4)
    N, V = 5, 7
    xv, bv = rng.normal(0, 2, (N, V)), rng.normal(0, 1, V)
    yv = rng.randint(0, V, N).astype("int32")
    rv, qv = rng.normal(0, 1, N), rng.normal(0, 1, (N, V))
    p = softmax(xv + bv, axis=1)
    want = np.empty((N, V))
    for n in range(N):
        J = np.diag(p[n]) - np.outer(p[n], p[n])   # d softmax / d z
        onehot = np.eye(V)[yv[n]]
        want[n] = rv[n] * (p[n] - onehot) + J.T.dot(qv[n])
    dx, db = f(xv, bv, yv, rv, qv)
    np.testing.assert_allclose(dx, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(db, want.sum(axis=0), rtol=1e-12, atol=1e-14)
    # the softmax alone
    g = theano.function([x, b, y, q], theano.grad((sm * q).sum(), x))
    want_sm = np.array([(np.diag(p[n]) - np.outer(p[n], p[n])).T.dot(qv[n])
                        for n in range(N)])
    np.testing.assert_allclose(g(xv, bv, yv, qv), want_sm, rtol=1e-12,
                               atol=1e-14)
    # y is an integer input: no gradient, disconnected
    assert theano.grad(nll.sum(), y, disconnected_inputs="ignore",
                       return_disconnected="None") is None


def test_float32_stays_float32_and_bias_is_cast():
    x, b, y = T.fmatrix(), T.dvector(), T.lvector()
    nll, sm = SoftmaxNLL()(x, b, y)
    assert nll.owner.inputs[1].dtype == "float32"     # b cast to float32
    dx = theano.grad(nll.sum(), x)
    assert nll.dtype == sm.dtype == dx.dtype == "float32"


def test_infer_shape_needs_no_computation():
    x, b, y = T.dmatrix(), T.dvector(), T.ivector()
    nll, sm = SoftmaxNLL()(x, b, y)
    dx, db = SoftmaxNLLGrad()(nll, sm, y)
    f = theano.function([x, b, y], [nll.shape, sm.shape, dx.shape,
                                    db.shape], on_unused_input="ignore")
    ops = {type(n.op) for n in f.maker.fgraph.toposort()}
    assert not ops & {SoftmaxNLL, SoftmaxNLLGrad}
    shapes = f(np.zeros((3, 8)), np.zeros(8), np.zeros(3, "int32"))
    assert [tuple(s) for s in shapes] == [(3,), (3, 8), (3, 8), (8,)]


# -- the loss alone (SoftmaxNLLLoss, put in by the rewrite) -----------------
def _loss_fn(dtype, linker, team=False, index="int32"):
    """f(logits, b, y) -> nll: with team=False, softmax_nll as the rewrite
    leaves it (SoftmaxNLLLoss); with team=True, SoftmaxNLLLoss(team=True)
    itself (its threads need neither AVX-512 nor NumPy's OpenBLAS)."""
    x = T.matrix("logits", dtype=dtype)
    b = T.vector("b", dtype=dtype)
    y = T.vector("y", dtype=index)
    nll = SoftmaxNLLLoss(team=True)(x, b, y) if team else \
        softmax_nll(x, b, y)
    fn = theano.function([x, b, y], nll, mode=MODES[linker])
    ops = [n.op for n in fn.maker.fgraph.toposort()]
    assert ops == [SoftmaxNLLLoss(team)]
    return fn


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("linker,team", [("c", False), ("c", True),
                                         ("py", False)])
def test_loss_alone_equals_the_full_forward_bit_for_bit(fns, dtype, linker,
                                                        team):
    """A graph that uses neither the softmax nor the gradient runs
    SoftmaxNLLLoss: the same nll as SoftmaxNLL's, bit for bit, and SciPy's
    within rounding; shapes whose rows the team shares (600 x 2000) and
    odd ones."""
    loss = _loss_fn(dtype, linker, team)
    full = fns(dtype, linker)
    rng = np.random.RandomState(7)
    for N, V in [(1, 1), (5, 7), (600, 2000), (33, 1031), (0, 4)]:
        x, b, y, r = _data(rng, N, V, dtype=dtype)
        got = loss(x, b, y)
        assert got.dtype == dtype and got.shape == (N,)
        np.testing.assert_array_equal(got, full(x, b, y, r)[0])
        want = reference(x, b, y, r)[0]
        assert _rel_err(got, want) < (1e-5 if dtype == "float32" else 1e-12)


def test_the_teams_rewrite_gives_the_loss_alone_its_threads():
    """Where the team runs, include_team turns the rewritten loss into
    SoftmaxNLLLoss{team=True}; where it cannot, it says why and the mode
    is left as it was."""
    x, b, y = T.fmatrix("x"), T.fvector("b"), T.ivector("y")
    mode = theano.compile.mode.get_default_mode()
    fn = theano.function([x, b, y], softmax_nll(x, b, y),
                         mode=include_team(mode))
    ops = [n.op for n in fn.maker.fgraph.toposort()]
    why = team_unavailable()
    if why is None:
        assert ops == [SoftmaxNLLLoss(team=True)]
    else:
        assert isinstance(why, str) and why
        assert include_team(mode) is mode
        assert ops == [SoftmaxNLLLoss(team=False)]


def test_loss_alone_only_where_the_softmax_is_unused(fns):
    """The softmax output or a gradient in the graph keeps SoftmaxNLL."""
    x, b, y = T.matrix("x"), T.vector("b"), T.ivector("y")
    nll, sm = SoftmaxNLL()(x, b, y)
    both = theano.function([x, b, y], [nll, sm])
    assert SoftmaxNLL in {type(n.op) for n in both.maker.fgraph.toposort()}
    assert SoftmaxNLLLoss not in {type(n.op)
                                  for n in both.maker.fgraph.toposort()}
    _compile("float64", "c")      # asserts SoftmaxNLL and its gradient


@pytest.mark.parametrize("linker", ["c", "py"])
def test_loss_alone_checks_targets_and_shapes(linker):
    loss = _loss_fn("float64", linker)
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="target 4 .row 1. is out of range"):
        loss(x, np.zeros(4), np.array([0, 4, 1], "int32"))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        loss(x, np.zeros(5), np.array([0, 1, 1], "int32"))
