"""GradientAccumulator against independent computations.

References: per-sample gradients from separately compiled ``theano.grad``
functions, averaged in numpy; numpy implementations of the Lasagne update
rules; a padded, masked LSTM batch for the token mean. Models are tiny so
that compiled functions come from Theano's cache.
"""
import contextlib
import logging

import numpy as np
import pytest

from lstm_accum.backend import theano, T, lasagne
from lstm_accum.accumulation import (GradientAccumulator, accumulate_updates,
                                     apply_updates, window_variables)
from lstm_accum.checks import check_arrays
from lstm_accum.exceptions import (InputError, NonFiniteError,
                                   IncompatibleStateError)

L = lasagne.layers
F, C = 4, 5          # toy model: features per token, classes
TOL = {"float64": 1e-10, "float32": 1e-5}


@contextlib.contextmanager
def floatx(dtype):
    """Build graphs in ``dtype`` (Lasagne reads floatX when it creates
    parameters), then restore the previous setting."""
    old = theano.config.floatX
    theano.config.floatX = dtype
    try:
        yield
    finally:
        theano.config.floatX = old


# ----------------------------------------------------------------------
# models and data
def set_params(params, seed):
    rng = np.random.RandomState(seed)
    values = []
    for p in params:
        v = rng.uniform(-0.5, 0.5, p.get_value().shape).astype(p.dtype)
        p.set_value(v)
        values.append(v)
    return values


def build_dense(dtype, mask=False, seed=0, features=F, classes=C):
    """A per-token softmax classifier: X (B, T, F) -> (B*T, C), summed NLL.

    Shaped like a language model (B samples, B*T tokens) without recurrence.
    """
    with floatx(dtype):
        X = T.tensor3("X", dtype=dtype)
        y = T.imatrix("y")
        l_in = L.InputLayer((None, None, features), input_var=X)
        l_out = L.DenseLayer(L.ReshapeLayer(l_in, (-1, features)), classes,
                             nonlinearity=lasagne.nonlinearities.softmax)
        params = L.get_all_params(l_out, trainable=True)
        nll = T.nnet.categorical_crossentropy(L.get_output(l_out),
                                              y.flatten())
        inputs = [X, y]
        if mask:
            m = T.matrix("mask", dtype=dtype)
            nll = nll * m.flatten()
            inputs.append(m)
        loss = nll.sum()
        init = set_params(params, seed)
        grad_fn = theano.function(inputs, theano.grad(loss, params))
    return dict(dtype=dtype, loss=loss, params=params, inputs=inputs,
                init=init, grad_fn=grad_fn)


def reset(model):
    for p, v in zip(model["params"], model["init"]):
        p.set_value(v.copy())


def make_samples(seed, n, dtype, lengths=(1, 7), mask=False, features=F,
                 classes=C):
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        t = rng.randint(*lengths)
        s = (rng.normal(size=(1, t, features)).astype(dtype),
             rng.randint(0, classes, size=(1, t)).astype("int32"))
        if mask:
            s += (np.ones((1, t), dtype=dtype),)
        out.append(s)
    return out


def ref_grads(model, samples):
    """Per-sample gradients from a separately compiled theano.grad function,
    as float64 arrays."""
    return [[np.asarray(g, dtype=np.float64) for g in model["grad_fn"](*s)]
            for s in samples]


def grad_sum(per_sample):
    return [sum(gs) for gs in zip(*per_sample)]


def values(params):
    return [p.get_value().copy() for p in params]


def rel_err(got, want):
    num = np.sqrt(sum(np.sum((np.asarray(a, np.float64) - b) ** 2)
                      for a, b in zip(got, want)))
    den = np.sqrt(sum(np.sum(np.asarray(b, np.float64) ** 2) for b in want))
    return num / den


def deltas(before, after):
    return [np.asarray(a, np.float64) - np.asarray(b, np.float64)
            for b, a in zip(before, after)]


def run_window(acc, samples):
    for s in samples:
        acc.accumulate(*s)
    return acc.apply()


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


# ----------------------------------------------------------------------
# shared, compiled once per module
@pytest.fixture(scope="module")
def dense():
    return {dt: build_dense(dt) for dt in ("float64", "float32")}


@pytest.fixture(scope="module")
def sgd_acc(dense):
    accs = {}
    for dt, model in dense.items():
        with floatx(dt):
            accs[dt] = GradientAccumulator(
                model["loss"], model["params"], model["inputs"],
                normalize="samples", update=lasagne.updates.sgd,
                learning_rate=0.5)
    return accs


@pytest.fixture(scope="module")
def masked():
    """Masked float64 toy model, 'tokens' normalisation, ids checked."""
    model = build_dense("float64", mask=True, seed=1)
    with floatx("float64"):
        acc = GradientAccumulator(
            model["loss"], model["params"], model["inputs"],
            normalize="tokens", update=lasagne.updates.sgd,
            learning_rate=0.5, vocab_size=C)
    return model, acc


