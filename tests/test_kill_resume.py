"""Kill -9 at random moments -- during a window, during validation, during a
checkpoint write -- and Ctrl-C: every restart with --resume continues from
the latest complete checkpoint, and the final float64 parameters are
bit-identical to a run that was never stopped.

The trainer sleeps at a named point when LSTM_ACCUM_TEST_PAUSE says so
(see lstm_accum.training.pause.pause_point) and announces it on stderr, so the
kill lands exactly there. The processes run with Theano's FAST_COMPILE mode
(the same maths without C compilation: six processes would otherwise spend
most of the test compiling); what is under test is the trainer's state
handling, which does not depend on the mode."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from lstm_accum import checkpoint as ckpt
from test_train import identical, write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--vocab-size", "40", "--units", "8", "--batching", "bucket",
         "--batch-size", "4", "--accumulate", "8", "--lr", "0.1",
         "--valid-fraction", "0.1", "--valid-every", "5", "--seed", "3",
         "--epochs", "2", "--progress", "off", "--resume"]


def start(corpus, out, pause=None, pause_seconds=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["THEANO_FLAGS"] = "floatX=float64,mode=FAST_COMPILE"
    env.pop("LSTM_ACCUM_TEST_PAUSE", None)
    if pause:
        env["LSTM_ACCUM_TEST_PAUSE"] = pause
        env["LSTM_ACCUM_TEST_PAUSE_SECONDS"] = str(pause_seconds)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lstm_accum.cli", "train", corpus, "--out",
         str(out)] + FLAGS, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()

    def pump(stream, tag):
        for line in stream:
            lines.put((tag, line))
        lines.put((tag, None))
    for stream, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
        threading.Thread(target=pump, args=(stream, tag), daemon=True).start()
    proc.lines = lines
    return proc


def wait_for_pause(proc, timeout=300):
    seen = []
    while True:
        try:
            tag, line = proc.lines.get(timeout=timeout)
        except queue.Empty:
            proc.kill()
            raise AssertionError("no pause within %d s:\n%s"
                                 % (timeout, "".join(seen)))
        if line is None:
            raise AssertionError("process ended before pausing:\n%s"
                                 % "".join(seen))
        seen.append(line)
        if line.startswith("LSTM_ACCUM_PAUSED"):
            return line.split()


def finish(proc, timeout=300):
    proc.wait(timeout=timeout)
    out = []
    while True:
        try:
            tag, line = proc.lines.get(timeout=5)
        except queue.Empty:
            break
        if line is not None:
            out.append(line)
    return proc.returncode, "".join(out)


def kill_at(corpus, out, pause):
    proc = start(corpus, out, pause)
    point = wait_for_pause(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    latest = os.path.join(str(out), ckpt.LATEST_NAME)
    if os.path.exists(latest):        # always complete and loadable
        ckpt.load_checkpoint(latest)
    return point


def updates_of(path):
    saved = ckpt.load_checkpoint(path)
    return saved.metadata["counters"]["update"]


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_is_bit_identical(tmp_path):
    corpus = write_corpus(tmp_path / "tiny.txt")
    reference = tmp_path / "reference"
    code, text = finish(start(corpus, reference))
    assert code == 0, text
    ref = ckpt.load_checkpoint(str(reference / ckpt.LATEST_NAME))
    total = ref.metadata["counters"]["update"]
    assert total > 25

    out = tmp_path / "killed"
    rng = np.random.RandomState(20240521)
    # 1. in the middle of a window (after an accumulate, before apply)
    kill_at(corpus, out, "window@%d" % rng.randint(20, 45))
    first = updates_of(str(out / ckpt.LATEST_NAME))
    assert first >= 5
    # 2. in the middle of a validation
    kill_at(corpus, out, "validation@%d" % rng.randint(1, 3))
    # 3. in the middle of a checkpoint write: the temporary file is left,
    #    the previous checkpoint is still the latest one
    before = open(str(out / ckpt.LATEST_NAME), "rb").read()
    updates_before = updates_of(str(out / ckpt.LATEST_NAME))
    nth = rng.randint(1, 3)
    kill_at(corpus, out, "checkpoint-write@%d" % nth)
    leftovers = [n for n in os.listdir(str(out)) if n.startswith(".tmp-")]
    assert leftovers, "the kill did not land inside a write"
    assert updates_of(str(out / ckpt.LATEST_NAME)) >= first
    after_kill = open(str(out / ckpt.LATEST_NAME), "rb").read()
    if nth == 1:
        # A process's first write is always checkpoint.npz (best.npz is
        # copied after it): killed inside it, the previous checkpoint must
        # be there byte for byte, and only that write's temporary beside it.
        assert [n.startswith(".tmp-" + ckpt.LATEST_NAME + ".")
                for n in leftovers] == [True], leftovers
        assert after_kill == before, "the killed write changed the checkpoint"
    else:
        # The first write (a newer checkpoint.npz) had completed.
        assert updates_of(str(out / ckpt.LATEST_NAME)) > updates_before
    # 4. Ctrl-C in the middle of a window: a clean exit with a checkpoint
    #    of the half-full window and a message saying how to resume
    proc = start(corpus, out, "window@%d" % rng.randint(3, 8),
                 pause_seconds=2)
    wait_for_pause(proc)
    proc.send_signal(signal.SIGINT)
    code, text = finish(proc)
    assert code == 130, text
    assert "--resume" in text and "Traceback" not in text
    mid = ckpt.load_checkpoint(str(out / ckpt.LATEST_NAME))
    assert mid.metadata["counters"]["window_samples"] > 0
    assert int(mid.arrays["acc/accum/samples"]) > 0
    # 5. to the end
    code, text = finish(start(corpus, out))
    assert code == 0, text
    assert not [n for n in os.listdir(str(out)) if n.startswith(".tmp-")]

    final = ckpt.load_checkpoint(str(out / ckpt.LATEST_NAME))
    assert final.metadata["counters"]["update"] == total
    names = [n for n in ref.arrays if n.startswith(("model/", "acc/"))]
    for name in names:
        if ref.arrays[name].dtype.kind == "f":
            assert ref.arrays[name].dtype == np.float64
        assert identical(final.arrays[name], ref.arrays[name]), name
    # every update appears once in the metrics, as in the reference
    with open(str(out / "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert [r["update"] for r in records if r["kind"] == "update"] == \
        list(range(1, total + 1))
