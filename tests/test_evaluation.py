"""Perplexity against an independent numpy forward pass (the unigram
baseline is tests/test_unigram.py's)."""
import math

import numpy as np
import pytest

from lstm_accum.data import EncodedCorpus
from lstm_accum.evaluation import (perplexity, perplexity_of_batches,
                                   score_corpus)
from lstm_accum.exceptions import InputError
from lstm_accum.models import build_model
from helpers import float64

V, H = 12, 5
BOS, EOS = 1, 2
SENTENCES = [[3, 4, 5], [7], [], [9, 9, 10, 11], [4, 3, 6]]



def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_lstm_logits(p, inputs):
    """Lasagne 0.1's LSTM (peepholes, tanh) and the dense output layer,
    written out in numpy for one sentence of input ids (gates as in
    lasagne/layers/recurrent.py, LSTMLayer.get_output_for)."""
    h = p["lstm1.hid_init"][0]
    c = p["lstm1.cell_init"][0]
    out = []
    for x in inputs:
        def pre(gate):
            return (p["lstm1.W_in_to_" + gate][x] + h.dot(
                p["lstm1.W_hid_to_" + gate]) + p["lstm1.b_" + gate])
        i = sigmoid(pre("ingate") + c * p["lstm1.W_cell_to_ingate"])
        f = sigmoid(pre("forgetgate") + c * p["lstm1.W_cell_to_forgetgate"])
        g = np.tanh(pre("cell"))
        c = f * c + i * g
        # Lasagne 0.1 adds the output gate's peephole *after* the sigmoid
        # (its docstring puts it inside); the network is what it computes.
        o = sigmoid(pre("outgate")) + c * p["lstm1.W_cell_to_outgate"]
        h = o * np.tanh(c)
        out.append(h.dot(p["softmax.W"]) + p["softmax.b"])
    return np.array(out)


def numpy_nll(params, sentences):
    """Summed NLL (nats) and target count: targets w1..wn </s>."""
    total, tokens = 0.0, 0
    for s in sentences:
        logits = numpy_lstm_logits(params, [BOS] + s)
        targets = s + [EOS]
        m = logits.max(axis=1)
        lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
        total += float(np.sum(lse - logits[np.arange(len(targets)),
                                           targets]))
        tokens += len(targets)
    return total, tokens


@pytest.fixture(scope="module")
def models():
    """The question's network and an id/mask model with the same weights."""
    with float64():
        question = build_model(V, H, input="onehot", batching="sample",
                               seed=11)
        # Make the weights larger than the default init so the test sees a
        # model far from uniform.
        rng = np.random.RandomState(0)
        values = {k: v + rng.normal(0, 0.5, v.shape)
                  for k, v in question.param_values().items()}
        question.set_param_values(values)
        masked = build_model(V, H, input="ids", batching="mask", seed=12)
        masked.set_param_values(question.param_values())
        question.score_function()
        masked.score_function()
    return question, masked


def test_question_network_perplexity_equals_numpy(models):
    question, _ = models
    batches = [(np.eye(V)[[BOS] + s][None], np.array(s + [EOS], np.int32))
               for s in SENTENCES]
    score = perplexity_of_batches(question.score_function(), batches)
    nll, tokens = numpy_nll(question.param_values(), SENTENCES)
    assert tokens == 3 + 1 + 0 + 4 + 3 + len(SENTENCES)  # </s> counted
    assert score.tokens == tokens and score.sentences == len(SENTENCES)
    np.testing.assert_allclose(score.nll, nll, rtol=1e-10)
    np.testing.assert_allclose(score.perplexity, math.exp(nll / tokens),
                               rtol=1e-10)
    # Scores of parts add up: two halves give the same perplexity.
    first = perplexity_of_batches(question.score_function(), batches[:2])
    rest = perplexity_of_batches(question.score_function(), batches[2:])
    assert first.tokens + rest.tokens == tokens
    np.testing.assert_allclose(
        math.exp((first.nll + rest.nll) / tokens), score.perplexity,
        rtol=1e-12)


def test_masked_perplexity_excludes_padding(models):
    question, masked = models
    # Hand-padded batches: padding id 0 and mask 0 after </s>.
    batches = []
    for group in (SENTENCES[:2], SENTENCES[2:]):
        T = max(len(s) for s in group) + 1
        X = np.zeros((len(group), T), np.int32)
        y = np.zeros((len(group), T), np.int32)
        mask = np.zeros((len(group), T))
        for b, s in enumerate(group):
            X[b, :len(s) + 1] = [BOS] + s
            y[b, :len(s) + 1] = s + [EOS]
            mask[b, :len(s) + 1] = 1
        batches.append((X, y, mask))
    score = perplexity_of_batches(masked.score_function(), batches)
    nll, tokens = numpy_nll(question.param_values(), SENTENCES)
    assert score.tokens == tokens
    np.testing.assert_allclose(score.nll, nll, rtol=1e-10)


def test_perplexity_through_the_iterators(models):
    question, masked = models
    ids = np.concatenate([np.array(s, np.int32) for s in SENTENCES])
    offsets = np.cumsum([0] + [len(s) for s in SENTENCES])
    corpus = EncodedCorpus(ids, offsets)
    nll, tokens = numpy_nll(question.param_values(), SENTENCES)
    expected = math.exp(nll / tokens)
    for model, batch_size in ((question, 1), (masked, 2), (masked, 5)):
        score = score_corpus(model, corpus, batch_size=batch_size)
        assert score.tokens == tokens and score.sentences == len(SENTENCES)
        np.testing.assert_allclose(score.perplexity, expected, rtol=1e-10)
    np.testing.assert_allclose(perplexity(masked, corpus), expected,
                               rtol=1e-10)
    # A bare scoring function needs the batch settings.
    np.testing.assert_allclose(
        perplexity(masked.score_function(), corpus, batch_size=3,
                   batching="mask", input_kind="ids", vocab_size=V),
        expected, rtol=1e-10)
    with pytest.raises(InputError, match="batching"):
        perplexity(masked.score_function(), corpus)
    with pytest.raises(InputError, match="batching='mask'"):
        perplexity(masked, corpus, batching="bucket")
    with pytest.raises(InputError, match="empty"):
        perplexity(masked, EncodedCorpus(np.zeros(0, np.int32), [0]))


def test_perplexity_of_batches_rejects_no_tokens():
    with pytest.raises(InputError, match="no target tokens"):
        perplexity_of_batches(lambda *a: (0.0, 0), [])


def test_perplexity_of_a_diverged_model_is_inf_not_an_error():
    from lstm_accum.evaluation.scoring import score_of
    # 800 nats per token: exp() of it overflows a float64
    score = score_of(800.0 * 3, 3, 1)
    assert score.perplexity == math.inf
    assert score.nll == 2400.0 and score.tokens == 3
    # just below the overflow, still the exact number
    assert score_of(700.0, 1, 1).perplexity == pytest.approx(math.exp(700))
