"""When validation runs and what it costs (issue 13, item 5).

* ``valid_every=None`` (the default, ``auto``): a validation each time the
  model has trained on ``max(VALID_EVERY_RATIO x validation tokens,
  VALID_EVERY_MIN_TOKENS)`` target tokens since the last one, and at the
  end. The expected updates are computed here from the update records'
  own token counts.
* ``valid_max`` caps the validation sentences, keeping a prefix of the
  same random draw (so a cap that does not bind changes nothing).
* ``valid_elapsed`` in the validation records: the time spent validating.
* The plot is redrawn at most every ``PLOT_INTERVAL_S`` seconds, and once
  more at the end if a validation was not drawn.
* (``lstm-accum train --resume`` continues a run with its own settings, not
  today's defaults: in ``tests/test_resume_matrix.py``, case own-settings.)
"""
import json
import os

import numpy as np
import pytest

import lstm_accum.training.cadence as cadence_module
import lstm_accum.training.reporter as reporter_module
from lstm_accum.data import encode_file, prepare_corpus, split_corpus
from lstm_accum.exceptions import InputError
from lstm_accum.training import Trainer
from lstm_accum.training.cadence import ValidationCadence
from lstm_accum.training.run_state import RunState
from test_train import tiny_config, write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("cadence") / "tiny.txt",
                        n=300)


def read(out):
    with open(os.path.join(str(out), "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_auto_validates_by_tokens_trained(corpus, tmp_path, monkeypatch):
    # a floor small enough that the tiny corpus validates several times
    monkeypatch.setattr(cadence_module, "VALID_EVERY_MIN_TOKENS", 300)
    out = tmp_path / "run"
    trainer = Trainer(tiny_config(corpus, out, valid_every=None, epochs=3),
                      log=lambda line: None)
    valid = trainer.data.valid
    interval = max(10 * (int(valid.lengths.sum()) + len(valid)), 300)
    trainer.run()
    records = read(out)
    updates = [r for r in records if r["kind"] == "update"]
    expected, since = [], 0
    for r in updates:
        since += r["tokens"]
        if since >= interval:
            expected.append(r["update"])
            since = 0
    if expected[-1] != updates[-1]["update"]:
        expected.append(updates[-1]["update"])     # the end of the run
    got = [r["update"] for r in records if r["kind"] == "validation"]
    assert len(expected) >= 3
    assert got == expected
    # the validation time is recorded, and is part of the elapsed time
    shares = [(r["valid_elapsed"], r["elapsed"]) for r in records
              if r["kind"] == "validation"]
    assert all(0 < v < e for v, e in shares)
    assert [v for v, _ in shares] == sorted(v for v, _ in shares)


def test_cadence_rules():
    state = RunState(update=7, tokens_seen=1000, valid_tokens_seen=0)
    every = ValidationCadence(7, valid_tokens=10)
    assert every.after_update(state) and not ValidationCadence(
        5, 10).after_update(state)
    assert not ValidationCadence(0, 10).after_update(state)
    assert ValidationCadence(0, 10).at_epoch_end(state, last_epoch=False)
    auto = ValidationCadence(None, valid_tokens=20000)   # 10x: 200,000
    assert auto.interval_tokens == 200000
    assert ValidationCadence(None, 5).interval_tokens == 100000  # floor
    state = RunState(update=3, tokens_seen=299999, valid_tokens_seen=100000)
    assert not auto.after_update(state)
    assert not auto.at_epoch_end(state, last_epoch=False)
    assert auto.at_epoch_end(state, last_epoch=True)
    state.tokens_seen += 1
    assert auto.after_update(state)
    # never twice at the same update
    state.last_valid_update = state.update
    assert not auto.at_epoch_end(state, last_epoch=True)
    assert "auto" in auto.describe() and "200000" in auto.describe()


def test_valid_max_keeps_a_prefix_of_the_same_draw(corpus):
    _, encoded, _ = prepare_corpus(corpus, 40)
    train, valid, _ = split_corpus(encoded, 0.2, 0.0, seed=4)
    train_c, valid_c, _ = split_corpus(encoded, 0.2, 0.0, seed=4,
                                       valid_max=9)
    assert len(valid) == 60 and len(valid_c) == 9
    assert len(train_c) == 300 - 9
    # the 9 capped sentences are the first 9 of the uncapped draw
    perm = np.random.RandomState(4).permutation(300)
    chosen = np.sort(perm[:9])
    assert [list(valid_c.sentence(i)) for i in range(9)] == \
        [list(encoded.sentence(j)) for j in chosen]
    same = split_corpus(encoded, 0.2, 0.0, seed=4, valid_max=60)
    assert np.array_equal(same[1].ids, valid.ids)
    assert np.array_equal(same[0].ids, train.ids)
    for bad in (-1, 2.5, True):
        with pytest.raises(InputError, match="valid_max must be an integer"):
            split_corpus(encoded, 0.2, valid_max=bad)


def test_trainer_caps_the_validation_set(corpus, tmp_path):
    trainer = Trainer(tiny_config(corpus, tmp_path / "o", valid_fraction=0.5,
                                  valid_max=12), log=lambda line: None)
    assert len(trainer.data.valid) == 12
    assert len(trainer.data.train) == 300 - 12


def test_plot_is_throttled_and_drawn_at_the_end(corpus, tmp_path,
                                                monkeypatch):
    calls = []
    real = reporter_module.plot_curves

    def spy(records, path, **kwargs):
        calls.append(len([r for r in records if r["kind"] == "validation"]))
        return real(records, path, **kwargs)
    monkeypatch.setattr(reporter_module, "plot_curves", spy)
    monkeypatch.setattr(reporter_module, "PLOT_INTERVAL_S", 1e9)
    out = tmp_path / "run"
    Trainer(tiny_config(corpus, out, valid_every=3, epochs=2),
            log=lambda line: None).run()
    n_valid = len([r for r in read(out) if r["kind"] == "validation"])
    assert n_valid > 3
    # the first validation, then nothing until the run's end
    assert calls == [1, n_valid]
    with open(str(out / "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# ``lstm-accum train --resume`` continuing with the run's own settings (and
# refusing a differing one) is proved by the own-settings case of
# tests/test_resume_matrix.py, which shares its runs with the resume
# bit-identity check.
