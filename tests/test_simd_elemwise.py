"""The apply step's vectorised loops (SimdElemwise) against Theano's own.

References: Theano's ``Elemwise`` loops, compiled from the same graph
without the rewrite (the parameters and optimizer state after several
windows must be equal bit for bit, for the update rules Lasagne ships),
and NumPy (Adagrad's formula, operation by operation in float32; the
strided and broadcast cases that stay in Theano's code).
"""
import numpy as np
import pytest

from lstm_accum.backend import theano, T, lasagne
from lstm_accum.accumulation import GradientAccumulator
from lstm_accum.accumulation.graphs import apply_mode, apply_updates
from lstm_accum.accumulation.window import window_variables
from lstm_accum.ops.simd_elemwise import SimdElemwise, include_simd_elemwise

# Odd sizes: the loops' vector remainders run too; the second matrix has
# more than 2^16 elements, which the team of threads shares out (its shares
# end inside the vector loops' blocks). The vector (a bias) stays in
# Theano's loops.
SHAPES = [(37, 53), (263, 257), (53,)]
RULES = {
    "adagrad": dict(learning_rate=0.05),
    "adam": dict(learning_rate=0.01),
    "rmsprop": dict(learning_rate=0.01),
    "momentum": dict(learning_rate=0.1),
}
WINDOWS = 6      # the fourth is bad (non-finite): nothing may change


def _simd_nodes(fn):
    return [n for n in fn.maker.fgraph.apply_nodes
            if isinstance(n.op, SimdElemwise)]


def _run(rule, dtype, simd, max_norm=None):
    """Parameters and state after WINDOWS windows of fixed accumulators."""
    rng = np.random.RandomState(7)
    params = [theano.shared(rng.randn(*s).astype(dtype), name="p%d" % k)
              for k, s in enumerate(SHAPES)]
    window = window_variables(params)
    app = apply_updates(params, window, "samples",
                        getattr(lasagne.updates, rule),
                        update_kwargs=RULES[rule], max_norm=max_norm)
    mode = theano.compile.mode.get_default_mode()
    fn = theano.function([], app.outputs, updates=app.updates,
                         mode=include_simd_elemwise(mode) if simd else mode)
    data = np.random.RandomState(11)
    for w in range(WINDOWS):
        for acc in window.accumulators:
            g = data.randn(*acc.get_value(borrow=True).shape) * 10 ** (w - 2)
            if w == 3:
                g.flat[5] = np.inf
            acc.set_value(g.astype(dtype))
        window.samples.set_value(np.int64(3 + w))
        ok = fn()[0]
        assert bool(ok) == (w != 3)
        # the window is emptied either way, an Inf included
        for acc in window.accumulators:
            assert not acc.get_value(borrow=True).any()
    values = [v.get_value() for v in params + app.optimizer_state]
    return values, fn


@pytest.mark.parametrize("rule", sorted(RULES))
def test_update_rules_are_bit_identical_to_theano_loops(rule):
    simd, fn = _run(rule, "float32", simd=True)
    assert _simd_nodes(fn), "no vectorised loop in the apply step"
    plain, _ = _run(rule, "float32", simd=False)
    assert len(simd) == len(plain)
    for a, b in zip(simd, plain):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_float64_and_clipping_are_bit_identical():
    simd, fn = _run("adam", "float64", simd=True, max_norm=0.5)
    assert _simd_nodes(fn)
    plain, _ = _run("adam", "float64", simd=False, max_norm=0.5)
    for a, b in zip(simd, plain):
        np.testing.assert_array_equal(a, b)


def test_adagrad_equals_numpy_float32_arithmetic():
    # Lasagne's Adagrad, as Theano's graph computes it (eps + accu + g^2,
    # left to right), every operation rounded to float32.
    simd, _ = _run("adagrad", "float32", simd=True)
    rng = np.random.RandomState(7)
    params = [rng.randn(*s).astype("float32") for s in SHAPES]
    accus = [np.zeros_like(p) for p in params]
    lr, eps = np.float32(0.05), np.float32(1e-6)
    data = np.random.RandomState(11)
    for w in range(WINDOWS):
        grads = [(data.randn(*p.shape) * 10 ** (w - 2)).astype("float32")
                 for p in params]
        if w == 3:
            continue
        for p, a, g in zip(params, accus, grads):
            g = g / np.float32(3 + w)
            sq = g * g
            p -= (lr * g) / np.sqrt((eps + a) + sq)
            a += sq
    for got, want in zip(simd, params + accus):
        np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def elementwise_fn():
    x = T.fmatrix("x")
    y = T.fmatrix("y")
    row = T.frow("row")
    s = T.fscalar("s")
    out = [T.sqrt(x * x + y) / (s + 1), x * row - s]
    mode = include_simd_elemwise(theano.compile.mode.get_default_mode())
    return theano.function([x, y, row, s], out, mode=mode)


