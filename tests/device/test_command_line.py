"""``lstm-accum`` on the device: train a few updates, resume bit-identically,
evaluate (the same perplexity on the CPU from the device's checkpoint) and
sample."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, cpu_env
from lstm_accum.checkpoint import load_checkpoint
from lstm_accum.cli import main

sys.path.insert(0, os.path.join(ROOT, "tests"))
from test_train import write_corpus  # noqa: E402

K = 3
FLAGS = ["--vocab-size", "40", "--units", "8", "--batching", "bucket",
         "--input", "ids", "--batch-size", "4", "--accumulate", "8",
         "--lr", "0.1", "--valid-fraction", "0.1", "--valid-every", "100",
         "--seed", "3", "--progress", "off"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "tiny.txt")


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):
    """``whole``: 2K updates straight; ``part``: K, then resumed to 2K.
    One after the other: two processes building the same OpenCL kernels at
    once can fail in pocl's kernel cache."""
    base = tmp_path_factory.mktemp("runs")
    whole, part = str(base / "whole"), str(base / "part")
    assert main(["train", corpus, "--out", whole, "--max-updates",
                 str(2 * K)] + FLAGS) == 0
    assert main(["train", corpus, "--out", part, "--max-updates", str(K)]
                + FLAGS) == 0
    first = load_checkpoint(os.path.join(part, "checkpoint.npz"))
    assert main(["train", corpus, "--out", part, "--max-updates",
                 str(2 * K), "--resume"] + FLAGS) == 0
    return whole, part, first


def test_train_resume_is_bit_identical(runs):
    whole, part, first = runs
    assert first.metadata["counters"]["update"] == K
    a = load_checkpoint(os.path.join(whole, "checkpoint.npz"))
    b = load_checkpoint(os.path.join(part, "checkpoint.npz"))
    assert a.metadata["counters"]["update"] == 2 * K
    assert b.metadata["counters"]["update"] == 2 * K
    names = [k for k in a.arrays if k.split("/")[0] in ("model", "acc",
                                                        "rng")]
    assert any(k.startswith("model/") for k in names)
    assert sorted(names) == sorted(k for k in b.arrays
                                   if k.split("/")[0] in ("model", "acc",
                                                          "rng"))
    for key in names:
        assert a.arrays[key].tobytes() == b.arrays[key].tobytes(), key
    # the run learned something: parameters moved from the first checkpoint
    assert not np.array_equal(first.arrays["model/softmax.W"],
                              a.arrays["model/softmax.W"])


def perplexity_of(output):
    for line in output.splitlines():
        if line.startswith("perplexity"):
            return float(line.split()[1])
    raise AssertionError("no perplexity line in:\n" + output)


def test_eval_gives_the_cpus_perplexity(runs, corpus, capsys):
    checkpoint = os.path.join(runs[0], "checkpoint.npz")
    assert main(["eval", checkpoint, corpus]) == 0
    on_device = perplexity_of(capsys.readouterr().out)
    cpu = subprocess.run(
        [sys.executable, "-m", "lstm_accum.cli", "eval", checkpoint, corpus],
        env=cpu_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=900, cwd=ROOT)
    assert cpu.returncode == 0, cpu.stderr
    on_cpu = perplexity_of(cpu.stdout)
    assert on_device == pytest.approx(on_cpu, rel=1e-5)
    assert 1 < on_device < 40


def test_sample_is_reproducible(runs, capsys):
    checkpoint = os.path.join(runs[0], "checkpoint.npz")
    assert main(["sample", checkpoint, "-n", "4", "--seed", "5"]) == 0
    first = capsys.readouterr().out
    assert main(["sample", checkpoint, "-n", "4", "--seed", "5"]) == 0
    assert capsys.readouterr().out == first
    words = set(load_checkpoint(checkpoint).metadata["vocabulary"]["words"])
    lines = first.splitlines()
    assert len(lines) == 4
    for line in lines:
        assert set(line.split()) <= words | {"<unk>"}
