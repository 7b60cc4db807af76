"""Scoring sentences (:func:`lstm_accum.score_sentences`, ``lstm-accum
score``) against independent references.

* per-word log-probabilities of a tiny model equal a forward pass written
  here in numpy (Lasagne 0.1's LSTM equations, softmax in float64) with the
  same weights;
* on a trained checkpoint, the sentence totals add up to the corpus NLL of
  :func:`~lstm_accum.evaluation.score_corpus` (what ``eval`` reports) and
  ``score --output perplexity`` agrees with it to 1e-6 relative, lines
  longer than ``max_length`` included;
* ``--unk exclude`` against a case worked out by hand; output lines in the
  input's order and number; base 10 equals base e divided by ln 10; user
  errors are one line and exit status 2.
"""
import math

import numpy as np
import pytest

from lstm_accum import build_model, score_sentences
from lstm_accum.cli import main
from lstm_accum.data import BOS_ID, EOS_ID, UNK_ID, encode_file
from lstm_accum.evaluation import score_corpus
from lstm_accum.evaluation.sentences import length_batches
from lstm_accum.exceptions import InputError
from lstm_accum.models import load_model
from lstm_accum.training import Trainer
from test_train import tiny_config, write_corpus

V, H = 12, 5
MAX_LENGTH = 6      # the trained checkpoint's: corpus lines have 4-8 words


@pytest.fixture(scope="session")
def model():
    """A tiny id model with random weights of a useful size (the initial
    ones give nearly uniform probabilities)."""
    m = build_model(V, H, input="ids", batching="bucket", seed=1)
    rng = np.random.RandomState(0)
    m.set_param_values({k: rng.normal(0, 0.7, v.shape)
                        for k, v in m.param_values().items()})
    return m


def numpy_log_probs(model, ids):
    """Log-probabilities of the targets ``ids + [</s>]`` after ``<s> ids``:
    Lasagne 0.1's LSTM (peepholes; the output gate's added after its
    sigmoid) and a softmax, in float64."""
    p = {k: v.astype(np.float64) for k, v in model.param_values().items()}

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    def gate(g, x, h):
        return (p["lstm1.W_in_to_" + g][x] + h @ p["lstm1.W_hid_to_" + g]
                + p["lstm1.b_" + g])
    h, c = p["lstm1.hid_init"][0], p["lstm1.cell_init"][0]
    inputs = [BOS_ID] + list(ids)
    targets = list(ids) + [EOS_ID]
    out = []
    for x, y in zip(inputs, targets):
        i = sigmoid(gate("ingate", x, h) + c * p["lstm1.W_cell_to_ingate"])
        f = sigmoid(gate("forgetgate", x, h)
                    + c * p["lstm1.W_cell_to_forgetgate"])
        o = sigmoid(gate("outgate", x, h))
        c = f * c + i * np.tanh(gate("cell", x, h))
        o = o + c * p["lstm1.W_cell_to_outgate"]
        h = o * np.tanh(c)
        z = h @ p["softmax.W"] + p["softmax.b"]
        out.append(z[y] - z.max() - np.log(np.exp(z - z.max()).sum()))
    return np.array(out)


SENTENCES = [[3, 4, 5], [], [7, 0, 7, 11, 3, 3, 9, 10, 4], [8], [5, 6, 0]]


def test_word_scores_equal_numpy_forward_pass(model):
    scores = score_sentences(model, SENTENCES, word_scores=True,
                             batch_size=2)
    for s, got, total in zip(SENTENCES, scores.word_log_probs,
                             scores.log_probs):
        want = numpy_log_probs(model, s)
        assert got.shape == (len(s) + 1,)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
        assert total == pytest.approx(want.sum(), abs=1e-4)
    # an empty sentence is <s> </s>: log p(</s> | <s>)
    assert scores.log_probs[1] == pytest.approx(
        numpy_log_probs(model, [])[0], abs=2e-5)
    assert list(scores.words) == [len(s) for s in SENTENCES]
    assert list(scores.pieces) == [1] * len(SENTENCES)


def test_pieces_and_batch_size_do_not_change_scores(model):
    whole = score_sentences(model, SENTENCES, word_scores=True)
    cut = score_sentences(model, SENTENCES, word_scores=True, max_length=4,
                          batch_size=1)
    # the 9-word sentence is read as 4 + 4 + 1 words, each <s> .. </s>
    assert list(cut.pieces) == [1, 1, 3, 1, 1]
    s = SENTENCES[2]
    want = np.concatenate([numpy_log_probs(model, s[k:k + 4])
                           for k in range(0, 9, 4)])
    np.testing.assert_allclose(cut.word_log_probs[2], want, atol=2e-5)
    for k in (0, 1, 3, 4):
        np.testing.assert_array_equal(cut.word_log_probs[k],
                                      whole.word_log_probs[k])


