"""The training loop: windows, metrics, plot, schedule, checkpoints, resume,
non-finite windows, failures while saving.

One tiny model (V ~ 25, H = 8, bucketed ids) is built once and shared by
every in-process run through ``Trainer(model=..., accumulator=...)``; its
parameters and accumulator are reset to the same initial state before each
run. Resuming through the command line (subprocesses, float64) is in
``tests/test_resume_matrix.py``."""
import errno
import json
import os
import shutil
import signal

import numpy as np
import pytest

from lstm_accum import checkpoint as ckpt
from lstm_accum.exceptions import (CheckpointError, IncompatibleStateError,
                                   InputError, NonFiniteError)
from lstm_accum.evaluation import (target_counts,
                                   unigram_perplexity_from_counts)
from lstm_accum.training import TrainConfig, Trainer, validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SUBJECTS = ["the cat", "a dog", "the old bird", "my friend", "a child"]
VERBS = ["sees", "likes", "finds", "hears"]
OBJECTS = ["the ball", "a tree", "the big house", "some food", "the river"]
TAILS = ["today", "again", "now", "", "", "every day"]


def write_corpus(path, n=150, seed=0):
    """A tiny grammar: ~25 words, sentences of 4 to 8 words."""
    rng = np.random.RandomState(seed)
    with open(str(path), "w", encoding="utf-8") as f:
        for _ in range(n):
            words = "%s %s %s %s" % (
                SUBJECTS[rng.randint(len(SUBJECTS))],
                VERBS[rng.randint(len(VERBS))],
                OBJECTS[rng.randint(len(OBJECTS))],
                TAILS[rng.randint(len(TAILS))])
            f.write(" ".join(words.split()) + "\n")
    return str(path)


#: The one model configuration every test of lstm_accum.training.trainer uses
#: (Adagrad 0.1 without warm-up, as before the defaults changed to Adam: the
#: expectations below were measured with it).
TINY = dict(vocab_size=40, units=8, batching="bucket", input="ids",
            batch_size=4, accumulate=8, optimizer="adagrad", lr=0.1,
            warmup=0, valid_fraction=0.1,
            valid_every=5, epochs=2, progress="off", log_every=0, seed=3)


def tiny_config(corpus, out, **changes):
    settings = dict(TINY, corpus=corpus, out=str(out))
    settings.update(changes)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "tiny.txt")


class Shared(object):
    """The model and accumulator of the first run, and their initial state."""

    def __init__(self, corpus, out):
        self.logs = []
        self.trainer = Trainer(tiny_config(corpus, out),
                               log=self.logs.append)
        self.model = self.trainer.model
        self.acc = self.trainer.acc
        self.initial_params = self.model.param_values()
        self.initial_acc = self.acc.state()
        self.result = self.trainer.run()
        self.out = str(out)
        self.final = ckpt.load_checkpoint(
            os.path.join(self.out, ckpt.LATEST_NAME))

    def reset(self):
        self.model.set_param_values(self.initial_params)
        self.acc.load_state(self.initial_acc)

    def trainer_for(self, config, **kwargs):
        self.reset()
        kwargs.setdefault("log", lambda line: None)
        return Trainer(config, model=self.model, accumulator=self.acc,
                       **kwargs)


@pytest.fixture(scope="module")
def shared(corpus, tmp_path_factory):
    return Shared(corpus, tmp_path_factory.mktemp("base") / "run")


