"""Model builders: structure, names, errors, the stable loss, and the proof
that the id-input model is the one-hot model (same outputs and gradients
given the same weights)."""

import numpy as np
import pytest

from lstm_accum.backend import theano, T, lasagne
from lstm_accum.exceptions import IncompatibleStateError, InputError
from lstm_accum.models import (IdGRULayer, IdLSTMLayer, build_model,
                               stable_log_softmax)
from helpers import float64

L = lasagne.layers
V, H = 12, 5



def param_shapes(model):
    return [(p.name, p.get_value().shape)
            for p in L.get_all_params(model.output_layer)]


# -- structure (no compilation) ----------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("batching", ["sample", "bucket", "mask"])
def test_onehot_and_ids_have_same_params(cell, batching):
    onehot = build_model(V, H, num_layers=2, input="onehot",
                         batching=batching, cell=cell, seed=3)
    ids = build_model(V, H, num_layers=2, input="ids", batching=batching,
                      cell=cell, seed=3)
    assert param_shapes(onehot) == param_shapes(ids)
    # The same seed gives the same weights, so they transfer both ways.
    for a, b in zip(L.get_all_param_values(onehot.output_layer),
                    L.get_all_param_values(ids.output_layer)):
        np.testing.assert_array_equal(a, b)
    first = ids.recurrent_layers[0]
    assert isinstance(first, IdLSTMLayer if cell == "lstm" else IdGRULayer)
    W_in = first.W_in_to_ingate if cell == "lstm" else \
        first.W_in_to_resetgate
    assert W_in.get_value().shape == (V, H)
    L.set_all_param_values(ids.output_layer,
                           L.get_all_param_values(onehot.output_layer))


def test_question_network_structure_and_names():
    model = build_model(V, H, seed=0)
    assert model.input_layer.shape == (None, None, V)
    lstm, = model.recurrent_layers
    # Lasagne's LSTMLayer, run as one fused operation on the CPU ...
    assert isinstance(lstm, L.LSTMLayer) and lstm.name == "lstm1"
    # ... or exactly Lasagne's class with impl='scan'
    scan_lstm, = build_model(V, H, seed=0, impl="scan").recurrent_layers
    assert type(scan_lstm) is L.LSTMLayer
    assert lstm.grad_clipping == 5.0
    sliced = model.logits_layer.input_layer
    assert isinstance(sliced, L.SliceLayer) and sliced.axis == 0 \
        and sliced.slice == 0
    assert model.logits_layer.num_units == V
    assert model.output_layer.nonlinearity is lasagne.nonlinearities.softmax
    assert model.target_var.ndim == 1 and model.target_var.dtype == "int32"
    assert model.mask_var is None and model.inputs == [model.input_var,
                                                       model.target_var]
    names = [p.name for p in model.params]
    assert "lstm1.W_in_to_ingate" in names and "softmax.W" in names
    assert "softmax.b" in names
    assert model.config["batching"] == "sample"


def test_batched_structure():
    model = build_model(V, H, num_layers=3, input="ids", batching="mask",
                        cell="gru", dropout=0.25, seed=0)
    assert [l.name for l in model.recurrent_layers] == ["gru1", "gru2",
                                                         "gru3"]
    assert all(l.input_layers[1] is model.mask_layer
               for l in model.recurrent_layers)
    dropouts = [l for l in L.get_all_layers(model.output_layer)
                if isinstance(l, L.DropoutLayer)]
    assert [d.name for d in dropouts] == ["dropout1", "dropout2",
                                          "dropout3"]
    assert all(d.p == 0.25 for d in dropouts)
    assert model.input_var.ndim == 2 and model.input_var.dtype == "int32"
    assert model.target_var.ndim == 2 and model.target_var.dtype == "int32"
    assert model.inputs == [model.input_var, model.target_var,
                            model.mask_var]
    flatten = model.logits_layer.input_layer
    assert isinstance(flatten, L.ReshapeLayer)
    assert flatten.input_layer is dropouts[-1]
    assert model.logits_layer.input_shape == (None, H)


