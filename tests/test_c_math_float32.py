"""The float32 C maths of our operations, against independent references.

``lstm_accum.ops.base.SUPPORT_CODE`` carries its own branch-free ``exp`` and
``tanh`` for float (Cephes' polynomials); float64 uses the C library's.
Float32 is the default training path, so it is checked here on its own:

* ``exp`` and ``tanh`` through a tiny test operation (a
  :class:`lstm_accum.ops.CpuCOp` whose loop applies the support code's
  functions elementwise, compiled with the same flags as our operations), and
  the sigmoid and ``tanh`` as the fused LSTM computes them (zero weights, so
  the gate activations it returns are ``sigmoid(x)`` and ``tanh(x)``), over a
  dense grid of [-100, 100] plus +-inf, NaN, zeros, subnormals and the
  branch points, against numpy in float64.  Bounds: 2 ulps of the float32
  result for exp and tanh (measured: 1.003 and 1.19), 3 for the sigmoid
  (measured: 2.47), except where the float32 result is not a normal number
  (stated per case below);
* the fused LSTM in float32 against Lasagne's scan ``LSTMLayer`` (independent
  code) with ``grad_clipping`` biting, and the softmax NLL in float32 against
  Theano's ``crossentropy_softmax_argmax_1hot_with_bias``: each float32
  result is as close to the float64 reference as the independent float32
  implementation is (within a small factor), and close to it.
"""
import numpy as np
import pytest

import lstm_accum
from lstm_accum.backend import theano, T, lasagne
from lstm_accum.ops import CpuCOp, FusedLSTM, softmax_nll

from helpers import float64

L = lasagne.layers
FLT_MIN = float(np.finfo(np.float32).tiny)        # 2**-126
#: From here on, exp's scale factor 2**n has n = 128: it overflows (inf).
EXP_SCALE_OVERFLOW = float(np.float32(127.5 / np.log2(np.e)))
#: ln(FLT_MAX): above it exp overflows in float32 anyway.
LN_FLT_MAX = float(np.log(np.finfo(np.float32).max))
#: Below this, lstm_accum_exp clamps its argument (result FLT_MIN).
EXP_CLAMP_LOW = -87.3365448
ULPS = 2.0
#: The sigmoid adds two roundings (1 + e, then 1 / .) to exp's error.
SIGMOID_ULPS = 3.0


class MathProbe(CpuCOp):
    """Test operation: ``x (float32 vector) -> lstm_accum_exp(x),
    lstm_accum_tanh(x)`` elementwise, in a vectorisable loop like ours."""
    __props__ = ("probe",)
    c_version = 1
    c_loops = r"""
__attribute__((noinline)) static void lstm_accum_test_probe(
    npy_intp n, const float* __restrict__ x, float* __restrict__ e,
    float* __restrict__ t)
{
    for (npy_intp k = 0; k < n; ++k) {
        e[k] = lstm_accum_exp(x[k]);
        t[k] = lstm_accum_tanh(x[k]);
    }
}
"""

    def __init__(self, probe="exp,tanh"):
        self.probe = probe

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        assert x.dtype == "float32" and x.ndim == 1
        return theano.Apply(self, [x], [x.type(), x.type()])

    def c_code(self, node, name, inputs, outputs, sub):
        x, = inputs
        e, t = outputs
        fail = sub["fail"]
        return """
        {
        PyArrayObject* cx = PyArray_GETCONTIGUOUS(%(x)s);
        npy_intp n;
        if (!cx) { %(fail)s }
        n = PyArray_DIMS(cx)[0];
        if (lstm_accum_prepare_output(&%(e)s, 1, &n, NPY_FLOAT32)
                || lstm_accum_prepare_output(&%(t)s, 1, &n, NPY_FLOAT32)) {
            Py_DECREF(cx);
            %(fail)s
        }
        lstm_accum_test_probe(n, (const float*)PyArray_DATA(cx),
                              (float*)PyArray_DATA(%(e)s),
                              (float*)PyArray_DATA(%(t)s));
        Py_DECREF(cx);
        }
        """ % locals()


def _grid():
    """float32: [-100, 100] in steps of 1e-4, plus special points."""
    dense = np.linspace(-100, 100, 2000001)
    f32 = np.float32
    points = [0.0, -0.0, 1e-30, -1e-30, 1e-42, -1e-42, FLT_MIN, -FLT_MIN,
              EXP_CLAMP_LOW, LN_FLT_MAX, EXP_SCALE_OVERFLOW]
    for p in (0.625, -0.625, 0.3125, EXP_CLAMP_LOW, EXP_SCALE_OVERFLOW):
        p = f32(p)
        points += [np.nextafter(p, f32(-np.inf)), np.nextafter(p, f32(np.inf))]
    return np.concatenate([dense, points]).astype(np.float32)


SPECIALS = np.array([np.inf, -np.inf, np.nan], np.float32)


def ulps(got, want):
    """|got - want| in units of the float32 spacing at ``want`` (float64)."""
    spacing = np.spacing(np.abs(want.astype(np.float32))).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