def test_strided_and_broadcast_inputs_stay_exact(elementwise_fn):
    # Theano's own code runs the cases the flat loop does not take: a
    # transposed (strided) input, a row broadcast against a matrix.
    rng = np.random.RandomState(3)
    x = rng.rand(40, 30).astype("float32")
    y = rng.rand(30, 40).astype("float32").T
    row = rng.rand(1, 30).astype("float32")
    s = np.float32(0.5)
    for args in ((x, y), (x, np.ascontiguousarray(y)), (x[:, ::-1], y)):
        a, b = elementwise_fn(args[0], args[1], row, s)
        xx, yy = args
        np.testing.assert_array_equal(
            a, np.sqrt(xx * xx + yy) / (s + np.float32(1)))
        np.testing.assert_array_equal(b, xx * row - s)
    assert _simd_nodes(elementwise_fn)


def test_the_accumulator_apply_step_uses_the_loops():
    # The mode GradientAccumulator compiles its apply step with.
    p = theano.shared(np.ones((4, 5), "float32"))
    x = T.fmatrix("x")
    acc = GradientAccumulator((x * p).sum(), [p], [x], normalize="sum")
    assert _simd_nodes(acc.apply_fn)
    assert apply_mode() is not theano.compile.mode.get_default_mode()


def _joined(fn):
    return [n for n in _simd_nodes(fn) if len(n.outputs) > 1]


@pytest.mark.parametrize("rule,state", [("adagrad", 1), ("adam", 2)])
def test_each_matrix_is_one_loop(rule, state):
    # The averaged gradient, read by several expressions of the rule, the
    # rule's state, the parameter and the accumulator's new zeros: one
    # loop per matrix, writing the state, the parameter and the zeros in
    # place; the results above stay bit-identical.
    _, fn = _run(rule, "float32", simd=True)
    joined = _joined(fn)
    assert len(joined) == 2, [str(n.op) for n in joined]
    for node in joined:
        assert len(node.outputs) == state + 2
        assert len(node.op.destroy_map) == state + 2
        # it reads the accumulator, not a divided copy of it
        assert any(v.name and v.name.startswith("accum/")
                   for v in node.inputs)


@pytest.fixture(scope="module")
def in_place_fn():
    """st <- st + g^2; p <- p - g / sqrt((1 + st) + g^2), in place, and
    g^2 returned too (Adagrad's pattern): one loop with three outputs, one
    of them in the place of st, which another output reads."""
    st = theano.shared(np.zeros((30, 40), "float32"), name="st")
    p = theano.shared(np.zeros((30, 40), "float32"), name="p")
    g = T.fmatrix("g")
    sq = T.sqr(g)
    mode = include_simd_elemwise(theano.compile.mode.get_default_mode())
    fn = theano.function([g], sq, mode=mode, updates=[
        (st, st + sq), (p, p - g / T.sqrt((1 + st) + sq))])
    return fn, st, p


def test_in_place_outputs_read_their_inputs_first(in_place_fn):
    # Contiguous inputs take the vectorised loop; a transposed g takes
    # Theano's strided loop: both must read st before writing it.
    fn, st, p = in_place_fn
    assert len(_joined(fn)) == 1 and len(_joined(fn)[0].outputs) == 3
    rng = np.random.RandomState(5)
    for g in (rng.rand(30, 40).astype("float32"),
              rng.rand(40, 30).astype("float32").T):
        s0 = rng.rand(30, 40).astype("float32")
        p0 = rng.rand(30, 40).astype("float32")
        st.set_value(s0)
        p.set_value(p0)
        sq = fn(g)
        want = g * g
        np.testing.assert_array_equal(sq, want)
        np.testing.assert_array_equal(st.get_value(), s0 + want)
        np.testing.assert_array_equal(
            p.get_value(), p0 - g / np.sqrt((np.float32(1) + s0) + want))