# ----------------------------------------------------------------------
# SGD moves the parameters by exactly -lr * mean(gradients)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [1, 3, 64])
def test_sgd_update_is_minus_lr_times_mean_gradient(dense, sgd_acc, dtype, n):
    model, acc = dense[dtype], sgd_acc[dtype]
    reset(model)
    samples = make_samples(10 + n, n, dtype)
    mean = [g / n for g in grad_sum(ref_grads(model, samples))]
    before = values(model["params"])
    res = run_window(acc, samples)
    assert res.applied and res.samples == n and res.skipped == 0
    assert res.tokens == sum(s[1].size for s in samples)
    want = [-0.5 * g for g in mean]
    assert rel_err(deltas(before, values(model["params"])), want) < TOL[dtype]
    want_norm = np.sqrt(sum(np.sum(g ** 2) for g in mean))
    assert abs(res.grad_norm - want_norm) <= TOL[dtype] * 10 * want_norm


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("normalize,step", [("samples", -2.5), ("sum", -10)])
def test_gradients_1_2_3_4_give_exact_update(dtype, normalize, step):
    with floatx(dtype):
        w = theano.shared(np.asarray(0.0, dtype=dtype), name="w")
        x = T.scalar("x", dtype=dtype)
        acc = GradientAccumulator(x * w, [w], [x], normalize=normalize,
                                  update=lasagne.updates.sgd,
                                  learning_rate=1.0, num_samples=1)
    for g in (1, 2, 3, 4):
        acc.accumulate(np.asarray(g, dtype=dtype))
    res = acc.apply()
    assert res.grad_norm == -step
    assert w.get_value() == step and w.get_value().dtype == dtype


def test_parameters_bit_identical_until_apply(dense, sgd_acc):
    model, acc = dense["float64"], sgd_acc["float64"]
    reset(model)
    before = values(model["params"])
    for i, s in enumerate(make_samples(3, 5, "float64")):
        r = acc.accumulate(*s)
        assert r.samples == 1 and r.tokens == s[1].size
        assert acc.samples == i + 1
        for b, p in zip(before, model["params"]):
            assert np.array_equal(p.get_value(), b)
    acc.apply()
    assert acc.samples == 0 and acc.tokens == 0
    assert all(not np.array_equal(p.get_value(), b)
               for b, p in zip(before, model["params"]))
    assert all(not a.get_value().any() for a in acc.accumulators)


# ----------------------------------------------------------------------
# update rules against numpy
def numpy_rule(name, p, g, s, lr):
    """One step of the Lasagne 0.1 rule ``name`` (default hyper-parameters)
    in numpy; ``s`` is the rule's state dict, updated in place."""
    if name == "sgd":
        return p - lr * g
    if name == "momentum":
        v = 0.9 * s.get("v", 0) - lr * g
        s["v"] = v
        return p + v
    if name == "nesterov_momentum":
        v = 0.9 * s.get("v", 0) - lr * g
        s["v"] = v
        return p + 0.9 * v - lr * g
    if name == "adagrad":
        s["a"] = s.get("a", 0) + g ** 2
        return p - lr * g / np.sqrt(s["a"] + 1e-6)
    if name == "rmsprop":
        s["a"] = 0.9 * s.get("a", 0) + 0.1 * g ** 2
        return p - lr * g / np.sqrt(s["a"] + 1e-6)
    if name == "adadelta":
        s["a"] = 0.95 * s.get("a", 0) + 0.05 * g ** 2
        u = g * np.sqrt(s.get("d", 0) + 1e-6) / np.sqrt(s["a"] + 1e-6)
        s["d"] = 0.95 * s.get("d", 0) + 0.05 * u ** 2
        return p - lr * u
    if name == "adam":
        t = s["t"] = s.get("t", 0) + 1
        s["m"] = 0.9 * s.get("m", 0) + 0.1 * g
        s["v"] = 0.999 * s.get("v", 0) + 0.001 * g ** 2
        a = lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        return p - a * s["m"] / (np.sqrt(s["v"]) + 1e-8)
    raise AssertionError(name)


RULES = ["sgd", "momentum", "nesterov_momentum", "adagrad", "rmsprop",
         "adadelta", "adam"]


@pytest.mark.parametrize("dtype,rule", [("float64", r) for r in RULES] +
                         [("float32", "adagrad"), ("float32", "adam")])