def test_seed_controls_weights():
    a = build_model(V, H, seed=1).param_values()
    b = build_model(V, H, seed=1).param_values()
    c = build_model(V, H, seed=2).param_values()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["lstm1.W_in_to_ingate"],
                              c["lstm1.W_in_to_ingate"])


def test_set_param_values_by_name():
    a, b = build_model(V, H, seed=1), build_model(V, H, seed=2)
    b.set_param_values(a.param_values())
    for name, value in a.param_values().items():
        np.testing.assert_array_equal(b.param_values()[name], value)
    with pytest.raises(InputError, match="missing"):
        b.set_param_values({"softmax.W": np.zeros((H, V))})
    bad = a.param_values()
    bad["softmax.W"] = np.zeros((H + 1, V))
    with pytest.raises(InputError, match="shape"):
        b.set_param_values(bad)


def test_custom_factory_drops_in():
    calls = []

    class MyRecurrent(L.CustomRecurrentLayer):
        pass

    def factory(incoming, num_units, mask_input=None, grad_clipping=False,
                name=None):
        calls.append((incoming.output_shape, num_units, name))
        in_to_hid = L.DenseLayer(
            L.InputLayer((None,) + incoming.output_shape[2:]), num_units,
            nonlinearity=None)
        hid_to_hid = L.DenseLayer(L.InputLayer((None, num_units)),
                                  num_units, nonlinearity=None)
        return MyRecurrent(incoming, in_to_hid, hid_to_hid,
                           mask_input=mask_input,
                           grad_clipping=grad_clipping, name=name)

    model = build_model(V, H, num_layers=2, input="ids", batching="bucket",
                        cell=factory, seed=0)
    assert [c[2] for c in calls] == ["rnn1", "rnn2"]
    # The first layer of an id model gets one-hot vectors, the second the
    # first one's output.
    assert calls[0][0] == (None, None, V) and calls[1][0] == (None, None, H)
    assert all(type(l) is MyRecurrent for l in model.recurrent_layers)
    with pytest.raises(InputError, match="Lasagne Layer"):
        build_model(V, H, cell=lambda *a, **k: None)


@pytest.mark.parametrize("kwargs, match", [
    (dict(vocab_size=0), "vocab_size"),
    (dict(num_units=2.5), "num_units"),
    (dict(num_layers=0), "num_layers"),
    (dict(input="words"), "input"),
    (dict(batching="pad"), "batching"),
    (dict(cell="rnn"), "cell"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(grad_clipping=-1), "grad_clipping"),
    (dict(seed="x"), "seed"),
])
def test_bad_arguments(kwargs, match):
    args = dict(vocab_size=V, num_units=H)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        build_model(**args)


def test_check_batch_errors():
    ids = build_model(V, H, input="ids", batching="mask", seed=0)
    X = np.array([[1, 3, 4]], np.int32)
    y = np.array([[3, 4, 2]], np.int32)
    m = np.ones((1, 3), theano.config.floatX)
    checked = ids.check_batch(X, y, m)
    assert [a.dtype for a in checked] == [v.dtype for v in ids.inputs]
    for a, b in zip(checked, (X, y, m)):
        assert np.array_equal(a, b)
    # Converted to the inputs' dtypes, so that the result feeds Theano.
    assert ids.check_batch(X.astype(np.int64), y, m)[0].dtype == np.int32
    # The generic checks are lstm_accum.checks.check_arrays' (and messages).
    with pytest.raises(InputError,
                       match=r"got 2 arrays, expected 3.*X, y, mask"):
        ids.check_batch(X, y)
    with pytest.raises(InputError, match=r"\[0, 12\)"):
        ids.check_batch(X * 4, y, m)
    with pytest.raises(InputError, match=r"\[0, 12\)"):
        ids.check_batch(-X, y, m)
    with pytest.raises(InputError, match=r"'y'.*\[0, 12\)"):
        ids.check_batch(X, y * 5, m)
    with pytest.raises(InputError, match=r"'y'.*expected integer ids"):
        ids.check_batch(X, y.astype(np.float32), m)
    with pytest.raises(InputError,
                       match=r"mask: shape \(1, 2\) differs.*\(1, 3\)"):
        ids.check_batch(X, y, m[:, :2])
    with pytest.raises(InputError, match="0 and 1"):
        ids.check_batch(X, y, m * 0.5)
    question = build_model(V, H, seed=0)
    onehot = np.eye(V, dtype=theano.config.floatX)[X]
    question.check_batch(onehot, y[0])
    with pytest.raises(InputError, match="3-D"):
        question.check_batch(X, y[0])
    with pytest.raises(InputError, match="columns"):
        question.check_batch(onehot[:, :, :5], y[0])
    with pytest.raises(InputError, match="targets must have shape"):
        question.check_batch(onehot, y[0, :2])
    with pytest.raises(InputError, match="one sentence"):
        question.check_batch(np.concatenate([onehot, onehot]), y[0])


