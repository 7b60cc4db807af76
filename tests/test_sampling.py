"""Sampling: reproducible under a seed, stops at </s>, greedy follows an
independent numpy forward pass, temperature reshapes the distribution, the
one-step function agrees with the full network (Lasagne's own scan), and
every built model (fused, id-input, stacked) samples one step per word."""

import numpy as np
import pytest

from lstm_accum.backend import lasagne
from lstm_accum.exceptions import InputError
from lstm_accum.models import FusedLSTMLayer, build_model
from lstm_accum.evaluation.sampling import (sample_ids, sample_sentences,
                                            step_function)
from lstm_accum.data import Vocabulary
from helpers import float64

L = lasagne.layers
V, H = 12, 5
BOS, EOS = 1, 2



def perturbed(model, scale, seed):
    """Weights further from uniform than the default initialisation."""
    rng = np.random.RandomState(seed)
    model.set_param_values({k: v + rng.normal(0, scale, v.shape)
                            for k, v in model.param_values().items()})
    return model


@pytest.fixture(scope="module")
def vocab():
    words = ["w%d" % i for i in range(V - 3)]
    vocab = Vocabulary.build({w: 100 - i for i, w in enumerate(words)},
                             V - 3)
    assert len(vocab) == V
    return vocab


@pytest.fixture(scope="module")
def question():
    """The question's network (one-hot, 'sample'), float64."""
    with float64():
        model = perturbed(build_model(V, H, seed=21), 1.0, 0)
        step_function(model)  # compile inside the float64 block
    return model


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_step(p, x, h, c):
    """One step of Lasagne 0.1's LSTM and the output layer, in numpy."""
    def pre(gate):
        return (p["lstm1.W_in_to_" + gate][x] + h.dot(p["lstm1.W_hid_to_"
                                                         + gate])
                + p["lstm1.b_" + gate])
    i = sigmoid(pre("ingate") + c * p["lstm1.W_cell_to_ingate"])
    f = sigmoid(pre("forgetgate") + c * p["lstm1.W_cell_to_forgetgate"])
    c = f * c + i * np.tanh(pre("cell"))
    # Lasagne 0.1 adds the output peephole after the sigmoid.
    o = sigmoid(pre("outgate")) + c * p["lstm1.W_cell_to_outgate"]
    h = o * np.tanh(c)
    return h, c, h.dot(p["softmax.W"]) + p["softmax.b"]


def first_logits(model):
    p = model.param_values()
    return numpy_step(p, BOS, p["lstm1.hid_init"][0],
                      p["lstm1.cell_init"][0])[2]


def test_reproducible_under_seed(question, vocab):
    a = sample_sentences(question, vocab, n=8, seed=3, max_length=20)
    b = sample_sentences(question, vocab, n=8, seed=3, max_length=20)
    c = sample_sentences(question, vocab, n=8, seed=4, max_length=20)
    assert a == b
    assert a != c
    assert len(a) == 8
    for sentence in a:
        assert all(isinstance(w, str) for w in sentence)
        assert "</s>" not in sentence
        assert len(sentence) <= 20
    # Words match the ids sampled with the same seed.
    ids = sample_ids(question, n=8, seed=3, max_length=20)
    assert [[vocab.word(i) for i in s] for s in ids] == a


def test_stops_at_end_of_sentence(question):
    b = question.logits_layer.b
    saved = b.get_value()
    try:
        value = saved.copy()
        value[EOS] = 50.0  # </s> dominates every step
        b.set_value(value)
        assert sample_ids(question, n=5, seed=0, max_length=10) == [[]] * 5
        value[EOS] = -50.0  # </s> never: every sentence hits max_length
        b.set_value(value)
        out = sample_ids(question, n=5, seed=0, max_length=7)
        assert all(len(s) == 7 and EOS not in s for s in out)
        value[EOS] = saved[EOS] + 1.5  # some end early, some later
        b.set_value(value)
        out = sample_ids(question, n=40, seed=1, max_length=12)
        assert all(EOS not in s for s in out)
        lengths = [len(s) for s in out]
        assert min(lengths) < 12 and len(set(lengths)) > 2
    finally:
        b.set_value(saved)


