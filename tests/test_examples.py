"""The bundled examples, each run once with a tiny budget (slow), the custom
layer against numpy, and the example corpus extraction (no network)."""
import importlib.util
import os
import subprocess
import zipfile

import numpy as np
import pytest

from lstm_accum.exceptions import InputError
from test_train import write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_example_module(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(ROOT, "examples", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example_corpus = _load_example_module("lee_corpus")


def load_example(name):
    path = os.path.join(ROOT, "examples", name + ".py")
    spec = importlib.util.spec_from_file_location("example_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("examples") / "tiny.txt")


# -- example corpus: sentence splitting, tokenization, extraction ------------
def test_split_and_tokenize():
    text = ('Hundreds of people fled. A new blaze near Goulburn, south-west '
            'of Sydney, closed the road! Was it "safe"? "No." He said so.')
    assert example_corpus.split_sentences(text) == [
        "Hundreds of people fled.",
        "A new blaze near Goulburn, south-west of Sydney, closed the road!",
        'Was it "safe"?', '"No."', "He said so."]
    assert example_corpus.tokenize_sentence(
        "At 4:00pm, Mr Howard's 1,500 men left.") == [
        "at", "4:00", "pm", ",", "mr", "howard's", "1,500", "men", "left",
        "."]


def test_lee_corpus_from_a_wheel_without_network(tmp_path, monkeypatch):
    wheels = tmp_path / "data" / "wheels"
    wheels.mkdir(parents=True)
    wheel = wheels / ("gensim-%s-py3-none-any.whl"
                      % example_corpus.GENSIM_VERSION)
    with zipfile.ZipFile(str(wheel), "w") as z:
        z.writestr(example_corpus.MEMBER,
                   "First article. It has two sentences.\n"
                   "Second article, one sentence!\n")

    def no_network(*args, **kwargs):
        raise AssertionError("must not download when the wheel is there")
    monkeypatch.setattr(subprocess, "run", no_network)
    path = example_corpus.lee_corpus(str(tmp_path / "data"))
    with open(path) as f:
        assert f.read() == ("first article .\nit has two sentences .\n"
                            "second article , one sentence !\n")
    assert example_corpus.lee_corpus(str(tmp_path / "data")) == path


def test_lee_corpus_without_registry_is_a_clear_error(tmp_path, monkeypatch):
    def pip_fails(command, **kwargs):
        return subprocess.CompletedProcess(
            command, 1, "", "ERROR: Could not find a version that satisfies "
            "the requirement gensim==4.3.3\n")
    monkeypatch.setattr(subprocess, "run", pip_fails)
    with pytest.raises(InputError, match="could not download the example "
                       "corpus.*Could not find a version.*registry"):
        example_corpus.lee_corpus(str(tmp_path / "data"))
    assert not os.path.exists(str(tmp_path / "data" / "lee_background.txt"))


# -- the custom layer against numpy -------------------------------------------
def numpy_layer_norm_rnn(x, mask, W_in, W_hid, gain, b, eps=1e-5):
    B, T, _ = x.shape
    h = np.zeros((B, W_hid.shape[0]))
    out = np.zeros((B, T, W_hid.shape[0]))
    for t in range(T):
        a = x[:, t] @ W_in + h @ W_hid
        mean = a.mean(axis=1, keepdims=True)
        var = ((a - mean) ** 2).mean(axis=1, keepdims=True)
        new = np.tanh(gain * (a - mean) / np.sqrt(var + eps) + b)
        m = mask[:, t:t + 1]
        h = m * new + (1 - m) * h
        out[:, t] = h
    return out


@pytest.mark.slow
def test_custom_layer_matches_numpy():
    module = load_example("custom_layer")
    from lstm_accum.backend import lasagne, theano
    L = lasagne.layers
    l_in = L.InputLayer((None, None, 5))
    l_mask = L.InputLayer((None, None))
    layer = module.LayerNormRNNLayer(l_in, 4, mask_input=l_mask)
    rng = np.random.RandomState(0)
    for p in layer.get_params():
        p.set_value(rng.randn(*p.get_value().shape).astype(p.dtype))
    f = theano.function([l_in.input_var, l_mask.input_var],
                        L.get_output(layer))
    x = rng.randn(3, 6, 5).astype(theano.config.floatX)
    mask = np.ones((3, 6), dtype=theano.config.floatX)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    got = f(x, mask)
    want = numpy_layer_norm_rnn(
        x.astype(np.float64), mask, layer.W_in.get_value(),
        layer.W_hid.get_value(), layer.gain.get_value(),
        layer.b.get_value())
    tol = 1e-5 if theano.config.floatX == "float32" else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol * 10, atol=tol)
    # padded steps repeat the last real state
    np.testing.assert_array_equal(got[2, 2:], np.repeat(got[2, 1:2], 4, 0))


# -- each example with a tiny budget ------------------------------------------
@pytest.mark.slow
def test_train_lm_example(corpus, tmp_path, capsys):
    module = load_example("train_lm")
    result = module.main(corpus=corpus, out=str(tmp_path / "run"),
                         num_epochs=2, vocab_size=40, num_units=8,
                         batch_size=4, accumulate=8, optimizer="adagrad",
                         lr=0.1, warmup=0, valid_every=5, num_samples=3)
    out = capsys.readouterr().out
    for n in range(1, 5):
        assert "[%d/4]" % n in out
    assert "unigram baseline" in out and "effective batch" in out
    assert result["best_perplexity"] < 0.5 * result["unigram_perplexity"]
    assert len(result["samples"]) == 3
    assert os.path.exists(str(tmp_path / "run" / "curves.png"))


@pytest.mark.slow
def test_seed_question_example(corpus):
    module = load_example("seed_question")
    losses = module.main(corpus=corpus, vocab_size=40, num_units=8, n=8,
                         max_sentences=None, learning_rate=0.1)
    assert len(losses) == int(np.ceil(150 / 8.0))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.5


@pytest.mark.slow
def test_custom_layer_example(corpus):
    module = load_example("custom_layer")
    result = module.main(corpus=corpus, vocab_size=40, num_units=8,
                         batch_size=4, accumulate=8, learning_rate=0.1,
                         num_epochs=2, max_sentences=None)
    assert result["perplexity"] < 0.5 * result["unigram_perplexity"]
