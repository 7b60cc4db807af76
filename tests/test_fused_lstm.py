"""The fused LSTM operation computes what Lasagne's scan LSTMLayer computes.

Reference: ``lasagne.layers.LSTMLayer`` itself (``theano.scan`` and Theano's
automatic differentiation, not our code), compiled separately, in float64:
hidden states and the gradients of every parameter (and of learned initial
states) must agree to 1e-10, with ``grad_clipping`` active (large incoming
gradients, so the clip bites) and off, with and without peepholes, through
the C implementation and through the NumPy ``perform`` (Theano's Python
linker).  Then the model builder: ``impl='auto'`` runs the fused operation
where it applies, scan where it does not (masks), and ``'fused'`` and
``'scan'`` models of the same seed give the same losses and gradients.
"""
import numpy as np
import pytest

from lstm_accum.backend import theano, T, lasagne
from lstm_accum.exceptions import InputError
from lstm_accum.ops.fused_lstm import FusedLSTM, FusedLSTMGrad, fused_lstm
from lstm_accum.models import FusedLSTMLayer, IdLSTMLayer, build_model

from helpers import float64

L = lasagne.layers
V, H = 11, 5
PY_MODE = theano.Mode(linker="py", optimizer="fast_run")


def _randomize(layer, rng, scale=1.5):
    for p in layer.get_params(trainable=True):
        v = p.get_value()
        p.set_value(rng.uniform(-scale, scale, v.shape).astype(v.dtype))


@pytest.fixture(scope="module")
def lstm_fn():
    """``lstm_fn(peepholes, clip, learn_init, which, linker='c',
    dtype='float64')``: f(x, r) -> [hidden states] + gradients of
    sum(hidden * r), for Lasagne's scan layer (``which='scan'``) or our
    fused layer (``'fused'``, through Theano's C or Python linker).

    Both layers of one ``(peepholes, clip, learn_init, dtype)`` have the
    same seeded weights. Each layer and function is built on first use and
    shared by the tests of this module (compiling scan's gradient takes
    seconds); the functions only read their weights, so a test sees the
    same function whatever ran before it."""
    layers, fns = {}, {}

    def build(peepholes, clip, learn_init, dtype):
        saved = theano.config.floatX
        theano.config.floatX = dtype
        try:
            rng = np.random.RandomState(1 + 2 * peepholes + 4 * learn_init)
            l_in = L.InputLayer((None, None, V))
            kwargs = dict(peepholes=peepholes, grad_clipping=clip,
                          learn_init=learn_init)
            ref = L.LSTMLayer(l_in, H, **kwargs)
            ours = FusedLSTMLayer(l_in, H, impl="fused", **kwargs)
            _randomize(ref, rng)
            L.set_all_param_values(ours, L.get_all_param_values(ref))
            for name in ("cell_init", "hid_init"):
                getattr(ours, name).set_value(getattr(ref, name).get_value())
        finally:
            theano.config.floatX = saved
        return {"scan": ref, "fused": ours}

    def get(peepholes, clip, learn_init, which, linker="c", dtype="float64"):
        key = (peepholes, clip, learn_init, dtype)
        if key not in layers:
            layers[key] = build(*key)
        if key + (which, linker) in fns:
            return fns[key + (which, linker)]
        layer = layers[key][which]
        saved = theano.config.floatX
        theano.config.floatX = dtype
        try:
            X, R = T.tensor3("X"), T.tensor3("R")
            out = L.get_output(layer, X)
            grads = theano.grad((out * R).sum(),
                                layer.get_params(trainable=True))
            fn = theano.function([X, R], [out] + grads,
                                 mode=PY_MODE if linker == "py" else None)
        finally:
            theano.config.floatX = saved
        ops = [type(n.op) for n in fn.maker.fgraph.toposort()]
        if which == "fused":
            assert FusedLSTM in ops and FusedLSTMGrad in ops
            assert not any("Scan" in t.__name__ for t in ops)
        fn.param_names = [p.name for p in layer.get_params(trainable=True)]
        fns[key + (which, linker)] = fn
        return fn
    return get


CASES = [  # peepholes, grad_clipping, learn_init
    (True, 0.3, False),
    (True, False, True),
    (False, 0.3, True),
]


@pytest.mark.parametrize("linker", ["c", "py"])
@pytest.mark.parametrize("peepholes,clip,learn_init", CASES)
def test_fused_equals_lasagne_scan_float64(lstm_fn, linker, peepholes, clip,
                                           learn_init):
    ref = lstm_fn(peepholes, clip, learn_init, "scan")
    ours = lstm_fn(peepholes, clip, learn_init, "fused", linker)
    assert ours.param_names == ref.param_names
    rng = np.random.RandomState(7)
    for B, steps in ((3, 7), (1, 1), (2, 13)):
        x = rng.uniform(-2, 2, (B, steps, V))
        r = rng.normal(0, 3, (B, steps, H))  # large: the clip at 0.3 bites
        want = ref(x, r)
        got = ours(x, r)
        for name, a, b in zip(["hidden"] + ref.param_names, want, got):
            assert a.shape == b.shape, name
            err = np.abs(a - b).max() / max(np.abs(a).max(), 1e-300)
            assert err < 1e-10, (name, B, steps, err)