def test_update_rule_equals_numpy_on_averaged_gradient(dense, dtype, rule):
    model = dense[dtype]
    reset(model)
    lr = 0.05
    with floatx(dtype):
        acc = GradientAccumulator(model["loss"], model["params"],
                                  model["inputs"], normalize="samples",
                                  update=getattr(lasagne.updates, rule),
                                  learning_rate=lr)
    want = [np.asarray(v, np.float64) for v in model["init"]]
    states = [dict() for _ in want]
    for window in range(2):  # the second step uses the rule's state
        samples = make_samples(100 + window, 3 + window, dtype)
        mean = [g / len(samples)
                for g in grad_sum(ref_grads(model, samples))]
        before = values(model["params"])
        assert run_window(acc, samples).applied
        want_next = [numpy_rule(rule, p, g, s, lr)
                     for p, g, s in zip(want, mean, states)]
        assert rel_err(deltas(before, values(model["params"])),
                       deltas(want, want_next)) < TOL[dtype]
        want = want_next
    # the rule's state is found, named and saved
    st = acc.state()
    opt = sorted(k for k in st if k.startswith("optimizer/"))
    n_state = {"sgd": 0, "momentum": 1, "nesterov_momentum": 1,
               "adagrad": 1, "rmsprop": 1, "adadelta": 2, "adam": 2}[rule]
    assert len(opt) == 2 * n_state + (rule == "adam")
    if rule == "adagrad":
        assert rel_err([st["optimizer/W/0"], st["optimizer/b/0"]],
                       [s["a"] for s in states]) < TOL[dtype]
    if rule == "adam":
        assert st["optimizer/global/0"] == 2
    for key in opt:
        assert st[key].dtype == dtype or key == "optimizer/global/0"


# ----------------------------------------------------------------------
# 'tokens': the true token mean, also across buckets and masks
def test_tokens_is_total_loss_over_total_tokens(masked):
    model, acc = masked
    reset(model)
    samples = make_samples(7, 5, "float64", lengths=(1, 9), mask=True)
    # a bucket of 3 sequences of length 4 and a padded, masked batch of 2
    rng = np.random.RandomState(8)
    bucket = (rng.normal(size=(3, 4, F)),
              rng.randint(0, C, (3, 4)).astype("int32"), np.ones((3, 4)))
    padded = (rng.normal(size=(2, 6, F)),
              rng.randint(0, C, (2, 6)).astype("int32"),
              np.array([[1.0] * 6, [1.0] * 2 + [0.0] * 4]))
    calls = samples + [bucket, padded]
    grads = ref_grads(model, calls)
    before = values(model["params"])
    counts = [acc.accumulate(*c) for c in calls]
    assert [r.samples for r in counts[-2:]] == [3, 2]
    assert [r.tokens for r in counts[-2:]] == [12, 8]
    tokens = sum(s[1].size for s in samples) + 12 + 8
    assert acc.tokens == tokens and acc.samples == 5 + 3 + 2
    res = acc.apply()
    want = [-0.5 * g / tokens for g in grad_sum(grads)]
    assert rel_err(deltas(before, values(model["params"])), want) < 1e-10
    # A mean of per-call means is not the token mean (the 2024 bug):
    # make sure the test data would tell them apart.
    per_call = [[g / c.tokens for g in gs]
                for gs, c in zip(grads, counts)]
    wrong = [-0.5 * g / len(calls) for g in grad_sum(per_call)]
    assert rel_err(wrong, want) > 1e-3
    assert res.tokens == tokens


def build_lstm(dtype, V=6, H=4, seed=5):
    """Masked one-hot LSTM language model, (B, T, V) -> (B*T, V)."""
    with floatx(dtype):
        X = T.tensor3("X", dtype=dtype)
        y = T.imatrix("y")
        m = T.matrix("mask", dtype=dtype)
        l_in = L.InputLayer((None, None, V), input_var=X)
        l_mask = L.InputLayer((None, None), input_var=m)
        l_lstm = L.LSTMLayer(l_in, H, mask_input=l_mask)
        l_out = L.DenseLayer(L.ReshapeLayer(l_lstm, (-1, H)), V,
                             nonlinearity=lasagne.nonlinearities.softmax)
        params = L.get_all_params(l_out, trainable=True)
        nll = T.nnet.categorical_crossentropy(L.get_output(l_out),
                                              y.flatten()) * m.flatten()
        set_params(params, seed)
    return dict(X=X, y=y, m=m, V=V, params=params, loss=nll.sum(),
                mean_loss=nll.sum() / m.sum())


def test_lstm_one_hot_tokens_equals_padded_masked_batch():
    """Real use: one-hot (1, T, V) sentences and int targets, one by one and
    as a bucket, against one padded masked batch's token-mean gradient."""
    net = build_lstm("float64")
    V, params = net["V"], net["params"]
    with floatx("float64"):
        acc = GradientAccumulator(net["loss"], params,
                                  [net["X"], net["y"], net["m"]],
                                  normalize="tokens",
                                  update=lasagne.updates.sgd,
                                  learning_rate=0.3, vocab_size=V)
        ref = theano.function([net["X"], net["y"], net["m"]],
                              theano.grad(net["mean_loss"], params))
    rng = np.random.RandomState(11)
    lengths = [3, 5, 5, 2]
    ids = [rng.randint(0, V, size=n + 1) for n in lengths]
    eye = np.eye(V)
    Tm = max(lengths)
    Xb, yb, mb = np.zeros((4, Tm, V)), np.zeros((4, Tm), "int32"), \
        np.zeros((4, Tm))
    for i, s in enumerate(ids):
        n = len(s) - 1
        Xb[i, :n], yb[i, :n], mb[i, :n] = eye[s[:-1]], s[1:], 1
    want = [-0.3 * g for g in ref(Xb, yb, mb)]
    before = values(params)
    # sentences 0 and 3 one by one, 1 and 2 (same length) as a bucket
    for i in (0, 3):
        n = lengths[i]
        r = acc.accumulate(eye[ids[i][:-1]][None], ids[i][1:][None],
                           np.ones((1, n)))
        assert (r.samples, r.tokens) == (1, n)
    r = acc.accumulate(Xb[1:3], yb[1:3], mb[1:3])
    assert (r.samples, r.tokens) == (2, 10)
    res = acc.apply()
    assert (res.samples, res.tokens) == (4, sum(lengths))
    assert rel_err(deltas(before, values(params)), want) < 1e-10


