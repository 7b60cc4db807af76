"""``--resume`` continues bit-identically, over the settings that carry state.

As ``tests/test_train.py::test_float64_resume_k_then_2k_is_bit_identical``
does for one configuration (ids, buckets, Adagrad, no dropout), through the
command line: train ``2k`` updates straight; train ``k`` and resume to
``2k``; every ``model/``, ``acc/`` (optimizer state included) and ``rng/``
array of the two final checkpoints must be bit-identical.  Here over the
optimizers with state of their own (momentum, Adam), masked batching, two
layers, the GRU and dropout (its random streams), in float64 with Theano's
FAST_COMPILE mode (no C compilation), and one float32 case through the C
linker (our fused C operations, the default training path).  ``k = 12`` is
not a multiple of ``--valid-every 5``, and ``2k = 24`` crosses the end of
the first epoch (about 17 windows), so the resumed run also goes through
an epoch's end (its partial window, then the next epoch's plan).

Cases are combined (e.g. momentum with masks and the GRU) to keep the runs
few: each is three short training processes, the first two side by side.
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
C_LINKER = "floatX=float32"   # the default mode: C linker, our C operations

CASES = [
    pytest.param(FAST_COMPILE, ["--optimizer", "momentum", "--batching",
                                "mask", "--cell", "gru"],
                 id="momentum-mask-gru"),
    pytest.param(FAST_COMPILE, ["--optimizer", "adam", "--layers", "2"],
                 id="adam-two-layers"),
    # Until the training loop's checkpoint code was split out (issue 12),
    # training with dropout failed at its first checkpoint (it unpacked the
    # triples of MRG_RandomStreams.state_updates as pairs).
    pytest.param(FAST_COMPILE, ["--dropout", "0.3"], id="dropout"),
    pytest.param(C_LINKER, ["--optimizer", "adam"],
                 id="c-linker-float32-adam"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "tiny.txt")


def _command(corpus, out, extra):
    return [sys.executable, "-m", "lstm_accum.cli", "train", corpus,
            "--out", str(out), "--vocab-size", "40", "--units", "8",
            "--batch-size", "4", "--accumulate", "8", "--lr", "0.1",
            "--valid-fraction", "0.1", "--valid-every", "5", "--seed", "3",
            "--progress", "off"] + list(extra)


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
@pytest.mark.parametrize("flags,extra", CASES)
def test_resume_k_then_2k_is_bit_identical(corpus, tmp_path, flags, extra):
    whole, part = tmp_path / "whole", tmp_path / "part"
    runs = []
    for out, updates in ((whole, 2 * K), (part, K)):
        log = open(str(tmp_path / ("%s.log" % out.name)), "w+")
        runs.append((_start(_command(corpus, out, extra + [
            "--max-updates", str(updates)]), flags, log), log, out.name))
    for proc, log, name in runs:
        _finish(proc, log, name)
    first = load_checkpoint(str(part / "checkpoint.npz"))
    assert first.metadata["counters"]["update"] == K
    log = open(str(tmp_path / "resume.log"), "w+")
    text = _finish(_start(_command(corpus, part, extra + [
        "--max-updates", str(2 * K), "--resume"]), flags, log), log, "resume")
    assert "resuming from" in text
    a = load_checkpoint(str(whole / "checkpoint.npz"))
    b = load_checkpoint(str(part / "checkpoint.npz"))
    assert a.metadata["counters"]["update"] == 2 * K
    counters = [dict(c.metadata["counters"]) for c in (a, b)]
    for c in counters:
        c.pop("elapsed")                       # wall time
        c.pop("valid_elapsed")                 # wall time too
    assert counters[0] == counters[1]
    dtype = np.float64 if "float64" in flags else np.float32
    assert a.arrays["model/softmax.W"].dtype == dtype
    names = sorted(n for n in a.arrays
                   if n.startswith(("model/", "acc/", "rng/")))
    assert sorted(n for n in b.arrays
                  if n.startswith(("model/", "acc/", "rng/"))) == names
    # the optimizer's own state is among the compared arrays
    assert any(n.startswith("acc/optimizer/") for n in names)
    if "--dropout" in extra:
        assert any(n.startswith("rng/") for n in names)
    for name in names:
        assert _identical(a.arrays[name], b.arrays[name]), name
    # the resumed run did train: the parameters moved after update k
    assert not _identical(first.arrays["model/softmax.W"],
                          b.arrays["model/softmax.W"])
