"""``--resume`` continues bit-identically, over the settings that carry state.

Through the command line: train ``2k`` updates straight; train ``k`` and
resume to ``2k``; every ``model/``, ``acc/`` (optimizer state included) and
``rng/`` array of the two final checkpoints must be bit-identical (in
float64 every floating-point array is float64).  Over the optimizers with
state of their own (momentum, Adagrad, Adam), masked and bucketed
batching, one and two layers, the LSTM and the GRU and dropout (its random
streams), in float64 with Theano's FAST_COMPILE mode (no C compilation),
and one float32 case through the C linker (our fused C operations, the
default training path).  ``k = 12`` is not a multiple of
``--valid-every 5``: the stop at ``k`` adds a report-only validation that
must not change the rest of the run; and ``2k = 24`` crosses the end of
the first epoch (about 17 windows), so the resumed run also goes through
an epoch's end (its partial window, then the next epoch's plan).

One case (``own-settings``) also proves that a run resumes with its *own*
settings, not today's defaults (issue 13): it is made with settings that
are not the defaults (``--float64``, Adagrad without warm-up, two layers,
dropout, ``--accumulate 8``, ``--lr 0.1``, ``--valid-every 5``, ...) and
resumed with a command that gives none of them, and it must still end
bit-identical to the uninterrupted run, in float64 (the ``--float64`` flag
carries over, without ``floatX=float64`` in ``THEANO_FLAGS``). A setting
that is given and differs from the run's is refused with exit status 2 and
a one-line message naming it.

Cases are combined (e.g. momentum with masks and the GRU) to keep the runs
few: each is three short training processes, the first two side by side.
The own-settings case replaces three tests that each paid for their own
runs of the same resume path (``test_train.py``'s
``test_float64_resume_k_then_2k_is_bit_identical`` and
``test_float64_flag``, ``test_validation_cadence.py``'s
``test_resume_keeps_the_runs_own_settings``).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from lstm_accum.checkpoint import load_checkpoint

from test_train import write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 12
FAST_COMPILE = "floatX=float64,mode=FAST_COMPILE"
FLAG_FLOAT64 = "mode=FAST_COMPILE"   # float64 from --float64 alone
C_LINKER = "floatX=float32"   # the default mode: C linker, our C operations

#: Settings of every case (the own-settings case gives them only when the
#: run starts; none of them is the default).
COMMON = ["--vocab-size", "40", "--units", "8", "--batch-size", "4",
          "--accumulate", "8", "--lr", "0.1", "--valid-fraction", "0.1",
          "--valid-every", "5", "--seed", "3"]
OWN = ["--float64", "--optimizer", "adagrad", "--warmup", "0",
       "--layers", "2", "--dropout", "0.3"]

CASES = [
    pytest.param(FAST_COMPILE, ["--optimizer", "momentum", "--batching",
                                "mask", "--cell", "gru"], False,
                 id="momentum-mask-gru"),
    # Until the training loop's checkpoint code was split out (issue 12),
    # training with dropout failed at its first checkpoint (it unpacked the
    # triples of MRG_RandomStreams.state_updates as pairs).
    pytest.param(FLAG_FLOAT64, OWN, True,
                 id="own-settings-float64-adagrad-two-layers-dropout"),
    pytest.param(C_LINKER, ["--optimizer", "adam"], False,
                 id="c-linker-float32-adam"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "tiny.txt")


def _command(corpus, out, *settings):
    return [sys.executable, "-m", "lstm_accum.cli", "train", corpus,
            "--out", str(out), "--progress", "off"] + list(settings)


def _start(command, flags, log):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["THEANO_FLAGS"] = flags
    return subprocess.Popen(command, env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=ROOT)


def _finish(proc, log, what):
    proc.wait(timeout=900)
    log.seek(0)
    text = log.read()
    log.close()
    assert proc.returncode == 0, "%s exited with %d:\n%s" % (
        what, proc.returncode, text[-3000:])
    return text


def _identical(a, b):
    """Same dtype, shape and bits (NaN == NaN when the bits agree)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and \
        a.tobytes() == b.tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("flags,extra,own", CASES)
def test_resume_k_then_2k_is_bit_identical(corpus, tmp_path, flags, extra,
                                           own):
    settings = COMMON + extra
    whole, part = tmp_path / "whole", tmp_path / "part"
    runs = []
    for out, updates in ((whole, 2 * K), (part, K)):
        log = open(str(tmp_path / ("%s.log" % out.name)), "w+")
        runs.append((_start(_command(corpus, out, *settings + [
            "--max-updates", str(updates)]), flags, log), log, out.name))
    for proc, log, name in runs:
        _finish(proc, log, name)
    dtype = np.float32 if "float32" in flags else np.float64
    floatx = np.dtype(dtype).name
    first = load_checkpoint(str(part / "checkpoint.npz"))
    assert first.metadata["counters"]["update"] == K
    assert first.metadata["floatX"] == floatx
    assert first.arrays["model/softmax.W"].dtype == dtype
    log = open(str(tmp_path / "resume.log"), "w+")
    # the own-settings case resumes with none of its settings given
    resumed = [] if own else settings
    text = _finish(_start(_command(corpus, part, *resumed + [
        "--max-updates", str(2 * K), "--resume"]), flags, log), log, "resume")
    assert "resuming from" in text
    a = load_checkpoint(str(whole / "checkpoint.npz"))
    b = load_checkpoint(str(part / "checkpoint.npz"))
    assert a.metadata["counters"]["update"] == 2 * K
    assert b.metadata["floatX"] == floatx
    if own:
        config = b.metadata["config"]
        assert (config["float64"], config["optimizer"], config["warmup"],
                config["layers"], config["dropout"], config["accumulate"],
                config["lr"], config["valid_every"]) == \
            (True, "adagrad", 0, 2, 0.3, 8, 0.1, 5)
    counters = [dict(c.metadata["counters"]) for c in (a, b)]
    for c in counters:
        c.pop("elapsed")                       # wall time
        c.pop("valid_elapsed")                 # wall time too
        # best.npz may hold the report-only validation at the stop (k),
        # which the uninterrupted run never made
        c.pop("best_saved_perplexity")
    assert counters[0] == counters[1]
    names = sorted(n for n in a.arrays
                   if n.startswith(("model/", "acc/", "rng/")))
    assert sorted(n for n in b.arrays
                  if n.startswith(("model/", "acc/", "rng/"))) == names
    # the optimizer's own state is among the compared arrays
    assert any(n.startswith("acc/optimizer/") for n in names)
    if "--dropout" in extra:
        assert any(n.startswith("rng/") for n in names)
    for name in names:
        if dtype == np.float64 and a.arrays[name].dtype.kind == "f":
            assert a.arrays[name].dtype == dtype, name   # nothing float32
        assert _identical(a.arrays[name], b.arrays[name]), name
    # the resumed run did train: the parameters moved after update k
    assert not _identical(first.arrays["model/softmax.W"],
                          b.arrays["model/softmax.W"])
    if own:
        # a setting given that differs from the run's is refused, naming
        # it, in one line
        for given, message in (
                (["--units", "16"], "units=8 but this run has units=16"),
                (["--optimizer", "adam"], "optimizer='adagrad' but this "
                 "run has optimizer='adam'")):
            env = dict(os.environ, THEANO_FLAGS=flags)
            env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
            proc = subprocess.run(_command(corpus, part, *given + [
                "--max-updates", str(2 * K + 2), "--resume"]), env=env,
                cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 2, proc.stderr
            assert message in proc.stderr
            assert proc.stderr.count("\n") == 1, proc.stderr