# ----------------------------------------------------------------------
# the non-finite guard
def test_nan_sample_is_skipped(dense, sgd_acc):
    model, acc = dense["float64"], sgd_acc["float64"]
    good = make_samples(21, 4, "float64")
    bad = (np.full((1, 3, F), np.nan), np.zeros((1, 3), "int32"))
    inf = (np.full((1, 2, F), np.inf), np.zeros((1, 2), "int32"))
    reset(model)
    run_window(acc, good)
    want = values(model["params"])
    reset(model)
    results = [acc.accumulate(*s) for s in good[:2] + [bad] + good[2:] +
               [inf]]
    assert [r.skipped for r in results] == [0, 0, 1, 0, 0, 1]
    assert results[2].samples == 0 and results[2].tokens == 0
    assert np.isnan(results[2].loss)
    assert (acc.samples, acc.skipped) == (4, 2)
    res = acc.apply()
    assert res.applied and (res.samples, res.skipped) == (4, 2)
    for w, p in zip(want, model["params"]):
        assert np.array_equal(p.get_value(), w)


def test_all_nan_window_leaves_params_and_state_untouched(dense, caplog):
    model = dense["float64"]
    reset(model)
    with floatx("float64"):
        # momentum: even a zero gradient would move the parameters
        acc = GradientAccumulator(model["loss"], model["params"],
                                  model["inputs"], normalize="samples",
                                  update=lasagne.updates.momentum,
                                  max_bad_windows=3)
    run_window(acc, make_samples(30, 3, "float64"))
    before = acc.state()
    assert any(before[k].any() for k in before if k.startswith("optimizer/"))
    bad = (np.full((1, 3, F), np.nan), np.zeros((1, 3), "int32"))
    with caplog.at_level(logging.WARNING, logger="lstm_accum"):
        acc.accumulate(*bad)
        acc.accumulate(*bad)
        res = acc.apply()
    assert not res.applied and (res.samples, res.skipped) == (0, 2)
    assert "non-finite window" in caplog.text
    after = acc.state()
    for k in before:
        if k.startswith(("param/", "optimizer/")):
            assert np.array_equal(after[k], before[k]), k
    assert acc.skipped == 0 and acc.samples == 0
    # finite samples whose sum overflowed: also a non-finite window
    acc.accumulate(*make_samples(32, 1, "float64")[0])
    acc.accumulators[0].set_value(
        np.full_like(acc.accumulators[0].get_value(), np.inf))
    res = acc.apply()
    assert not res.applied and res.samples == 1
    after = acc.state()
    for k in before:
        if k.startswith(("param/", "optimizer/")):
            assert np.array_equal(after[k], before[k]), k
    # a good window resets the count of consecutive bad ones
    run_window(acc, make_samples(31, 2, "float64"))
    for _ in range(2):
        acc.accumulate(*bad)
        assert not acc.apply().applied
    acc.accumulate(*bad)
    with pytest.raises(NonFiniteError, match="3 consecutive"):
        acc.apply()


# ----------------------------------------------------------------------
# state round trip
def test_state_round_trip_mid_window_is_bit_identical(dense, tmp_path):
    model = dense["float64"]
    reset(model)
    with floatx("float64"):
        acc = GradientAccumulator(model["loss"], model["params"],
                                  model["inputs"], normalize="tokens")
    start = acc.state()
    w1, w2 = make_samples(40, 5, "float64"), make_samples(41, 6, "float64")
    run_window(acc, w1)
    run_window(acc, w2)
    want = values(model["params"])

    acc.load_state(start)
    run_window(acc, w1)
    for s in w2[:4]:
        acc.accumulate(*s)
    np.savez(tmp_path / "state.npz", **acc.state())
    with np.load(tmp_path / "state.npz", allow_pickle=False) as f:
        saved = {k: f[k] for k in f.files}

    fresh = build_dense("float64", seed=99)  # other initial weights
    with floatx("float64"):
        acc2 = GradientAccumulator(fresh["loss"], fresh["params"],
                                   fresh["inputs"], normalize="tokens")
    acc2.load_state(saved)
    assert acc2.samples == 4
    for s in w2[4:]:
        acc2.accumulate(*s)
    acc2.apply()
    for w, p in zip(want, fresh["params"]):
        assert np.array_equal(p.get_value(), w)