def read_records(out):
    with open(os.path.join(str(out), "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def train_split(trainer):
    return trainer.data.train


def identical(a, b):
    """Bit-identical arrays (NaN == NaN when the bits agree)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and \
        a.tobytes() == b.tobytes()


# ---------------------------------------------------------------------------
def test_outputs_records_and_falling_loss(shared):
    t, result = shared.trainer, shared.result
    assert result.status == "finished"
    records = read_records(shared.out)
    updates = [r for r in records if r["kind"] == "update"]
    valids = [r for r in records if r["kind"] == "validation"]
    assert [r["update"] for r in updates] == list(range(1, result.updates + 1))
    train = train_split(t)
    lengths = np.asarray(train.lengths)
    # every training sentence is seen once per epoch, with n + 1 targets
    assert sum(r["samples"] for r in updates) == 2 * len(train)
    assert sum(r["tokens"] for r in updates) == \
        2 * int((lengths + 1).sum())
    # windows: >= N sentences, overshooting by less than one minibatch,
    # except the last window of an epoch (applied with its true count)
    last_of_epoch = {max(r["update"] for r in updates if r["epoch"] == e)
                     for e in (1, 2)}
    for r in updates:
        if r["update"] not in last_of_epoch:
            assert 8 <= r["samples"] < 8 + 4
        assert r["applied"] and r["skipped"] == 0
        assert r["lr"] > 0 and r["grad_norm"] > 0 and r["elapsed"] >= 0
    # validations: every 5 updates, and at each epoch end not yet validated
    expected = sorted(set(u for u in range(5, result.updates + 1, 5)) |
                      last_of_epoch)
    assert [r["update"] for r in valids] == expected
    # the loss falls, and the model beats the unigram baseline
    losses = [r["loss"] for r in updates]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.5
    assert valids[-1]["perplexity"] < 0.5 * result.unigram_perplexity
    assert result.best_perplexity == min(r["perplexity"] for r in valids)
    # the plot, the latest and the best checkpoint
    with open(os.path.join(shared.out, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    best = ckpt.load_checkpoint(os.path.join(shared.out, "best.npz"))
    assert best.metadata["counters"]["best_saved_perplexity"] == \
        result.best_perplexity
    final = shared.final
    assert final.metadata["counters"]["update"] == result.updates
    assert final.metadata["config"]["units"] == 8
    assert final.metadata["vocabulary"]["words"] == list(t.vocab.words)
    for name, value in t.model.param_values().items():
        assert np.array_equal(final.arrays["model/" + name], value)
    assert sorted(os.listdir(shared.out)) == sorted(
        ["best.npz", "checkpoint.npz", "curves.png", "metrics.jsonl"])


def test_effective_batch_printed_once(shared):
    lines = [l for l in shared.logs if l.startswith("effective batch")]
    assert len(lines) == 1
    assert "8 sentences" in lines[0] and "minibatches of up to 4" in lines[0]
    assert any("unigram baseline" in l for l in shared.logs)


def test_accumulate_tokens_and_drop(shared, corpus, tmp_path):
    out = tmp_path / "tok"
    t = shared.trainer_for(tiny_config(corpus, out, accumulate_tokens=40,
                                       partial_window="drop", epochs=1))
    result = t.run()
    updates = [r for r in read_records(out) if r["kind"] == "update"]
    lengths = np.asarray(t.data.train.lengths)
    biggest_batch = 4 * int(lengths.max() + 1)
    for r in updates:
        assert 40 <= r["tokens"] < 40 + biggest_batch
    seen = sum(r["tokens"] for r in updates)
    dropped = int((lengths + 1).sum()) - seen
    assert 0 < dropped < 40       # the partial window was dropped
    assert result.updates == len(updates)


def test_carry_fills_the_window_from_the_next_epoch(shared, corpus,
                                                    tmp_path):
    out = tmp_path / "carry"
    t = shared.trainer_for(tiny_config(corpus, out, accumulate=12,
                                       partial_window="carry",
                                       valid_every=0))
    t.run()
    updates = [r for r in read_records(out) if r["kind"] == "update"]
    n_train = len(t.data.train)
    assert sum(r["samples"] for r in updates) == 2 * n_train
    assert n_train % 12 != 0   # so that there is something to carry
    for r in updates[:-1]:      # only the very last window may be short
        assert 12 <= r["samples"] < 16
    # with 'apply' the epoch-1 window would have been short: here it is not
    assert all(r["samples"] >= 12 for r in updates if r["epoch"] == 1)


def test_interrupt_then_resume_equals_uninterrupted(shared, corpus,
                                                    tmp_path):
    out = tmp_path / "int"

    def interrupt_at_7(trainer, record):
        if record["update"] == 7:
            os.kill(os.getpid(), signal.SIGINT)
    logs = []
    t = shared.trainer_for(tiny_config(corpus, out), on_update=interrupt_at_7,
                           log=logs.append)
    result = t.run()
    assert result.status == "interrupted"
    assert any("--resume" in l for l in logs)
    saved = ckpt.load_checkpoint(str(out / "checkpoint.npz"))
    assert saved.metadata["counters"]["update"] == 7
    resumed = shared.trainer_for(tiny_config(corpus, out, resume=True))
    assert resumed.state.update == 7
    result = resumed.run()
    assert result.status == "finished"
    assert result.updates == shared.result.updates
    final = ckpt.load_checkpoint(str(out / "checkpoint.npz"))
    for name, value in shared.final.arrays.items():
        if name.startswith(("model/", "acc/")):
            assert identical(final.arrays[name], value), name
    # the metrics file holds each update once
    updates = [r["update"] for r in read_records(out)
               if r["kind"] == "update"]
    assert updates == list(range(1, result.updates + 1))


def test_non_finite_windows_stop_with_last_good_checkpoint(shared, corpus,
                                                           tmp_path):
    out = tmp_path / "nan"
    good = {}

    def poison(trainer, record):
        if record["update"] == 4:
            good.update(trainer.model.param_values())
        if record["update"] == 5:   # after the checkpoint at update 5
            W = [p for p in trainer.model.params if p.name == "softmax.W"][0]
            W.set_value(np.full_like(W.get_value(), np.nan))
    logs = []
    t = shared.trainer_for(tiny_config(corpus, out, max_bad_windows=3,
                                       valid_every=2, log_every=1),
                           on_update=poison, log=logs.append)
    with pytest.raises(NonFiniteError, match="3 consecutive.*checkpoint"):
        t.run()
    # visible in the progress lines, not only in the metrics
    assert any(l.startswith("update 6: non-finite window, 8 samples "
                            "skipped") for l in logs), logs
    assert any(l.startswith("update 7 (epoch 1)") and "8 skipped" in l
               for l in logs)
    assert any("not checkpointed (non-finite)" in l for l in logs)
    records = read_records(out)
    bad = [r for r in records if r["kind"] == "update" and not r["applied"]]
    assert [r["update"] for r in bad] == [6, 7]   # the 3rd raised
    assert all(r["skipped"] == r["samples"] > 0 for r in bad)
    assert records[-1]["kind"] == "stopped"
    # the validation at update 6 saw NaN and did not overwrite the
    # checkpoint of update 4
    saved = ckpt.load_checkpoint(str(out / "checkpoint.npz"))
    assert saved.metadata["counters"]["update"] == 4
    for name, value in good.items():
        assert np.array_equal(saved.arrays["model/" + name], value)
        assert np.isfinite(saved.arrays["model/" + name]).all()


def test_progress_bar(shared, corpus, tmp_path, capsys):
    t = shared.trainer_for(tiny_config(corpus, tmp_path / "bar",
                                       progress="on", max_updates=6))
    result = t.run()
    assert result.status == "max_updates" and result.updates == 6
    err = capsys.readouterr().err
    assert "6/6" in err and "upd" in err
    assert "loss=" in err and "tok/s=" in err
    assert "validation at update 5" in err     # written above the bar


def test_full_disk_during_training_keeps_state(shared, corpus, tmp_path,
                                               monkeypatch):
    out = tmp_path / "full"

    def no_space(fileobj, entries):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(ckpt, "_write_npz", no_space)
    t = shared.trainer_for(tiny_config(corpus, out))
    with pytest.raises(CheckpointError, match="No space left"):
        t.run()
    assert t.state.update == 5    # the first validation tried to save
    assert not any(n.endswith(".part") for n in os.listdir(str(out)))
    assert not os.path.exists(str(out / "checkpoint.npz"))
    monkeypatch.undo()
    t.save_checkpoint()           # the state was kept: retry works
    saved = ckpt.load_checkpoint(str(out / "checkpoint.npz"))
    assert saved.metadata["counters"]["update"] == 5
    for name, value in t.model.param_values().items():
        assert np.array_equal(saved.arrays["model/" + name], value)


def test_resume_refuses_other_settings_corpus_or_damage(shared, corpus,
                                                        tmp_path):
    # Refused before any model is built (no compilation needed).
    with pytest.raises(IncompatibleStateError,
                       match="units=8 but this run has units=16"):
        Trainer(tiny_config(corpus, shared.out, units=16, resume=True))
    with pytest.raises(IncompatibleStateError, match="normalize"):
        Trainer(tiny_config(corpus, shared.out, normalize="tokens",
                            resume=True))
    other = tmp_path / "other.txt"
    shutil.copy(corpus, str(other))
    with open(str(other), "a") as f:
        f.write("one more sentence\n")
    with pytest.raises(IncompatibleStateError, match="corpus .* differs"):
        Trainer(tiny_config(str(other), shared.out, resume=True))
    with pytest.raises(InputError, match="already holds a checkpoint"):
        Trainer(tiny_config(corpus, shared.out))
    damaged = tmp_path / "damaged"
    shutil.copytree(shared.out, str(damaged))
    path = damaged / "checkpoint.npz"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        Trainer(tiny_config(corpus, damaged, resume=True))


@pytest.mark.parametrize("change, message", [
    (dict(accumulate=0), "accumulate must be an integer >= 1, got 0"),
    (dict(lr=float("nan")), "lr must be a finite number > 0"),
    (dict(lr=-0.1), "lr must be a finite number > 0"),
    (dict(vocab_size=0), "vocab_size must be an integer >= 1"),
    (dict(batching="padded"), "batching must be one of sample, bucket, mask"),
    (dict(partial_window="keep"), "partial_window must be one of"),
    (dict(optimizer="lbfgs"), "optimizer must be one of"),
    (dict(valid_fraction=1.0), "valid_fraction must be a number strictly"),
    (dict(corpus="/nonexistent/file.txt"), "does not exist"),
    (dict(accumulate_tokens=-5), "accumulate_tokens must be an integer >= 0"),
    (dict(max_norm=float("inf")), "max_norm must be a finite number"),
    (dict(impl="cuda"), "impl must be one of auto, fused, scan"),
])
def test_bad_settings_are_refused_early(corpus, tmp_path, change, message):
    change = dict(change)
    config = tiny_config(change.pop("corpus", corpus), tmp_path / "never",
                         **change)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        validate_config(config)
    assert not os.path.exists(str(tmp_path / "never"))


def test_unigram_baseline_by_hand():
    from lstm_accum.data import EncodedCorpus
    from lstm_accum.evaluation import unigram_perplexity
    V = 6
    train = EncodedCorpus(np.array([3, 4, 3, 5], np.int32),
                          np.array([0, 2, 4], np.int64))
    valid = EncodedCorpus(np.array([3, 0], np.int32),
                          np.array([0, 2], np.int64))
    counts = target_counts(train, V)
    assert counts.tolist() == [0, 0, 2, 2, 1, 1]       # two </s>
    # add-one: p = (c + 1) / (6 + 6); targets of valid: 3, 0, </s>
    p = {3: 3 / 12.0, 0: 1 / 12.0, 2: 3 / 12.0}
    expected = np.exp(-(np.log(p[3]) + np.log(p[0]) + np.log(p[2])) / 3)
    assert unigram_perplexity_from_counts(counts, valid) == pytest.approx(
        expected, rel=1e-12)
    assert unigram_perplexity(train, valid, V) == pytest.approx(expected,
                                                                rel=1e-12)


# Resuming through the command line (float64 bit-identity from k to 2k,
# --float64 carried over, a differing setting refused in one line) is
# proved by the own-settings case of tests/test_resume_matrix.py, with one
# set of runs for what test_float64_flag and
# test_float64_resume_k_then_2k_is_bit_identical proved here.