# -- the stable log-softmax --------------------------------------------------

def test_stable_log_softmax_with_huge_logits():
    with float64():
        z = T.matrix("z")
        y = T.ivector("y")
        nll = -stable_log_softmax(z)[T.arange(y.shape[0]), y]
        f = theano.function([z, y], [nll, theano.grad(nll.sum(), z)])
    logits = np.array([[1e4, 0.0, -1e4],
                       [3e5, 3e5 + 2.0, 3e5 - 1.0],
                       [0.5, -0.25, 2.0]])
    targets = np.array([1, 0, 2], np.int32)
    got_nll, got_grad = f(logits, targets)
    # Independent reference: logsumexp computed in exact rational terms
    # relative to the row maximum.
    m = logits.max(axis=1, keepdims=True)
    p = np.exp(logits - m)
    lse = m[:, 0] + np.log(p.sum(axis=1))
    expected = lse - logits[np.arange(3), targets]
    assert np.all(np.isfinite(got_nll)) and np.all(np.isfinite(got_grad))
    # Logits near 3e5 carry an absolute rounding error of ~1e-11 in float64.
    np.testing.assert_allclose(got_nll, expected, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got_nll[0], 1e4, rtol=1e-12)
    softmax = p / p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got_grad, softmax - np.eye(3)[targets],
                               atol=1e-15)
    # These logits do break the naive log(softmax(z)) (in numpy; Theano's
    # optimizer happens to rewrite that pattern itself):
    with np.errstate(divide="ignore"):
        naive = np.log(softmax)
    assert naive[0, 1] == -np.inf


# -- one-hot and ids agree (outputs and gradients), float64 ------------------

def _grad_function(model, stochastic=False):
    loss = model.loss(deterministic=True)
    outputs = [model.log_probs(), loss] + theano.grad(loss, model.params)
    if stochastic:
        outputs.append(model.loss(deterministic=False))
    return theano.function(model.inputs, outputs)


@pytest.fixture(scope="module")
def lstm_mask_pair():
    """One-hot and id LSTM models with masks, float64, same weights."""
    with float64():
        onehot = build_model(V, H, input="onehot", batching="mask", seed=7)
        ids = build_model(V, H, input="ids", batching="mask", seed=99)
        L.set_all_param_values(ids.output_layer,
                               L.get_all_param_values(onehot.output_layer))
        return (onehot, _grad_function(onehot)), (ids, _grad_function(ids))


@pytest.fixture(scope="module")
def gru_stack_pair():
    """Two-layer GRU with dropout, bucketed, float64, same weights."""
    with float64():
        onehot = build_model(V, H, num_layers=2, input="onehot",
                             batching="bucket", cell="gru", dropout=0.5,
                             seed=5)
        ids = build_model(V, H, num_layers=2, input="ids", batching="bucket",
                          cell="gru", dropout=0.5, seed=5)
        return ((onehot, _grad_function(onehot, stochastic=True)),
                (ids, _grad_function(ids, stochastic=True)))