def test_load_state_names_the_mismatch(sgd_acc):
    acc = sgd_acc["float64"]
    good = acc.state()
    st = dict(good)
    del st["accum/W"]
    with pytest.raises(IncompatibleStateError, match="accum/W"):
        acc.load_state(st)
    st = dict(good, **{"param/b": np.zeros(C + 1)})
    with pytest.raises(IncompatibleStateError, match="param/b"):
        acc.load_state(st)
    st = dict(good, **{"hyper/normalize": np.array("tokens")})
    with pytest.raises(IncompatibleStateError, match="hyper/normalize"):
        acc.load_state(st)
    st = dict(good, extra=np.zeros(1))
    with pytest.raises(IncompatibleStateError, match="extra"):
        acc.load_state(st)


# ----------------------------------------------------------------------
# graph, memory, dtypes, hyper-parameters
def non_update_outputs(fn):
    fg = fn.maker.fgraph
    return [o for i, o in enumerate(fg.outputs) if i not in fg.update_mapping]


def test_compiled_functions_output_only_scalars(sgd_acc):
    acc = sgd_acc["float32"]
    outs = non_update_outputs(acc.accumulate_fn)
    assert len(outs) == 4 and all(o.ndim == 0 for o in outs)
    assert all(o.ndim == 0 for o in non_update_outputs(acc.apply_fn))
    assert [i for i in acc.apply_fn.maker.inputs if not i.implicit] == []
    # every accumulator is updated in the graph, i.e. stays on the device
    updated = {acc.accumulate_fn.maker.fgraph.inputs[i]
               for i in acc.accumulate_fn.maker.fgraph.update_mapping.values()}
    assert {a.name for a in acc.accumulators} <= {v.name for v in updated}


def test_memory_does_not_grow_with_n():
    """Several MB of parameters, a few hundred calls: keeping every call's
    gradient would cost N x 2 MB; the window must stay at its first peak."""
    model = build_dense("float32", seed=2, features=256, classes=2048)
    param_bytes = sum(p.get_value().nbytes for p in model["params"])
    assert param_bytes > 2 * 2 ** 20
    with floatx("float32"):
        acc = GradientAccumulator(model["loss"], model["params"],
                                  model["inputs"], normalize="samples",
                                  update=lasagne.updates.sgd,
                                  learning_rate=0.5)
    samples = make_samples(50, 20, "float32", features=256, classes=2048)
    for s in samples:
        acc.accumulate(*s)
    acc.apply()
    for s in samples:
        acc.accumulate(*s)
    n = 300
    rss0 = rss_kb()
    for i in range(n):
        acc.accumulate(*samples[i % 20])
    rss1 = rss_kb()
    assert acc.samples == n + 20
    # Bound: two copies of the parameters, a hundred and fifty times below
    # what keeping the n gradients would take.
    bound_kb = 2 * param_bytes // 1024
    assert bound_kb * 100 < n * param_bytes // 1024
    assert rss1 - rss0 < bound_kb, "RSS grew by %d kB" % (rss1 - rss0)
    acc.apply()


def test_float32_stays_float32(dense):
    model = dense["float32"]
    with floatx("float32"):
        acc = GradientAccumulator(model["loss"], model["params"],
                                  model["inputs"], normalize="samples",
                                  update=lasagne.updates.adam, max_norm=1.0)
    for a, p in zip(acc.accumulators, acc.params):
        assert a.dtype == p.dtype == "float32"
        assert a.broadcastable == p.broadcastable
    assert acc.learning_rate.dtype == "float32"
    for v in acc.optimizer_state:
        assert v.dtype == "float32"
    for fn in (acc.accumulate_fn, acc.apply_fn):
        for var in fn.maker.fgraph.variables:
            if getattr(var, "ndim", 0) > 0:
                assert var.dtype != "float64", var
    run_window(acc, make_samples(60, 2, "float32"))
    for v in acc.params + acc.accumulators + acc.optimizer_state:
        assert v.get_value().dtype == np.float32


def test_learning_rate_change_never_recompiles(dense, sgd_acc, monkeypatch):
    model, acc = dense["float64"], sgd_acc["float64"]
    reset(model)

    def no_compile(*args, **kwargs):
        raise AssertionError("recompiled")
    monkeypatch.setattr(theano, "function", no_compile)
    monkeypatch.setattr(theano.compile.function_module, "orig_function",
                        no_compile)
    samples = make_samples(70, 3, "float64")
    mean = [g / 3 for g in grad_sum(ref_grads(model, samples))]
    acc.set_learning_rate(0.125)
    assert acc.get_learning_rate() == 0.125
    before = values(model["params"])
    run_window(acc, samples)
    assert rel_err(deltas(before, values(model["params"])),
                   [-0.125 * g for g in mean]) < 1e-10
    acc.set_learning_rate(0.5)
    for bad in (float("nan"), -0.1, float("inf"), "fast"):
        with pytest.raises(InputError, match="learning rate"):
            acc.set_learning_rate(bad)
    assert acc.get_learning_rate() == 0.5