def test_greedy_equals_numpy_decoding(question):
    p = question.param_values()
    h, c, x = p["lstm1.hid_init"][0], p["lstm1.cell_init"][0], BOS
    expected = []
    for _ in range(15):
        h, c, logits = numpy_step(p, x, h, c)
        x = int(np.argmax(logits))
        if x == EOS:
            break
        expected.append(x)
    got = sample_ids(question, n=3, greedy=True, max_length=15, seed=9)
    assert got == [expected] * 3
    assert len(expected) >= 2  # the test walks several steps


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_distribution(question, temperature):
    n = 6000
    out = sample_ids(question, n=n, temperature=temperature, seed=5,
                     max_length=1)
    first = np.array([s[0] if s else EOS for s in out])
    freq = np.bincount(first, minlength=V) / float(n)
    z = first_logits(question) / temperature
    z[BOS] = -np.inf   # <s> is never sampled: the softmax over the rest
    p = np.exp(z - z.max())
    p /= p.sum()
    assert freq[BOS] == 0
    # 5 standard errors of a binomial proportion, per word.
    np.testing.assert_array_less(np.abs(freq - p),
                                 5 * np.sqrt(p * (1 - p) / n) + 1e-3)


def test_onehot_and_ids_models_sample_the_same(question):
    with float64():
        ids = build_model(V, H, input="ids", batching="bucket", seed=1)
        ids.set_param_values(question.param_values())
        step_function(ids)
    assert sample_ids(ids, n=6, seed=2) == sample_ids(question, n=6, seed=2)


class _GRUFromFactory(L.GRULayer):
    """Not a layer the sampler knows: forces the full-prefix fallback."""


def _gru_factory(incoming, num_units, mask_input=None, grad_clipping=False,
                 name=None):
    return _GRUFromFactory(incoming, num_units, mask_input=mask_input,
                           grad_clipping=grad_clipping, name=name)


def test_step_function_equals_full_network_gru_stack():
    """The compiled one-step GRU (two layers, id input) against the model's
    full forward pass through Lasagne's own GRULayer scan."""
    with float64():
        fast = perturbed(build_model(V, H, num_layers=2, input="ids",
                                     batching="mask", cell="gru", seed=4),
                         1.0, 1)
        slow = build_model(V, H, num_layers=2, input="ids", batching="mask",
                           cell=_gru_factory, seed=4)
        # Factory layers are named rnn1, rnn2: transfer by position.
        L.set_all_param_values(slow.output_layer,
                               L.get_all_param_values(fast.output_layer))
        fast_step, slow_step = step_function(fast), step_function(slow)
    assert type(fast_step).__name__ == "_StepSampler"
    assert type(slow_step).__name__ == "_PrefixSampler"
    rng = np.random.RandomState(0)
    fast_step.start(4)
    slow_step.start(4)
    tokens = np.full(4, BOS, np.int32)
    for _ in range(5):
        np.testing.assert_allclose(fast_step.step(tokens),
                                   slow_step.step(tokens), rtol=1e-10,
                                   atol=1e-12)
        tokens = rng.randint(3, V, size=4).astype(np.int32)
    assert sample_ids(fast, n=5, seed=8, max_length=8) == \
        sample_ids(slow, n=5, seed=8, max_length=8)


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=0), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(n=0), "n must"),
    (dict(max_length=0), "max_length"),
])
def test_bad_arguments(question, vocab, kwargs, match):
    with pytest.raises(InputError, match=match):
        sample_sentences(question, vocab, **kwargs)


def test_never_samples_the_start_token(question):
    """<s> is never a target: even a model that gives it most of the mass
    (its output bias raised by 50) never continues a sentence with it."""
    b = question.logits_layer.b
    saved = b.get_value()
    raised = saved.copy()
    raised[BOS] += 50.0
    b.set_value(raised)
    try:
        for kwargs in (dict(seed=3), dict(greedy=True)):
            samples = sample_ids(question, n=6, max_length=6, **kwargs)
            assert all(BOS not in sentence for sentence in samples)
            assert any(samples), kwargs
        step = step_function(question)
        step.start(1)
        logits = step.step(np.full(1, BOS, np.int32))
        assert np.argmax(logits) == BOS   # the raise did act
    finally:
        b.set_value(saved)