def test_clipping_changes_the_gradient(lstm_fn):
    """The comparison above is not vacuous: with this input, clipping at 0.3
    changes the input-weight gradient by far more than the tolerance."""
    # the same weights (learn_init=False), clipped at 0.3 and not clipped
    f_clip = lstm_fn(True, 0.3, False, "fused")
    f_free = lstm_fn(True, False, False, "fused")
    rng = np.random.RandomState(7)
    x = rng.uniform(-2, 2, (3, 7, V))
    r = rng.normal(0, 3, (3, 7, H))
    clipped, free = f_clip(x, r)[1], f_free(x, r)[1]
    assert np.abs(clipped - free).max() > 1e-2 * np.abs(free).max()


def test_fused_float32_close_to_float64(lstm_fn):
    f32 = lstm_fn(True, 5.0, False, "fused", dtype="float32")
    f64 = lstm_fn(True, 5.0, False, "fused", dtype="float64")
    rng = np.random.RandomState(3)
    x = rng.uniform(-1, 1, (4, 9, V))
    r = rng.normal(0, 1, (4, 9, H))
    got = f32(x.astype("float32"), r.astype("float32"))
    want = f64(x, r)
    assert got[0].dtype == np.float32
    for a, b in zip(want, got):
        assert np.abs(a - b).max() <= 1e-5 * max(np.abs(a).max(), 1.0)


def test_stacked_recurrent_weights_equal_the_four_gates():
    """fused_lstm takes W_hid as the four gates' (H, H) matrices (as the
    layers pass them) or stacked (H, 4H): the same hidden states, and the
    stacked matrix's gradient is the four gradients side by side."""
    rng = np.random.RandomState(4)
    steps, B, H = 3, 2, 5
    x, W = T.dtensor3(), T.dmatrix()
    gates = [T.dmatrix() for _ in range(4)]
    v, s = T.dvector(), T.dmatrix()
    R = rng.normal(0, 1, (steps, B, H))
    stacked = fused_lstm(x, W, v, v, v, s, s, grad_clipping=0.3)
    four = fused_lstm(x, gates, v, v, v, s, s, grad_clipping=0.3)
    f = theano.function([x, W, v, s], [stacked] + theano.grad(
        (stacked * R).sum(), [W, x]))
    g = theano.function([x, v, s] + gates, [four] + theano.grad(
        (four * R).sum(), gates + [x]))
    xv = rng.normal(0, 1, (steps, B, 4 * H))
    Wv = rng.normal(0, .5, (H, 4 * H))
    vv, sv = rng.normal(0, .5, H), rng.normal(0, .5, (B, H))
    hid, dW, dx = f(xv, Wv, vv, sv)
    want = g(xv, vv, sv, *np.split(Wv, 4, axis=1))
    assert np.array_equal(hid, want[0])
    assert np.array_equal(dW, np.concatenate(want[1:5], axis=1))
    assert np.array_equal(dx, want[5])
    with pytest.raises(TypeError, match="four"):
        fused_lstm(x, gates[:3], v, v, v, s, s)


def test_shape_errors_are_clear():
    x, W = T.tensor3(), T.matrix()
    v, s = T.vector(), T.matrix()
    f = theano.function([x, W, v, s], fused_lstm(x, W, v, v, v, s, s))
    f32 = np.float32
    with pytest.raises(ValueError, match="inconsistent shapes"):
        # 4H = 20 input contributions for a W_hid of H = 4
        f(np.zeros((2, 3, 20), f32), np.zeros((4, 16), f32),
          np.zeros(4, f32), np.zeros((3, 4), f32))
    with pytest.raises(TypeError, match="float32 or float64"):
        fused_lstm(T.itensor3(), W, v, v, v, s, s)


# -- the model builder ---------------------------------------------------------

def _op_names(fn):
    return {type(n.op).__name__ for n in fn.maker.fgraph.toposort()}


@pytest.mark.parametrize("input_kind,batching", [
    ("onehot", "sample"), ("ids", "bucket"), ("ids", "mask")])
def test_build_model_auto_picks_fused_where_it_applies(input_kind, batching):
    model = build_model(V, H, input=input_kind, batching=batching, seed=0)
    layer = model.recurrent_layers[0]
    assert isinstance(layer, (FusedLSTMLayer, IdLSTMLayer))
    fn = theano.function(model.inputs, theano.grad(model.loss(),
                                                   model.params))
    names = _op_names(fn)
    if batching == "mask":
        assert "Scan" in names and "FusedLSTM" not in names
    else:
        assert "FusedLSTM" in names and "FusedLSTMGrad" in names
        assert "Scan" not in names


