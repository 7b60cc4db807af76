"""The plateau schedule exactly as docs/cli.rst states it: each validation
that does not improve on the best multiplies the learning rate by
``lr_decay``, except that the ``patience``-th in a row stops training
(``patience - 1`` decays), with status ``early_stopped``; an improvement
resets the count.

The validation perplexities are forced (the trainer's ``perplexity`` is
replaced by a list), so the sequence of learning rates, the update that
stops and the status written are known in advance.
"""
import json
import os

import pytest

import lstm_accum.training.trainer as trainer_module
from lstm_accum.checkpoint import load_checkpoint
from lstm_accum.training import Trainer
from lstm_accum.training.run_state import RunState
from lstm_accum.training.schedule import PlateauSchedule
from test_train import tiny_config, write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("schedule") / "tiny.txt")


def forced(values):
    it = iter(values)

    def fake_perplexity(model, corpus, batch_size=32, **kwargs):
        return next(it)
    return fake_perplexity


def test_lr_sequence_stop_update_and_status(corpus, tmp_path, monkeypatch):
    # validations at updates 2, 4, ...: best 50, then a better 40 (resets),
    # then three without improvement with patience 3
    monkeypatch.setattr(trainer_module, "perplexity",
                        forced([50.0, 55.0, 40.0, 45.0, 41.0, 60.0, 1.0]))
    out = tmp_path / "run"
    config = tiny_config(corpus, out, lr=0.1, lr_decay=0.5, patience=3,
                         valid_every=2, epochs=50)
    result = Trainer(config, log=lambda line: None).run()
    with open(str(out / "metrics.jsonl")) as f:
        valids = [r for r in map(json.loads, f)
                  if r["kind"] == "validation"]
    assert [r["update"] for r in valids] == [2, 4, 6, 8, 10, 12]
    assert [r["improved"] for r in valids] == [True, False, True, False,
                                               False, False]
    # the lr in force after each validation: decay at 4, 8 and 10 (the
    # count restarted at 6); the third bad one in a row (12) stops instead
    assert [r["lr"] for r in valids] == pytest.approx(
        [0.1, 0.05, 0.05, 0.025, 0.0125, 0.0125], rel=1e-6)
    assert [r["best"] for r in valids] == [50.0, 50.0, 40.0, 40.0, 40.0,
                                           40.0]
    assert result.status == "early_stopped" and result.updates == 12
    assert result.best_perplexity == 40.0
    saved = load_checkpoint(os.path.join(str(out), "checkpoint.npz"))
    counters = saved.metadata["counters"]
    assert counters["stopped"] == "early_stopped"
    assert counters["update"] == 12 and counters["bad_validations"] == 3
    assert counters["learning_rate"] == pytest.approx(0.0125, rel=1e-6)


@pytest.mark.parametrize("patience, decays", [(1, 0), (2, 1), (4, 3)])
def test_patience_n_stops_after_n_minus_1_decays(patience, decays):
    schedule = PlateauSchedule(lr_decay=0.5, patience=patience)
    state, lr = RunState(), 1.0
    d = schedule.decide(state, 10.0, lr)
    assert d.improved and d.stop is None and d.learning_rate == lr
    for k in range(1, patience + 1):
        d = schedule.decide(state, 11.0, lr)
        assert not d.improved
        if k < patience:
            assert d.stop is None and d.learning_rate == lr * 0.5
            lr = d.learning_rate
        else:
            assert d.stop == "early_stopped" and d.learning_rate == lr
    assert lr == 0.5 ** decays
    assert state.stopped == "early_stopped" and state.best_perplexity == 10.0


def test_patience_zero_never_stops():
    schedule = PlateauSchedule(lr_decay=0.5, patience=0)
    state, lr = RunState(), 1.0
    schedule.decide(state, 10.0, lr)
    for _ in range(20):
        d = schedule.decide(state, 11.0, lr)
        assert d.stop is None
        lr = d.learning_rate
    assert lr == 0.5 ** 20 and state.stopped is None


def test_min_improvement_is_relative():
    schedule = PlateauSchedule(lr_decay=0.5, min_improvement=0.1, patience=5)
    state = RunState()
    schedule.decide(state, 100.0, 1.0)
    assert not schedule.decide(state, 90.5, 1.0).improved   # 9.5% < 10%
    assert schedule.decide(state, 89.9, 0.5).improved        # > 10%
    assert state.best_perplexity == 89.9 and state.bad_validations == 0


def _model_arrays(path):
    saved = load_checkpoint(path)
    return saved.metadata["counters"]["update"], {
        k: v for k, v in saved.arrays.items() if k.startswith("model/")}


@pytest.mark.parametrize("values, best_update", [
    ([50.0, 45.0, 40.0], 5),     # the report-only validation at 5 is best
    ([50.0, 45.0, 48.0], 4),     # it is worse: best.npz keeps update 4's
])
def test_best_npz_follows_the_final_validation(corpus, tmp_path, monkeypatch,
                                               values, best_update):
    # scheduled validations at updates 2 and 4, the report-only one at 5
    monkeypatch.setattr(trainer_module, "perplexity", forced(values))
    out = tmp_path / "run"
    result = Trainer(tiny_config(corpus, out, valid_every=2, max_updates=5,
                                 epochs=50), log=lambda line: None).run()
    assert result.status == "max_updates" and result.updates == 5
    assert result.best_perplexity == min(values)
    update, best = _model_arrays(str(out / "best.npz"))
    _, final = _model_arrays(str(out / "checkpoint.npz"))
    assert update == best_update
    same = all((best[k] == final[k]).all() for k in final)
    assert same == (best_update == 5)


def test_best_npz_written_by_a_lone_final_validation(corpus, tmp_path,
                                                     monkeypatch):
    monkeypatch.setattr(trainer_module, "perplexity", forced([30.0]))
    out = tmp_path / "run"
    result = Trainer(tiny_config(corpus, out, valid_every=100,
                                 max_updates=3, epochs=50),
                     log=lambda line: None).run()
    assert result.best_perplexity == 30.0
    assert _model_arrays(str(out / "best.npz"))[0] == 3