def _compare(onehot_out, ids_out):
    assert len(onehot_out) == len(ids_out)
    for a, b in zip(onehot_out, ids_out):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)


def test_lstm_ids_equal_onehot_with_mask(lstm_mask_pair):
    (onehot, f_onehot), (ids, f_ids) = lstm_mask_pair
    X = np.array([[1, 3, 4, 7], [1, 5, 0, 0], [1, 11, 2, 0]], np.int32)
    y = np.array([[3, 4, 7, 2], [5, 2, 0, 0], [11, 2, 2, 0]], np.int32)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], np.float64)
    out_ids = f_ids(X, y, mask)
    out_onehot = f_onehot(np.eye(V)[X], y, mask)
    _compare(out_onehot, out_ids)
    # Gradients reach the input rows of the words seen, and no others.
    grad_W_in = out_ids[2]
    assert onehot.params[0].name == "lstm1.W_in_to_ingate"
    seen = np.unique(X[mask > 0])
    assert np.all(grad_W_in[seen].any(axis=1))
    unseen = np.setdiff1d(np.arange(V), seen)
    assert not grad_W_in[unseen].any()


def test_model_loss_and_gradients_finite_for_huge_logits(lstm_mask_pair):
    (onehot, f_onehot), _ = lstm_mask_pair
    b = onehot.logits_layer.b
    saved = b.get_value()
    X = np.array([[1, 3, 4], [1, 5, 0]], np.int32)
    y = np.array([[3, 4, 2], [5, 2, 0]], np.int32)
    mask = np.array([[1, 1, 1], [1, 1, 0]], np.float64)
    try:
        huge = np.zeros(V)
        huge[4], huge[5] = 1e5, -1e5
        b.set_value(huge)
        out = f_onehot(np.eye(V)[X], y, mask)
    finally:
        b.set_value(saved)
    log_probs, loss, grads = out[0], out[1], out[2:]
    assert np.all(np.isfinite(loss)) and all(np.all(np.isfinite(g))
                                             for g in grads)
    # Word 4 takes all the mass: every target but the one 4 costs ~1e5
    # nats (exactly 1e5 - logit difference within O(1)), word 5 ~2e5.
    assert np.all(np.isfinite(log_probs))
    targets = y[mask > 0]
    expected = sum(0.0 if t == 4 else (2e5 if t == 5 else 1e5)
                   for t in targets)
    np.testing.assert_allclose(loss, expected, atol=10.0)


def test_gru_stack_ids_equal_onehot(gru_stack_pair):
    (onehot, f_onehot), (ids, f_ids) = gru_stack_pair
    X = np.array([[1, 3, 4], [1, 9, 10]], np.int32)
    y = np.array([[3, 4, 2], [9, 10, 2]], np.int32)
    out_ids = f_ids(X, y)
    out_onehot = f_onehot(np.eye(V)[X], y)
    # Same seed: same weights and the same dropout stream, so even the
    # stochastic (training) loss agrees.
    _compare(out_onehot, out_ids)
    deterministic, stochastic = out_ids[1], out_ids[-1]
    assert stochastic != deterministic


def test_dropout_rng_state_round_trip(gru_stack_pair):
    _, (ids, f_ids) = gru_stack_pair
    X = np.array([[1, 3, 4], [1, 9, 10]], np.int32)
    y = np.array([[3, 4, 2], [9, 10, 2]], np.int32)
    state = ids.rng_state()
    # The checkpoints' key format: stream i of layer <name>, its host seed
    # and the state of each draw in the built graphs.
    assert list(state) == ["rng/0.dropout1/rstate", "rng/0.dropout1/0",
                           "rng/1.dropout2/rstate", "rng/1.dropout2/0"]
    assert all(v.dtype == np.int32 for v in state.values())
    assert state["rng/0.dropout1/rstate"].shape == (6,)
    first = f_ids(X, y)[-1]
    second = f_ids(X, y)[-1]
    assert first != second  # the streams advance
    ids.set_rng_state(state)
    assert f_ids(X, y)[-1] == first  # and restore exactly
    with pytest.raises(IncompatibleStateError, match="rng/0.dropout1/0"):
        ids.set_rng_state({"rng/0.dropout1/0": state["rng/0.dropout1/0"]})
    with pytest.raises(IncompatibleStateError, match="shape"):
        ids.set_rng_state(dict(state, **{"rng/1.dropout2/0":
                                         state["rng/1.dropout2/0"][:1]}))
    assert build_model(V, H, seed=0).rng_state() == {}