def test_minibatches_of_unequal_lengths_equal_numpy_forward_pass(model):
    """Sentences of 8-17 words: a minibatch takes sentences down to an
    eighth shorter than its longest; the shorter rows run past their end
    and those outputs are dropped: every score is still the sentence's own
    (numpy's forward pass of it alone)."""
    rng = np.random.RandomState(5)
    sents = [list(rng.randint(0, V, n)) for n in
             [17, 16, 15, 15, 14, 9, 8, 8, 12, 11, 10, 17, 13]]
    mixed = [b for b in length_batches([len(s) for s in sents], 64, True)
             if len({len(sents[i]) for i in b}) > 1]
    assert mixed        # the case under test happens
    assert model.causal
    scores = score_sentences(model, sents, word_scores=True)
    for s, got in zip(sents, scores.word_log_probs):
        np.testing.assert_allclose(got, numpy_log_probs(model, s), rtol=0,
                                   atol=2e-5)


def test_length_batches():
    rng = np.random.RandomState(2)
    lengths = rng.randint(0, 40, 500)
    for padded in (False, True):
        for size in (1, 7, 64):
            batches = length_batches(lengths, size, padded)
            assert sorted(np.concatenate(batches)) == list(range(500))
            longest = [lengths[b].max() for b in batches]
            assert longest == sorted(longest, reverse=True)
            for b in batches:
                assert 1 <= len(b) <= size
                T = lengths[b].max()
                assert lengths[b].min() >= (T - T // 8 if padded else T)
                assert list(lengths[b]) == sorted(lengths[b], reverse=True)
    assert length_batches([], 4) == []


def test_models_not_known_causal_get_equal_lengths():
    """A backwards LSTM reads each sentence from its end: rows run past it
    would change every score, so it gets equal-length minibatches (the
    same scores as one sentence per call)."""
    back = build_model(V, H, input="ids", batching="bucket", seed=1,
                       recurrent_kwargs={"backwards": True})
    assert not back.causal
    assert build_model(V, H, input="ids", batching="bucket", cell="gru",
                       seed=1).causal
    rng = np.random.RandomState(5)
    sents = [list(rng.randint(0, V, n)) for n in [17, 16, 15, 8, 9]]
    a = score_sentences(back, sents, word_scores=True)
    b = score_sentences(back, sents, word_scores=True, batch_size=1)
    for x, y in zip(a.word_log_probs, b.word_log_probs):
        np.testing.assert_allclose(x, y, rtol=0, atol=2e-6)


def test_unk_exclude_by_hand(model):
    # "w3 <unk> w4": exclude drops the <unk> target (conditioning on it
    # still) and counts one OOV; SRILM: ppl over words - OOVs + sentences.
    ref = numpy_log_probs(model, [3, UNK_ID, 4])
    inc = score_sentences(model, [[3, UNK_ID, 4]], unk="include",
                          word_scores=True)
    exc = score_sentences(model, [[3, UNK_ID, 4]], unk="exclude",
                          word_scores=True)
    kept = ref[0] + ref[2] + ref[3]
    assert inc.log_probs[0] == pytest.approx(ref.sum(), abs=1e-4)
    assert exc.log_probs[0] == pytest.approx(kept, abs=1e-4)
    assert np.isnan(exc.word_log_probs[0][1])
    s = exc.summary("e")
    assert (s.sentences, s.words, s.oovs, s.zeroprobs) == (1, 3, 1, 0)
    assert s.ppl == pytest.approx(math.exp(-kept / 3), rel=1e-5)
    assert s.ppl1 == pytest.approx(math.exp(-kept / 2), rel=1e-5)
    s = inc.summary("10")
    assert s.oovs == 0 and s.logprob == pytest.approx(
        ref.sum() / math.log(10), abs=1e-4)
    assert s.ppl == pytest.approx(math.exp(-ref.sum() / 4), rel=1e-5)


def test_text_needs_a_vocabulary_and_ids_in_range(model):
    with pytest.raises(InputError, match="vocab"):
        score_sentences(model, ["a b"])
    with pytest.raises(InputError, match=r"outside \[0, 12\)"):
        score_sentences(model, [[3, 12]])
    with pytest.raises(InputError, match="unk must be"):
        score_sentences(model, [[3]], unk="skip")
    with pytest.raises(InputError, match="one string"):
        score_sentences(model, "a b")


# ---------------------------------------------------------------------------
# a trained checkpoint, and the command line
@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(checkpoint path, corpus path) of a tiny run whose max_length cuts
    some of its lines."""
    tmp = tmp_path_factory.mktemp("score")
    corpus = write_corpus(tmp / "tiny.txt")
    Trainer(tiny_config(corpus, tmp / "run", max_length=MAX_LENGTH,
                        epochs=1), log=lambda line: None).run()
    return str(tmp / "run" / "best.npz"), corpus


def score_cli(capsys, *argv):
    status = main(["score"] + [str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def test_score_agrees_with_eval(trained, capsys):
    ckpt, corpus = trained
    model, vocab, saved = load_model(ckpt, batching="bucket")
    config = saved.metadata["config"]
    assert config["max_length"] == MAX_LENGTH
    encoded, _ = encode_file(corpus, vocab, lowercase=config["lowercase"],
                             max_length=MAX_LENGTH)
    want = score_corpus(model, encoded)        # what eval prints
    with open(corpus, encoding="utf-8") as f:
        lines = f.read().splitlines()
    scores = score_sentences(model, lines, vocab=vocab,
                             lowercase=config["lowercase"],
                             max_length=MAX_LENGTH)
    assert int(scores.pieces.sum()) == want.sentences > len(lines)
    assert int(scores.targets.sum()) == want.tokens
    assert -scores.log_probs.sum() == pytest.approx(want.nll, rel=1e-6)
    status, out, _ = score_cli(capsys, ckpt, corpus)
    assert status == 0
    assert out[0] == "file %s: %d sentences, %d words, 0 OOVs" % (
        corpus, want.sentences, want.tokens - want.sentences)
    fields = out[1].split()
    ppl = float(fields[fields.index("ppl=") + 1])
    assert ppl == pytest.approx(want.perplexity, rel=1e-6)
    assert "--unk include" in out[2] and "log base e" in out[2]


def test_one_output_line_per_input_line_in_order(trained, tmp_path,
                                                 capsys):
    ckpt, _ = trained
    text = tmp_path / "lines.txt"
    lines = ["the cat sees a dog", "", "A DOG SEES THE CAT today again "
             "now every day", "zyzzyva", "the dog"]
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model, vocab, saved = load_model(ckpt, batching="bucket")
    api = score_sentences(model, lines, vocab=vocab, lowercase=True,
                          max_length=MAX_LENGTH, unk="exclude")
    status, out, _ = score_cli(capsys, ckpt, text, "--output",
                               "sentence-scores", "--unk", "exclude")
    assert status == 0 and len(out) == len(lines)
    np.testing.assert_allclose([float(v) for v in out], api.log_probs,
                               atol=1e-6)
    status, ten, _ = score_cli(capsys, ckpt, text, "--output",
                               "sentence-scores", "--unk", "exclude",
                               "--log-base", "10")
    np.testing.assert_allclose([float(v) for v in ten],
                               api.log_probs / math.log(10), atol=2e-6)
    status, words, _ = score_cli(capsys, ckpt, text, "--output",
                                 "word-scores", "--unk", "exclude")
    assert status == 0 and len(words) == len(lines)
    for line, tokens in zip(words, lines):
        pairs = line.split()
        n = len(tokens.split())
        pieces = max(1, -(-n // MAX_LENGTH))
        assert len(pairs) == 2 * (n + pieces)
        assert pairs[-2] == "</s>"
        assert [w for w in pairs[0::2] if w != "</s>"] == \
            tokens.lower().split()
    assert words[3] == "zyzzyva OOV </s> %s" % words[3].split()[-1]
    # base 10 equals base e / ln 10 in the summary too
    base_e = score_cli(capsys, ckpt, text)[1][1].split()
    base_10 = score_cli(capsys, ckpt, text, "--log-base", "10")[1][1].split()
    assert float(base_10[3]) == pytest.approx(
        float(base_e[3]) / math.log(10), abs=2e-6)
    assert base_10[5] == base_e[5]     # ppl does not depend on the base


@pytest.mark.parametrize("content, message", [
    (b"\n  \n\t\n", "all of its 3 lines are blank"),
    (b"", "is empty"),
    (b"the cat\nthe \xff dog\n", "line 2: bytes that are not valid UTF-8"),
])
def test_unreadable_text_is_one_line_and_status_2(trained, tmp_path, capsys,
                                                  content, message):
    text = tmp_path / "bad.txt"
    text.write_bytes(content)
    status, out, err = score_cli(capsys, trained[0], text)
    assert status == 2 and out == []
    assert err.count("\n") == 1 and message in err
    assert err.startswith("lstm-accum score: error: ")


def test_missing_checkpoint_is_one_line_and_status_2(tmp_path, capsys):
    text = tmp_path / "ok.txt"
    text.write_text("the cat\n", encoding="utf-8")
    status, out, err = score_cli(capsys, tmp_path / "none.npz", text)
    assert status == 2 and out == []
    assert err == ("lstm-accum score: error: checkpoint %s does not exist "
                   "(or is not a file)\n" % (tmp_path / "none.npz"))


def test_closed_output_pipe_ends_quietly(trained, tmp_path):
    # `lstm-accum score ... | head -1`: no traceback, status 141 (SIGPIPE's)
    import subprocess
    import sys
    text = tmp_path / "many.txt"
    text.write_text("the cat sees a dog\n" * 20000, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lstm_accum.cli", "score", trained[0],
         str(text), "--output", "word-scores"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141
    assert first.startswith(b"the ") and "Traceback" not in err