def test_impl_fused_refuses_what_it_cannot_do():
    with pytest.raises(InputError, match="impl='fused'.*mask"):
        build_model(V, H, batching="mask", impl="fused")
    with pytest.raises(InputError, match="impl must be one of"):
        build_model(V, H, impl="cuda")
    l_in = L.InputLayer((None, None, V))
    with pytest.raises(InputError, match="backwards=True"):
        FusedLSTMLayer(l_in, H, impl="fused", backwards=True)
    # 'auto' falls back to scan for the same layer
    layer = FusedLSTMLayer(l_in, H, backwards=True)
    out = L.get_output(layer, T.tensor3())
    assert "Scan" in {type(n.op).__name__ for n in
                      theano.gof.graph.io_toposort([], [out])}


@pytest.mark.parametrize("input_kind,batching", [
    ("onehot", "sample"), ("ids", "sample"), ("onehot", "bucket"),
    ("ids", "bucket")])
def test_fused_and_scan_models_agree_float64(input_kind, batching):
    """Same seed, same weights; loss and every gradient equal (1e-10)."""
    rng = np.random.RandomState(5)
    B, steps = (1, 6) if batching == "sample" else (3, 6)
    ids = rng.randint(0, V, (B, steps)).astype(np.int32)
    y = rng.randint(0, V, (B, steps)).astype(np.int32)
    if batching == "sample":
        y = y[0]
    results = []
    with float64():
        for impl in ("scan", "fused"):
            model = build_model(V, H, input=input_kind, batching=batching,
                                seed=11, impl=impl)
            fn = theano.function(model.inputs, [model.loss()] + theano.grad(
                model.loss(), model.params))
            x = ids if input_kind == "ids" else np.eye(V)[ids]
            results.append(fn(x, y))
    for a, b in zip(*results):
        err = np.abs(a - b).max() / max(np.abs(a).max(), 1e-300)
        assert err < 1e-10


def _aux_cost_fn(clip, mode=None):
    """f(x, b, W_i, W_f, W_c, W_o, wci, wcf, wco, c0, h0, R, Q, P) ->
    gradients of sum(hid*R) + sum(cell*Q) + sum(act*P) w.r.t. the first 11
    inputs."""
    x, b = T.dtensor3(), T.dvector()
    W = [T.dmatrix() for _ in range(4)]
    wci, wcf, wco = T.dvector(), T.dvector(), T.dvector()
    c0, h0 = T.dmatrix(), T.dmatrix()
    R, Q, P = T.dtensor3(), T.dtensor3(), T.dtensor3()
    ins = [x, b] + W + [wci, wcf, wco, c0, h0]
    hid, cell, act = FusedLSTM(clip)(*ins)
    cost = (hid * R).sum() + (cell * Q).sum() + (act * P).sum()
    return theano.function(ins + [R, Q, P], theano.grad(cost, ins),
                           mode=mode)


def _aux_values(rng, steps=4, B=2, H=3):
    return [rng.normal(0, 1, (steps, B, 4 * H)), rng.normal(0, .5, 4 * H)] \
        + [rng.normal(0, .5, (H, H)) for _ in range(4)] + [
            rng.normal(0, .5, H),
            rng.normal(0, .5, H), rng.normal(0, .5, H),
            rng.normal(0, .5, (B, H)), rng.normal(0, .5, (B, H))]


def test_gradient_through_cell_states_and_gates_equals_finite_differences():
    """A cost that also uses the cell states and gate activations: every
    gradient equals Theano's finite differences (verify_grad, which does
    not use our gradient code), float64, no clipping."""
    rng = np.random.RandomState(2)
    values = _aux_values(rng)
    steps, B, G = values[0].shape
    R = rng.normal(0, 1, (steps, B, G // 4))
    Q = rng.normal(0, 1, (steps, B, G // 4))
    P = rng.normal(0, 1, (steps, B, G))

    def cost(*ins):
        hid, cell, act = FusedLSTM(0.0)(*ins)
        return (hid * R).sum() + (cell * Q).sum() + (act * P).sum()

    # finite differences (eps 1e-7) are good to about 1e-7 here; a missing
    # or wrong path is off by O(0.1)
    theano.gradient.verify_grad(cost, values, rng=rng, abs_tol=1e-5,
                                rel_tol=1e-5)
    # the hidden-states-only gradient differs: the other paths are counted
    f = _aux_cost_fn(0.0)
    with_aux = f(*values + [R, Q, P])
    without = f(*values + [R, np.zeros_like(Q), np.zeros_like(P)])
    assert np.abs(with_aux[0] - without[0]).max() > 1e-3


@pytest.mark.parametrize("clip", [0.0, 0.3])
def test_aux_gradient_c_equals_perform(clip):
    """The C loop and the NumPy perform agree, with the clip biting too."""
    rng = np.random.RandomState(3)
    values = _aux_values(rng, steps=6, B=3, H=4)
    steps, B, G = values[0].shape
    extra = [rng.normal(0, 3, (steps, B, G // 4)),
             rng.normal(0, 3, (steps, B, G // 4)),
             rng.normal(0, 3, (steps, B, G))]
    got = _aux_cost_fn(clip)(*values + extra)
    want = _aux_cost_fn(clip, PY_MODE)(*values + extra)
    for a, b in zip(want, got):
        assert np.abs(a - b).max() <= 1e-12 * max(np.abs(a).max(), 1.0)