def test_greedy_ignores_temperature(question):
    assert sample_ids(question, n=2, greedy=True, temperature=0) == \
        sample_ids(question, n=2, greedy=True)


# -- every built model samples one compiled step per word ---------------------

class _LSTMFromFactory(L.LSTMLayer):
    """Not a layer the sampler knows: forces the full-prefix fallback."""


def _lstm_factory(incoming, num_units, mask_input=None, grad_clipping=False,
                  name=None):
    return _LSTMFromFactory(incoming, num_units, mask_input=mask_input,
                            grad_clipping=grad_clipping, name=name)


def _fed_tokens(model, n, max_length):
    """(calls, ids fed per call) of the sampler's compiled function while
    sampling n sentences that never end before max_length."""
    sampler = step_function(model)
    fn, fed = sampler.fn, []

    def counting(ids, *states):
        fed.append(np.shape(ids))
        return fn(ids, *states)
    b = model.logits_layer.b
    saved = b.get_value()
    value = saved.copy()
    value[EOS] = -50.0  # </s> never: every sentence reaches max_length
    sampler.fn = counting
    try:
        b.set_value(value)
        out = sample_ids(model, n=n, seed=0, max_length=max_length)
    finally:
        sampler.fn = fn
        b.set_value(saved)
    assert [len(s) for s in out] == [max_length] * n
    return fed


@pytest.mark.parametrize("kwargs, fused", [
    (dict(), 1),                                        # the question's
    (dict(num_layers=2, batching="bucket"), 2),         # fused stack
    (dict(num_layers=2, input="ids", batching="bucket"), 1),  # ids + fused
    (dict(num_layers=2, input="ids", batching="mask", cell="gru"), 0),
])
def test_sampling_cost_is_linear_in_the_length(kwargs, fused):
    """One compiled step per generated word, fed one id per sentence: not
    the prefix sampler, whose calls take the whole prefix (quadratic)."""
    with float64():
        model = perturbed(build_model(V, H, seed=3, **kwargs), 0.5, 2)
        step_function(model)
    layers = L.get_all_layers(model.output_layer)
    assert sum(isinstance(layer, FusedLSTMLayer) for layer in layers) == fused
    for max_length in (3, 11):
        fed = _fed_tokens(model, 4, max_length)
        # max_length words, then the step that would give </s> or more
        assert len(fed) == max_length + 1
        assert fed == [(4,)] * (max_length + 1)


def test_fused_models_sample_like_the_full_scan_network():
    """A fused stack (one-hot input) samples the same sentences as the same
    weights in Lasagne's own layers: run as scan one step at a time
    (impl='scan') and through the whole network on each prefix."""
    with float64():
        fused = perturbed(build_model(V, H, num_layers=2, seed=6), 1.0, 3)
        scan = build_model(V, H, num_layers=2, seed=7, impl="scan")
        scan.set_param_values(fused.param_values())
        full = build_model(V, H, num_layers=2, cell=_lstm_factory, seed=8)
        L.set_all_param_values(full.output_layer,
                               L.get_all_param_values(fused.output_layer))
        steps = [step_function(m) for m in (fused, scan, full)]
    assert all(isinstance(layer, FusedLSTMLayer)
               for layer in fused.recurrent_layers)
    assert not any(isinstance(layer, FusedLSTMLayer)
                   for layer in scan.recurrent_layers)
    assert type(steps[2]).__name__ == "_PrefixSampler"
    rng = np.random.RandomState(1)
    for sampler in steps:
        sampler.start(4)
    tokens = np.full(4, BOS, np.int32)
    for _ in range(6):
        logits = [sampler.step(tokens) for sampler in steps]
        np.testing.assert_array_equal(logits[0], logits[1])
        np.testing.assert_allclose(logits[0], logits[2], rtol=1e-10,
                                   atol=1e-12)
        tokens = rng.randint(3, V, size=4).astype(np.int32)
    for kwargs in (dict(seed=8), dict(seed=9, temperature=2.0),
                   dict(greedy=True)):
        samples = [sample_ids(m, n=6, max_length=10, **kwargs)
                   for m in (fused, scan, full)]
        assert samples[0] == samples[1] == samples[2], kwargs
    assert len(set(map(tuple, samples[0]))) == 1  # greedy: all the same