def test_max_norm_rescales_and_reports_norm(dense):
    model = dense["float64"]
    with floatx("float64"):
        acc = GradientAccumulator(model["loss"], model["params"],
                                  model["inputs"], normalize="samples",
                                  update=lasagne.updates.sgd,
                                  learning_rate=1.0, max_norm=0.05)
    for seed in (80, 81):
        reset(model)
        samples = make_samples(seed, 4, "float64")
        mean = [g / 4 for g in grad_sum(ref_grads(model, samples))]
        norm = np.sqrt(sum(np.sum(g ** 2) for g in mean))
        assert norm > 0.05
        before = values(model["params"])
        res = run_window(acc, samples)
        assert abs(res.grad_norm - norm) < 1e-10 * norm
        want = [-g * 0.05 / (norm + 1e-7) for g in mean]
        assert rel_err(deltas(before, values(model["params"])), want) < 1e-10


# ----------------------------------------------------------------------
# bad input: one-line InputError naming the problem and the fix
def one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("case,match", [
    ("id_too_large", "ids must lie in \\[0, 5\\)"),
    ("id_negative", "ids must lie in"),
    ("float_targets", "expected integer ids.*astype"),
    ("x_2d", "expected a 3-D array"),
    ("mask_shape", "mask: shape \\(1, 4\\) differs.*\\(1, 3\\)"),
    ("arg_count", "got 2 arrays, expected 3"),
])
def test_accumulate_rejects_bad_input(masked, case, match):
    model, acc = masked
    X, y, m = make_samples(90, 1, "float64", lengths=(3, 4), mask=True)[0]
    args = {
        "id_too_large": (X, np.full((1, 3), C, "int32"), m),
        "id_negative": (X, np.full((1, 3), -1, "int32"), m),
        "float_targets": (X, y.astype("float64"), m),
        "x_2d": (X[0], y, m),
        "mask_shape": (X, y, np.ones((1, 4))),
        "arg_count": (X, y),
    }[case]
    before = values(model["params"])
    with pytest.raises(InputError) as excinfo:
        acc.accumulate(*args)
    assert excinfo.match(match) and one_line(excinfo)
    assert acc.samples == 0 and acc.skipped == 0
    for b, p in zip(before, model["params"]):
        assert np.array_equal(p.get_value(), b)


def test_out_of_range_id_without_vocab_size_is_input_error(sgd_acc):
    acc = sgd_acc["float64"]
    X = np.zeros((1, 2, F))
    with pytest.raises(InputError) as excinfo:
        acc.accumulate(X, np.array([[0, C + 3]], "int32"))
    assert "vocab" in one_line(excinfo)
    assert acc.samples == 0


def test_apply_before_accumulate(sgd_acc):
    with pytest.raises(InputError) as excinfo:
        sgd_acc["float32"].apply()
    assert "accumulate" in one_line(excinfo)


@pytest.mark.parametrize("kwargs,match", [
    (dict(normalize=None), "normalize must be one of"),
    (dict(normalize="mean"), "normalize must be one of"),
    (dict(normalize="samples", learning_rate=float("nan")), "learning rate"),
    (dict(normalize="samples", learning_rate=-1), "learning rate"),
    (dict(normalize="samples", max_bad_windows=0), "max_bad_windows"),
    (dict(normalize="samples", max_norm=-1.0), "max_norm"),
])
def test_constructor_rejects_bad_arguments(kwargs, match):
    w = theano.shared(np.zeros(3), name="w")
    x = T.vector("x", dtype="float64")
    with pytest.raises(InputError, match=match) as excinfo:
        GradientAccumulator(T.dot(x, w), [w], [x], **kwargs)
    one_line(excinfo)


def test_constructor_rejects_bad_graph():
    w = theano.shared(np.zeros(3), name="w")
    x = T.vector("x", dtype="float64")
    with pytest.raises(InputError, match="scalar"):
        GradientAccumulator(x * w, [w], [x], normalize="sum")
    with pytest.raises(InputError, match="num_tokens"):
        GradientAccumulator(T.dot(x, w), [w], [x], normalize="tokens")
    with pytest.raises(InputError, match="shared variables"):
        GradientAccumulator(T.dot(x, w), [x], [x], normalize="sum")


def test_repeated_param_names_get_unique_labels():
    w1 = theano.shared(np.zeros(2), name="W")
    w2 = theano.shared(np.zeros(2), name="W")
    x = T.vector("x", dtype="float64")
    acc = GradientAccumulator(T.dot(x, w1) + 2 * T.dot(x, w2), [w1, w2], [x],
                              normalize="sum", update=lasagne.updates.sgd,
                              learning_rate=1.0)
    assert [a.name for a in acc.accumulators] == ["accum/0.W", "accum/1.W"]
    acc.accumulate(np.array([1.0, 3.0]))
    st = acc.state()
    assert np.array_equal(st["accum/0.W"], [1, 3])
    assert np.array_equal(st["accum/1.W"], [2, 6])
    acc.apply()
    assert np.array_equal(w2.get_value(), [-2, -6])