def test_set_rng_state_reads_only_rng_keys_and_the_host_seeds(
        gru_stack_pair):
    _, (ids, f_ids) = gru_stack_pair
    state = ids.rng_state()
    # A whole checkpoint's arrays: the other keys are not the codec's.
    changed = dict(state)
    changed["rng/1.dropout2/rstate"] = state["rng/1.dropout2/rstate"] + 1
    changed["model/softmax.b"] = np.zeros(V)
    changed["acc/accum/count"] = np.zeros(())
    try:
        ids.set_rng_state(changed)
        got = ids.rng_state()
        assert sorted(got) == sorted(state)
        for key in got:
            assert np.array_equal(got[key], changed[key]), key
    finally:
        ids.set_rng_state(state)
    assert ids.rng_state()["rng/1.dropout2/rstate"].tolist() == \
        state["rng/1.dropout2/rstate"].tolist()


def test_num_tokens_and_samples():
    with float64():
        masked = build_model(V, H, input="ids", batching="mask", seed=0)
        bucket = build_model(V, H, input="ids", batching="bucket", seed=0)
        question = build_model(V, H, seed=0)
        f_mask = theano.function(masked.inputs, [masked.num_tokens(),
                                                 masked.num_samples()],
                                 on_unused_input="ignore")
        f_bucket = theano.function(bucket.inputs, [bucket.num_tokens(),
                                                   bucket.num_samples()],
                                   on_unused_input="ignore")
        f_q = theano.function(question.inputs, [question.num_tokens(),
                                                question.num_samples()],
                              on_unused_input="ignore")
    X = np.ones((3, 4), np.int32)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], np.float64)
    assert [int(v) for v in f_mask(X, X, mask)] == [7, 3]
    assert [int(v) for v in f_bucket(X, X)] == [12, 3]
    assert [int(v) for v in f_q(np.eye(V)[X[:1]], X[0])] == [4, 1]


@pytest.fixture(scope="module")
def ids_mask_acc():
    """``fresh()`` -> (model, accumulator): the id-input LSTM with masks
    (float64, seed 13) and its SGD accumulator (normalize='tokens',
    learning rate 0.1, ids checked against V), as they were built: each
    call restores the initial weights and an empty window, so the tests
    that share them (compiling one takes seconds) do not depend on order."""
    from lstm_accum.accumulation import GradientAccumulator
    with float64():
        model = build_model(V, H, input="ids", batching="mask", seed=13)
        acc = GradientAccumulator(
            model.loss(), model.params, model.inputs, normalize="tokens",
            learning_rate=0.1, num_tokens=model.num_tokens(), vocab_size=V)
    initial = acc.state()

    def fresh():
        acc.load_state(initial)
        assert acc.samples == 0
        return model, acc
    return fresh


