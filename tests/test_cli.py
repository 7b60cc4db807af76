"""The ``lstm-accum`` command line: train, eval, sample, --help, and every
user error as one line on stderr with exit status 2 and nothing written."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lstm_accum import checkpoint as ckpt
from lstm_accum.cli import main
from test_train import write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The same model as tests/test_train.py (shared compile cache).
TRAIN_FLAGS = ["--vocab-size", "40", "--units", "8", "--batching", "bucket",
               "--input", "ids", "--batch-size", "4", "--accumulate", "8",
               "--lr", "0.1", "--valid-fraction", "0.1", "--valid-every", "5",
               "--seed", "3", "--epochs", "2", "--progress", "off"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("cli") / "tiny.txt")


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cli-run") / "run")
    status = main(["train", corpus, "--out", out] + TRAIN_FLAGS)
    assert status == 0
    return out


def run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_train_writes_the_run(trained):
    assert sorted(os.listdir(trained)) == sorted(
        ["checkpoint.npz", "best.npz", "metrics.jsonl", "curves.png"])
    saved = ckpt.load_checkpoint(os.path.join(trained, "checkpoint.npz"))
    assert saved.metadata["config"]["accumulate"] == 8
    assert saved.metadata["config"]["batching"] == "bucket"
    assert saved.metadata["counters"]["stopped"] is None


def test_eval_prints_perplexity_below_unigram(trained, corpus, capsys):
    status, out, err = run(["eval", os.path.join(trained, "best.npz"),
                            corpus], capsys)
    assert status == 0, err
    values = {}
    for line in out.splitlines():
        words = line.split()
        if line.startswith("perplexity"):
            values["model"] = float(words[1])
        if line.startswith("unigram baseline perplexity"):
            values["unigram"] = float(words[3])
    assert values["model"] < 0.5 * values["unigram"]
    # an independent check of the baseline: add-one unigram of the
    # training split's targets, on every sentence of the file
    saved = ckpt.load_checkpoint(os.path.join(trained, "best.npz"))
    vocab = saved.metadata["vocabulary"]["words"]
    index = {w: i + 3 for i, w in enumerate(vocab)}
    counts = saved.arrays["data/train_target_counts"]
    probs = (counts + 1) / (counts.sum() + len(counts))
    nll, n = 0.0, 0
    for line in open(corpus):
        ids = [index.get(w, 0) for w in line.lower().split()] + [2]
        nll -= np.log(probs[ids]).sum()
        n += len(ids)
    assert values["unigram"] == pytest.approx(np.exp(nll / n), abs=0.006)


def test_sample_is_reproducible(trained, capsys):
    path = os.path.join(trained, "checkpoint.npz")
    status, out1, err = run(["sample", path, "-n", "3", "--seed", "5"],
                            capsys)
    assert status == 0, err
    lines = out1.splitlines()
    assert len(lines) == 3
    known = set(ckpt.load_checkpoint(path).metadata["vocabulary"]["words"])
    for line in lines:
        assert set(line.split()) <= known | {"<unk>"}
    status, out2, _ = run(["sample", path, "-n", "3", "--seed", "5"], capsys)
    assert out2 == out1
    status, out3, _ = run(["sample", path, "-n", "3", "--seed", "6",
                           "--temperature", "2.0"], capsys)
    assert status == 0 and out3 != out1


@pytest.mark.parametrize("command", ["train", "eval", "sample"])
def test_help(command, capsys):
    status, out, err = run([command, "--help"], capsys)
    assert status == 0
    assert out.startswith("usage: lstm-accum %s" % command)
    assert err == ""


def expect_user_error(argv, capsys, fragment, out_dir=None):
    status, out, err = run(argv, capsys)
    assert status == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert fragment in lines[0], lines[0]
    if out_dir is not None:
        assert not os.path.exists(out_dir)
    return lines[0]


@pytest.mark.parametrize("flags, fragment", [
    (["--accumulate", "0"], "argument --accumulate: expected an integer >= 1"),
    (["--lr", "nan"], "argument --lr: expected a finite number > 0"),
    (["--lr", "-0.5"], "argument --lr: expected a finite number > 0"),
    (["--vocab-size", "0"], "argument --vocab-size"),
    (["--batching", "padded"], "argument --batching: invalid choice"),
    (["--accumulate", "4", "--accumulate-tokens", "10"],
     "not allowed with argument"),
    (["--epochs", "two"], "argument --epochs"),
])
def test_bad_flag_values(corpus, tmp_path, capsys, flags, fragment):
    out = str(tmp_path / "out")
    expect_user_error(["train", corpus, "--out", out] + flags, capsys,
                      fragment, out)


def test_bad_corpora(tmp_path, capsys):
    out = str(tmp_path / "out")
    expect_user_error(["train", str(tmp_path / "missing.txt"), "--out", out],
                      capsys, "does not exist", out)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    expect_user_error(["train", str(empty), "--out", out], capsys,
                      "empty", out)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n")
    expect_user_error(["train", str(blank), "--out", out], capsys, "blank",
                      out)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x00\x01\x02binary\x00" * 10)
    expect_user_error(["train", str(binary), "--out", out], capsys, "binary",
                      out)
    bad_utf8 = tmp_path / "latin1.txt"
    bad_utf8.write_bytes(b"a good line\ncaf\xe9 au lait\n")
    expect_user_error(["train", str(bad_utf8), "--out", out], capsys,
                      "line 2", out)
    one = tmp_path / "one.txt"
    one.write_text("a single sentence\n")
    expect_user_error(["train", str(one), "--out", out], capsys,
                      "train", out)
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    expect_user_error(["train", str(blank), "--out", str(not_dir)], capsys,
                      "not a directory")


def test_checkpoint_errors(trained, corpus, tmp_path, capsys):
    # another model: resuming with other units
    copy = str(tmp_path / "copy")
    shutil.copytree(trained, copy)
    before = sorted(os.listdir(copy))
    flags = [f if f != "8" else "16" for f in TRAIN_FLAGS]  # units/accum
    line = expect_user_error(["train", corpus, "--out", copy, "--resume"]
                             + flags, capsys, "but this run has")
    assert "units=8" in line or "accumulate=8" in line
    assert sorted(os.listdir(copy)) == before
    # not resuming into a finished run
    expect_user_error(["train", corpus, "--out", copy] + TRAIN_FLAGS, capsys,
                      "already holds a checkpoint")
    # damaged, missing, foreign and newer checkpoints for eval and sample
    damaged = tmp_path / "damaged.npz"
    data = open(os.path.join(trained, "checkpoint.npz"), "rb").read()
    damaged.write_bytes(data[:len(data) // 3])
    for command in (["eval", str(damaged), corpus],
                    ["sample", str(damaged)]):
        expect_user_error(command, capsys, "damaged")
    expect_user_error(["sample", str(tmp_path / "none.npz")], capsys,
                      "does not exist")
    foreign = tmp_path / "foreign.npz"
    np.savez(str(foreign), W=np.zeros(3))
    expect_user_error(["eval", str(foreign), corpus], capsys,
                      "not an lstm_accum checkpoint")
    expect_user_error(["sample", os.path.join(trained, "checkpoint.npz"),
                       "--temperature", "0"], capsys, "--temperature")


def test_console_script_module_entry(tmp_path):
    # python -m lstm_accum.cli behaves as the console script: one line, 2
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "lstm_accum.cli", "train",
                           str(tmp_path / "nope.txt"), "--out",
                           str(tmp_path / "o")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "does not exist" in proc.stderr
    assert proc.stdout == ""


def test_a_user_error_is_one_line_even_with_a_kernel_hint(tmp_path, capsys,
                                                          monkeypatch):
    # The hint about faster OpenBLAS kernels comes once the run is set up:
    # a corpus that passes the settings' checks but cannot be read is still
    # one line.
    from lstm_accum.backend import openblas
    monkeypatch.setattr(openblas, "coretype_hint",
                        lambda *args, **kwargs: "hint: faster kernels")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    out = str(tmp_path / "out")
    line = expect_user_error(["train", str(empty), "--out", out], capsys,
                             "empty", out)
    assert "hint" not in line


@pytest.mark.parametrize("module", ["evaluate.py", "sample.py"])
def test_eval_and_sample_do_not_import_the_training_part(module):
    import ast
    path = os.path.join(ROOT, "lstm_accum", "cli", module)
    tree = ast.parse(open(path, encoding="utf-8").read())
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.extend(a.name for a in node.names)
    assert imported and not [m for m in imported if "training" in m or
                             m in (".train", ".program")], imported


def test_entry_points_of_the_package():
    import lstm_accum.cli as cli
    from lstm_accum.cli import program
    assert cli.main is program.main and cli.console_main is \
        program.console_main
    assert (cli.EXIT_USER_ERROR, cli.EXIT_NON_FINITE,
            cli.EXIT_INTERRUPTED) == (2, 3, 130)
    setup = open(os.path.join(ROOT, "setup.py")).read()
    assert "lstm-accum=lstm_accum.cli:console_main" in setup