def test_reset_discards_the_window_only(dense, sgd_acc):
    model, acc = dense["float64"], sgd_acc["float64"]
    reset(model)
    before = values(model["params"])
    for s in make_samples(95, 3, "float64"):
        acc.accumulate(*s)
    acc.reset()
    assert (acc.samples, acc.tokens, acc.skipped) == (0, 0, 0)
    assert all(not a.get_value().any() for a in acc.accumulators)
    with pytest.raises(InputError):
        acc.apply()
    for b, p in zip(before, model["params"]):
        assert np.array_equal(p.get_value(), b)


def test_check_replaces_the_generic_check(masked, monkeypatch):
    """check= is the one host-side check of a call: called once, the
    generic check_arrays never; vocab_size belongs to the generic one."""
    model, _ = masked
    seen = []

    def check(*arrays):
        seen.append(len(arrays))
        return check_arrays(model["inputs"], arrays, vocab_size=C)
    with floatx("float64"):
        acc = GradientAccumulator(model["loss"], model["params"],
                                  model["inputs"], normalize="tokens",
                                  update=lasagne.updates.sgd, check=check)
        with pytest.raises(InputError, match="vocab_size") as excinfo:
            GradientAccumulator(model["loss"], model["params"],
                                model["inputs"], normalize="tokens",
                                check=check, vocab_size=C)
        one_line(excinfo)

    def generic(*args, **kwargs):
        raise AssertionError("the generic check ran")
    import lstm_accum.accumulation.accumulator as accumulator_module
    monkeypatch.setattr(accumulator_module, "check_arrays", generic)
    reset(model)
    for s in make_samples(97, 3, "float64", mask=True):
        acc.accumulate(*s)
    assert seen == [3, 3, 3]
    with pytest.raises(InputError, match="ids must lie"):
        acc.accumulate(s[0], np.full_like(s[1], C), s[2])
    assert acc.samples == 3
    acc.reset()


def test_policy_sees_every_window(dense):
    """The bad-window rule is pluggable: a policy records each result."""
    model = dense["float64"]
    reset(model)

    class Recorder(object):
        bad_windows = 0

        def __init__(self):
            self.results = []

        def record(self, result, name):
            self.results.append((result.applied, result.samples, name))
    policy = Recorder()
    with floatx("float64"):
        acc = GradientAccumulator(model["loss"], model["params"],
                                  model["inputs"], normalize="samples",
                                  update=lasagne.updates.sgd, policy=policy,
                                  name="mine")
    run_window(acc, make_samples(98, 2, "float64"))
    bad = (np.full((1, 3, F), np.nan), np.zeros((1, 3), "int32"))
    for _ in range(7):   # past the default limit of 5: this one never stops
        run_window(acc, [bad])
    assert policy.results == [(True, 2, "mine")] + [(False, 0, "mine")] * 7
    assert acc.state()["mine/bad_windows"] == 0


def test_own_theano_functions_equal_the_accumulator_bit_for_bit():
    """accumulate_updates/apply_updates compiled into a user's own
    theano.function give the accumulator's parameters exactly (float64)."""
    a = build_dense("float64", seed=3)
    b = build_dense("float64", seed=3)
    with floatx("float64"):
        acc = GradientAccumulator(a["loss"], a["params"], a["inputs"],
                                  normalize="tokens",
                                  update=lasagne.updates.adam,
                                  learning_rate=0.01, max_norm=0.5)
        X, y = b["inputs"]
        window = window_variables(b["params"])
        step = accumulate_updates(b["loss"], b["params"], window,
                                  X.shape[0], y.size)
        accumulate = theano.function([X, y], step.outputs,
                                     updates=step.updates)
        lr = theano.shared(np.float64(0.01), name="lr")
        app = apply_updates(b["params"], window, "tokens",
                            lasagne.updates.adam, learning_rate=lr,
                            max_norm=0.5)
        apply = theano.function([], app.outputs, updates=app.updates)
    assert [v.name for v in app.optimizer_state] == \
        [v.name for v in acc.optimizer_state]
    for w in range(3):
        for s in make_samples(200 + w, 3 + w, "float64"):
            got = acc.accumulate(*s)
            assert tuple(got) == tuple(x.item() for x in accumulate(*s))
        res = acc.apply()
        assert res.applied and res.grad_norm > 0.5   # clipping was used
        assert tuple(res) == tuple(x.item() for x in apply())
        for p, q in zip(a["params"] + acc.optimizer_state,
                        b["params"] + app.optimizer_state):
            assert np.array_equal(p.get_value(), q.get_value()), p.name
        assert not np.array_equal(a["params"][0].get_value(), a["init"][0])