def test_onehot_and_ids_same_parameters_after_a_window(ids_mask_acc):
    """Issue 6: one-hot and id input give the same parameters after an
    accumulated window (two masked minibatches of different lengths),
    given the same initial weights."""
    from lstm_accum.accumulation import GradientAccumulator

    batches = [
        (np.array([[1, 3, 4, 7], [1, 5, 0, 0]], np.int32),
         np.array([[3, 4, 7, 2], [5, 2, 0, 0]], np.int32),
         np.array([[1, 1, 1, 1], [1, 1, 0, 0]], np.float64)),
        (np.array([[1, 11, 9], [1, 2, 0], [1, 6, 8]], np.int32),
         np.array([[11, 9, 2], [2, 0, 0], [6, 8, 2]], np.int32),
         np.array([[1, 1, 1], [1, 0, 0], [1, 1, 1]], np.float64)),
    ]
    results = {}
    with float64():
        for kind in ("onehot", "ids"):
            if kind == "ids":
                model, acc = ids_mask_acc()     # seed 13 too
            else:
                model = build_model(V, H, input=kind, batching="mask",
                                    seed=13)
                acc = GradientAccumulator(
                    model.loss(), model.params, model.inputs,
                    normalize="tokens", learning_rate=0.1,
                    num_tokens=model.num_tokens())
            before = model.param_values()
            for X, y, mask in batches:
                acc.accumulate(np.eye(V)[X] if kind == "onehot" else X, y,
                               mask)
            assert acc.tokens == 4 + 2 + 3 + 1 + 3
            assert acc.apply().applied
            results[kind] = (before, model.param_values())
    (before, onehot), (before_ids, ids) = results["onehot"], results["ids"]
    for name in onehot:
        # the same initial weights, from the same seed
        assert np.array_equal(before_ids[name], before[name]), name
        np.testing.assert_allclose(ids[name], onehot[name], rtol=1e-10,
                                   atol=1e-14, err_msg=name)
    moved = [n for n in onehot if not np.array_equal(onehot[n], before[n])]
    assert "lstm1.W_in_to_ingate" in moved and "softmax.W" in moved


def test_check_batch_is_the_accumulators_check(ids_mask_acc):
    """model.check_batch as GradientAccumulator(check=...): called once per
    call, the model's own checks apply, and the window is the one the
    generic check gives."""
    from lstm_accum.accumulation import GradientAccumulator

    X = np.array([[1, 3, 4, 7], [1, 5, 0, 0]], np.int32)
    y = np.array([[3, 4, 7, 2], [5, 2, 0, 0]], np.int32)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], np.float64)
    calls = []

    def counting(*arrays):
        calls.append(len(arrays))
        return model.check_batch(*arrays)
    # the generic check (vocab_size=V), then the model's on the same model
    model, generic = ids_mask_acc()
    with float64():
        own = GradientAccumulator(model.loss(), model.params, model.inputs,
                                  normalize="tokens", learning_rate=0.1,
                                  num_tokens=model.num_tokens(),
                                  check=counting)
    accs = [own, generic]
    for acc in accs:
        acc.accumulate(X, y, mask)
    assert calls == [3]
    mine, generic = accs[0].state(), accs[1].state()
    assert sorted(mine) == sorted(generic)
    for key in mine:
        assert np.asarray(mine[key]).tobytes() == \
            np.asarray(generic[key]).tobytes(), key
    with pytest.raises(InputError, match="0 and 1"):
        accs[0].accumulate(X, y, mask * 0.5)    # the model's check
    with pytest.raises(InputError, match=r"\[0, 12\)"):
        accs[0].accumulate(X * 4, y, mask)
    assert calls == [3, 3, 3] and accs[0].samples == 2


# -- the id lookup without precomputation, and the fused training loss -------

@pytest.mark.parametrize("pair", ["lstm_mask_pair", "gru_stack_pair"])
def test_ids_without_precompute_input_equal_onehot(pair, request):
    """The per-step lookup (``precompute_input=False``) computes the same
    outputs and gradients as the one-hot network with the same weights."""
    (onehot, f_onehot), _ = request.getfixturevalue(pair)
    config = onehot.config
    with float64():
        ids = build_model(V, H, num_layers=config["num_layers"], input="ids",
                          batching=config["batching"], cell=config["cell"],
                          dropout=config["dropout"], seed=1,
                          recurrent_kwargs={"precompute_input": False})
        assert not ids.recurrent_layers[0].precompute_input
        L.set_all_param_values(ids.output_layer,
                               L.get_all_param_values(onehot.output_layer))
        f_ids = _grad_function(ids)
    X = np.array([[1, 3, 4], [1, 9, 10]], np.int32)
    y = np.array([[3, 4, 2], [9, 10, 2]], np.int32)
    extra = [np.array([[1, 1, 1], [1, 1, 0]], np.float64)] \
        if ids.mask_var is not None else []
    out_ids = f_ids(X, y, *extra)
    out_onehot = f_onehot(np.eye(V)[X], y, *extra)[:len(out_ids)]
    _compare(out_onehot, out_ids)