@pytest.fixture(scope="module")
def probe():
    x = T.vector(dtype="float32")
    fn = theano.function([x], MathProbe()(x))
    assert any(isinstance(n.op, MathProbe)
               for n in fn.maker.fgraph.toposort())
    return fn


@pytest.fixture(scope="module")
def fused_gates():
    """f(x) -> (sigmoid(x), tanh(x)) as the fused LSTM's forward loop computes
    its gates: zero weights, zero bias and states, so the input gate is
    sigmoid(x) and the cell candidate tanh(x) exactly (x + 0 is x)."""
    H = 16
    x = T.tensor3(dtype="float32")
    zeros_v = np.zeros(H, np.float32)
    b = np.zeros(4 * H, np.float32)
    W = np.zeros((H, H), np.float32)
    B = T.iscalar()
    s0 = T.zeros((B, H), dtype="float32")
    _, _, act = FusedLSTM(0.0)(x, b, W, W, W, W, zeros_v, zeros_v, zeros_v,
                               s0, s0)
    fn = theano.function([x, B], act)
    assert any(isinstance(n.op, FusedLSTM) for n in fn.maker.fgraph.toposort())

    def run(values):
        n = len(values)
        rows = -(-n // H)
        padded = np.zeros(rows * H, np.float32)
        padded[:n] = values
        inp = np.zeros((1, rows, 4 * H), np.float32)
        inp[0, :, :H] = padded.reshape(rows, H)           # input gate
        inp[0, :, 2 * H:3 * H] = padded.reshape(rows, H)  # cell candidate
        a = fn(inp, rows)[0]
        return (a[:, :H].reshape(-1)[:n], a[:, 2 * H:3 * H].reshape(-1)[:n])
    return run


def test_exp_within_2_ulps_where_the_result_is_normal(probe):
    x = _grid()
    x = x[(x >= EXP_CLAMP_LOW) & (x < EXP_SCALE_OVERFLOW)]
    got, _ = probe(x)
    assert got.dtype == np.float32
    err = ulps(got, np.exp(x.astype(np.float64)))
    assert err.max() <= ULPS, (err.max(), x[np.argmax(err)])


def test_exp_saturates_outside_the_normal_range(probe):
    """Below the clamp at -87.3365 the result stays FLT_MIN (absolute error
    at most FLT_MIN, never negative, never NaN); past ln(FLT_MAX) it is inf,
    as float32 exp is; exp(-inf) is FLT_MIN, exp(inf) inf, exp(NaN) NaN."""
    x = _grid()
    low = x[x < EXP_CLAMP_LOW]
    got, _ = probe(low)
    assert (got > 0).all() and (got <= FLT_MIN * (1 + 1e-6)).all()
    assert np.abs(got - np.exp(low.astype(np.float64))).max() <= FLT_MIN
    high = x[x > LN_FLT_MAX]
    assert np.isposinf(probe(high)[0]).all()
    got, _ = probe(SPECIALS)
    assert got[0] == np.inf and 0 < got[1] <= FLT_MIN and np.isnan(got[2])


def test_exp_overflows_where_its_docstring_says(probe):
    """lstm_accum.ops.base documents it: from 88.3763 on (n = 128 in the
    scale 2**n) the result is +inf, short of float32's own overflow at
    ln(FLT_MAX) = 88.7228; just below, it is finite and within 2 ulps."""
    x = _grid()
    inside = x[(x >= EXP_SCALE_OVERFLOW) & (x < LN_FLT_MAX)]
    assert inside.size > 1000
    got, _ = probe(inside)
    assert np.all(np.isposinf(got))
    below = np.float32(EXP_SCALE_OVERFLOW)
    below = np.array([np.nextafter(below, np.float32(0))] * 2,
                     dtype=np.float32)
    got, _ = probe(below)
    assert np.all(np.isfinite(got))
    assert ulps(got, np.exp(below.astype(np.float64))).max() <= ULPS


def test_tanh_within_2_ulps_everywhere(probe, fused_gates):
    x = _grid()
    want = np.tanh(x.astype(np.float64))
    for got in (probe(x)[1], fused_gates(x)[1]):
        assert got.dtype == np.float32
        err = ulps(got, want)
        assert err.max() <= ULPS, (err.max(), x[np.argmax(err)])
        # subnormal inputs come back unchanged, the sign is kept
        tiny = np.abs(x) < FLT_MIN
        assert np.array_equal(got[tiny], x[tiny])
        assert (np.sign(got) == np.sign(x)).all()
    for got in (probe(SPECIALS)[1], fused_gates(SPECIALS)[1]):
        assert got[0] == 1.0 and got[1] == -1.0 and np.isnan(got[2])


def test_sigmoid_within_3_ulps_where_the_result_is_normal(fused_gates):
    """``1 / (1 + exp(-x))`` in the fused LSTM's loop: within 2 ulps where
    sigmoid(x) >= FLT_MIN; below (x < -87.33) within FLT_MIN absolute (it
    returns 0 or a value near FLT_MIN)."""
    x = _grid()
    x64 = x.astype(np.float64)
    want = 1.0 / (1.0 + np.exp(-x64))
    got, _ = fused_gates(x)
    assert got.dtype == np.float32
    normal = want >= FLT_MIN
    err = ulps(got[normal], want[normal])
    assert err.max() <= SIGMOID_ULPS, (err.max(), x[normal][np.argmax(err)])
    assert np.abs(got[~normal] - want[~normal]).max() <= FLT_MIN
    assert ((got >= 0) & (got <= 1)).all()
    got, _ = fused_gates(SPECIALS)
    assert got[0] == 1.0 and got[1] == 0.0 and np.isnan(got[2])


# -- whole operations in float32 against independent code ---------------------

V_IN, H = 11, 8
CLIP = 0.3


def _lstm_fns(dtype, clip, impl):
    """f(x, r) -> [hidden] + gradients of sum(hidden * r) w.r.t. the params,
    for Lasagne's scan layer (impl None) or ours; the same seeded weights."""
    saved = theano.config.floatX
    theano.config.floatX = dtype
    try:
        l_in = L.InputLayer((None, None, V_IN))
        kwargs = dict(peepholes=True, grad_clipping=clip)
        if impl is None:
            layer = L.LSTMLayer(l_in, H, **kwargs)
        else:
            layer = lstm_accum.FusedLSTMLayer(l_in, H, impl=impl, **kwargs)
        rng = np.random.RandomState(21)
        for p in layer.get_params(trainable=True):
            v = p.get_value()
            p.set_value(rng.uniform(-1.5, 1.5, v.shape).astype(dtype))
        X, R = T.tensor3("X", dtype=dtype), T.tensor3("R", dtype=dtype)
        out = L.get_output(layer, X)
        grads = theano.grad((out * R).sum(), layer.get_params(trainable=True))
        fn = theano.function([X, R], [out] + grads)
    finally:
        theano.config.floatX = saved
    names = {type(n.op).__name__ for n in fn.maker.fgraph.toposort()}
    assert ("FusedLSTMGrad" in names) == (impl == "fused"), names
    return fn


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def test_fused_lstm_float32_as_close_as_lasagne_float32_with_clip_biting():
    rng = np.random.RandomState(8)
    x = rng.uniform(-2, 2, (3, 9, V_IN))
    r = rng.normal(0, 3, (3, 9, H))   # large: the clip at 0.3 bites
    x32, r32 = x.astype(np.float32), r.astype(np.float32)
    want = _lstm_fns("float64", CLIP, None)(x, r)           # scan, float64
    scan32 = _lstm_fns("float32", CLIP, None)(x32, r32)
    ours32 = _lstm_fns("float32", CLIP, "fused")(x32, r32)
    # the clip is active: without it, the reference gradients differ by far
    # more than the tolerances below
    free = _lstm_fns("float64", False, None)(x, r)
    assert max(_rel(f, w) for f, w in zip(free[1:], want[1:])) > 1e-2
    for k, (w, s, o) in enumerate(zip(want, scan32, ours32)):
        assert o.dtype == np.float32 and o.shape == w.shape
        err_ours, err_scan = _rel(o, w), _rel(s, w)
        assert err_ours < 2e-5, (k, err_ours)
        assert err_ours <= 4 * err_scan + 1e-6, (k, err_ours, err_scan)
        assert _rel(o, s) < 2e-5, k


def test_softmax_nll_float32_as_close_as_theano_float32():
    rng = np.random.RandomState(4)
    N, V = 40, 300
    logits = rng.normal(0, 6, (N, V))
    b = rng.normal(0, 2, V)
    y = rng.randint(0, V, N).astype(np.int32)
    r = rng.normal(0, 2, N)

    def compile_(dtype, ours):
        x, bb = T.matrix(dtype=dtype), T.vector(dtype=dtype)
        yy, rr = T.ivector(), T.vector(dtype=dtype)
        if ours:
            nll = softmax_nll(x, bb, yy)
        else:
            nll = T.nnet.crossentropy_softmax_argmax_1hot_with_bias(
                x, bb, yy)[0]
        fn = theano.function([x, bb, yy, rr], [nll] + theano.grad(
            (nll * rr).sum(), [x, bb]))
        names = {type(n.op).__name__ for n in fn.maker.fgraph.toposort()}
        assert ("SoftmaxNLL" in names) == ours, names
        return fn

    with float64():
        want = compile_("float64", False)(logits, b, y, r)
    args32 = [logits.astype(np.float32), b.astype(np.float32), y,
              r.astype(np.float32)]
    theirs = compile_("float32", False)(*args32)
    ours = compile_("float32", True)(*args32)
    for k, (w, t, o) in enumerate(zip(want, theirs, ours)):
        assert o.dtype == np.float32
        err_ours, err_theirs = _rel(o, w), _rel(t, w)
        assert err_ours < 1e-6, (k, err_ours)
        assert err_ours <= 4 * err_theirs + 1e-7, (k, err_ours, err_theirs)