# ----------------------------------------------------------------------
# the CPU in-place accumulation (AccumulateIfFinite)
def test_accumulate_if_finite_op_against_numpy():
    """Split views and whole sources added as numpy would; nothing added
    for a non-finite loss or source; function inputs never modified."""
    from lstm_accum.ops.accumulate import AccumulateIfFinite
    spec = ((0, 1, 1, 0), (0, 1, 1, 1), (2, -1, -1, -1))
    loss = T.dscalar("loss")
    accs = [T.dmatrix("a0"), T.dmatrix("a1"), T.dvector("a2")]
    x, sizes, v = T.dmatrix("x"), T.lvector("sizes"), T.dvector("v")
    outs = AccumulateIfFinite(spec)(loss, *(accs + [x, sizes, v]))
    fn = theano.function([loss] + accs + [x, sizes, v], outs)
    rng = np.random.RandomState(3)
    a = [rng.normal(size=(3, 2)), rng.normal(size=(3, 3)),
         rng.normal(size=4)]
    keep = [c.copy() for c in a]
    xv, vv = rng.normal(size=(3, 5)), rng.normal(size=4)
    ok, *new = fn(1.5, *(a + [xv, np.array([2, 3]), vv]))
    assert ok
    want = [keep[0] + xv[:, :2], keep[1] + xv[:, 2:], keep[2] + vv]
    for got, w in zip(new, want):
        assert np.array_equal(got, w)
    for c, k in zip(a, keep):          # inputs are not destroyed
        assert np.array_equal(c, k)
    for bad_loss, bad_v in ((np.inf, vv), (1.0, np.where(np.arange(4) == 2,
                                                         np.nan, vv))):
        ok, *new = fn(bad_loss, *(a + [xv, np.array([2, 3]), bad_v]))
        assert not ok
        for got, k in zip(new, keep):
            assert np.array_equal(got, k)
    with pytest.raises(ValueError, match="shape"):
        fn(1.0, *(a + [xv, np.array([1, 4]), vv]))


@pytest.fixture(scope="module")
def lstm_accs():
    """Tiny one-hot LSTM (Lasagne joins its gate weights, so gradients are
    Split outputs) with the in-place and the switch-graph accumulator."""
    net = build_lstm("float64", seed=7)
    inputs = [net["X"], net["y"], net["m"]]
    accs = {}
    with floatx("float64"):
        for inplace in (True, False):
            old = GradientAccumulator.cpu_inplace_add
            GradientAccumulator.cpu_inplace_add = inplace
            try:
                accs[inplace] = GradientAccumulator(
                    net["loss"], net["params"], inputs, normalize="samples",
                    update=lasagne.updates.sgd, learning_rate=0.1)
            finally:
                GradientAccumulator.cpu_inplace_add = old
        ref = theano.function(inputs, theano.grad(net["loss"],
                                                  net["params"]))
    return net, accs, ref


def lstm_samples(seed, n, V):
    rng = np.random.RandomState(seed)
    eye = np.eye(V)
    out = []
    for _ in range(n):
        ids = rng.randint(0, V, size=rng.randint(2, 6))
        t = len(ids) - 1
        out.append((eye[ids[:-1]][None], ids[1:][None].astype("int32"),
                    np.ones((1, t))))
    return out


def test_inplace_accumulation_graph_has_no_copies(lstm_accs):
    from lstm_accum.ops.accumulate import AccumulateIfFinite
    net, accs, _ = lstm_accs
    if not theano.config.device.startswith("cpu"):
        pytest.fail("this test expects the CPU device")
    nodes = accs[True].accumulate_fn.maker.fgraph.toposort()
    ops = [n.op for n in nodes if isinstance(n.op, AccumulateIfFinite)]
    assert len(ops) == 1 and ops[0].inplace
    # the gate weights' gradients are read as views of the joined gradient
    assert any(axis >= 0 for _, axis, _, _, _ in ops[0].spec)
    assert not any(isinstance(n.op, (T.Split, theano.compile.DeepCopyOp))
                   for n in nodes)
    # the switch graph, for comparison, has neither
    nodes0 = accs[False].accumulate_fn.maker.fgraph.toposort()
    assert not any(isinstance(n.op, AccumulateIfFinite) for n in nodes0)


def test_inplace_accumulation_is_exact_and_keeps_buffers(lstm_accs):
    """Accumulators: the running numpy sum of separately computed
    gradients, updated in the same buffers; a NaN sample leaves them
    bit-identical; the switch-graph accumulator agrees."""
    net, accs, ref = lstm_accs
    V, acc, acc0 = net["V"], accs[True], accs[False]
    samples = lstm_samples(13, 5, V)
    bad = (np.full_like(samples[0][0], np.nan),) + samples[0][1:]
    buffers = [a.get_value(borrow=True, return_internal_type=True)
               for a in acc.accumulators]
    running = [np.zeros(p.get_value().shape) for p in net["params"]]
    for i, s in enumerate(samples[:3] + [bad] + samples[3:]):
        before = [a.get_value() for a in acc.accumulators]
        r = acc.accumulate(*s)
        acc0.accumulate(*s)
        if i == 3:
            assert r.skipped == 1
            for a, b in zip(acc.accumulators, before):
                assert np.array_equal(a.get_value(), b)
            continue
        running = [s_ + g for s_, g in zip(running, ref(*s))]
        got = [a.get_value() for a in acc.accumulators]
        assert rel_err(got, running) < 1e-12
        assert rel_err(got, [a.get_value() for a in acc0.accumulators]) \
            < 1e-12
    assert all(a.get_value(borrow=True, return_internal_type=True) is b
               for a, b in zip(acc.accumulators, buffers))
    assert (acc.samples, acc.skipped) == (5, 1)
    acc.reset()
    acc0.reset()