def test_training_loss_matches_log_probs_and_softmax_gradient(lstm_mask_pair):
    """The fused training loss (Theano's crossentropy op) agrees with the
    separately written stable log-softmax: loss = -sum of the target
    log-probabilities over unmasked tokens, and its gradient with respect to
    the output bias is sum over unmasked tokens of softmax - onehot(y)."""
    _, (ids, f_ids) = lstm_mask_pair
    X = np.array([[1, 3, 4, 7], [1, 5, 0, 0]], np.int32)
    y = np.array([[3, 4, 7, 2], [5, 2, 0, 0]], np.int32)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], np.float64)
    out = f_ids(X, y, mask)
    log_probs, loss = out[0], out[1]
    grads = dict(zip([p.name for p in ids.params], out[2:]))
    m, t = mask.ravel(), y.ravel()
    rows = np.arange(t.size)
    np.testing.assert_allclose(loss, -(log_probs[rows, t] * m).sum(),
                               rtol=1e-12)
    expected = ((np.exp(log_probs) - np.eye(V)[t]) * m[:, None]).sum(axis=0)
    np.testing.assert_allclose(grads["softmax.b"], expected, rtol=1e-10,
                               atol=1e-14)


def test_training_graph_is_fused_and_never_stacks_weights():
    """Performance contract of the id model's training graph (CPU): one
    op for the softmax NLL and its gradient together (the loss is a sum; no
    separate softmax, no separate bias-gradient sum), one fused LSTM op and
    its gradient (no scan), and
    the (V, H) input weights are looked up gate by gate (their rows written
    side by side in one pass), never joined into a (V, 4H) matrix (whose
    gradient would then be split back every call); nor are the (H, H)
    recurrent weights joined into an (H, 4H) matrix: the fused op takes
    the four gates' as they are."""
    model = build_model(V, H, input="ids", batching="bucket", seed=0)
    loss = model.loss()
    f = theano.function(model.inputs,
                        [loss] + theano.grad(loss, model.params))
    nodes = f.maker.fgraph.toposort()
    names = [type(n.op).__name__ for n in nodes]
    for op in ("SoftmaxNLLAndGrad", "FusedLSTM", "FusedLSTMGrad"):
        assert names.count(op) == 1, op
    assert "SoftmaxNLL" not in names and "SoftmaxNLLGrad" not in names
    assert "Scan" not in names
    # the only sums are the loss's (over the token vector): the bias
    # gradients come out of the fused ops
    assert all(n.inputs[0].ndim == 1 for n in nodes
               if type(n.op).__name__ == "Sum")
    assert "Softmax" not in names and "SoftmaxWithBias" not in names
    joined = [x.name for n in nodes if type(n.op).__name__ == "Join"
              for x in n.inputs]
    assert not [name for name in joined if name and
                name.startswith(("lstm1.W_in_to_", "lstm1.W_hid_to_"))]
    fused = [x.name for n in nodes if type(n.op).__name__ == "FusedLSTM"
             for x in n.inputs]
    assert ["lstm1.W_hid_to_" + g for g in ("ingate", "forgetgate", "cell",
                                            "outgate")] == fused[2:6]
    # the four gates' lookups, written once side by side (JoinedRows)
    assert "AdvancedSubtensor1" not in names
    lookups = [W.name for n in nodes if type(n.op).__name__ == "JoinedRows"
               for W in n.inputs[1:]]
    assert sorted(lookups) == sorted(
        "lstm1.W_in_to_" + g for g in ("ingate", "forgetgate", "cell",
                                       "outgate"))
    out = f(np.array([[1, 3], [1, 4]], np.int32),
            np.array([[3, 2], [4, 2]], np.int32))
    assert all(np.all(np.isfinite(o)) for o in out)
