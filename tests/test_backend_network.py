"""The original question's network on this stack: ``import lasagne`` after
``import lstm_accum``, compiled, forward and backward on a one-hot sentence.
"""
import numpy as np
import pytest

import lstm_accum  # noqa: F401  (first: it sets Theano up)
import lasagne
import theano
import theano.tensor as T

V, H = 12, 5


@pytest.fixture(scope="module")
def network():
    """InputLayer((None, None, V)) -> LSTMLayer(H, grad_clipping=5) ->
    SliceLayer(lstm, 0, 0) -> DenseLayer(V, softmax), as in the question."""
    lasagne.random.set_rng(np.random.RandomState(0))
    l_in = lasagne.layers.InputLayer((None, None, V))
    l_lstm = lasagne.layers.LSTMLayer(l_in, H, grad_clipping=5)
    l_slice = lasagne.layers.SliceLayer(l_lstm, 0, 0)
    l_out = lasagne.layers.DenseLayer(
        l_slice, V, nonlinearity=lasagne.nonlinearities.softmax)
    target = T.ivector("y")
    probs = lasagne.layers.get_output(l_out)
    loss = lasagne.objectives.categorical_crossentropy(probs, target).sum()
    params = lasagne.layers.get_all_params(l_out, trainable=True)
    fn = theano.function([l_in.input_var, target],
                         [probs, loss] + theano.grad(loss, params))
    return l_out, params, fn


def test_lasagne_is_the_working_stack():
    assert lasagne.__version__ == "0.1"
    assert theano.__version__.startswith("1.0")


def test_question_network_forward_and_backward(network):
    l_out, params, fn = network
    words = [1, 4, 7, 7, 3]               # <s> w1 .. w4
    targets = np.array([4, 7, 7, 3, 2], np.int32)  # w1 .. w4 </s>
    X = np.eye(V, dtype=theano.config.floatX)[words][None]  # (1, T, V)
    out = fn(X, targets)
    probs, loss, grads = out[0], out[1], out[2:]
    assert probs.shape == (len(words), V)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    expected_loss = -np.log(probs[np.arange(len(words)), targets]).sum()
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    # LSTM: 4 gates x (W_in, W_hid, b) + 3 peepholes; dense: W, b.
    assert len(grads) == len(params) == 4 * 3 + 3 + 2
    for p, g in zip(params, grads):
        assert g.shape == p.get_value().shape, p.name
        assert g.dtype == theano.config.floatX, p.name
        assert np.all(np.isfinite(g)), p.name
        assert np.any(g != 0), p.name
    # Independent check of the backward pass at the output: d loss / d b =
    # sum_t (softmax_t - onehot(y_t)).
    by_name = dict((p.name, g) for p, g in zip(params, grads))
    np.testing.assert_allclose(
        by_name["b"], (probs - np.eye(V)[targets]).sum(axis=0), atol=1e-6)
    # The one-hot input product: rows of words not in the input get no
    # gradient.
    W_in = [g for p, g in zip(params, grads) if p.name == "W_in_to_ingate"][0]
    unseen = np.setdiff1d(np.arange(V), words)
    assert not W_in[unseen].any() and W_in[words].any(axis=1).all()
