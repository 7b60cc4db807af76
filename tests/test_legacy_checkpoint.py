"""A checkpoint written before the package was laid out in subpackages
still evaluates to the same perplexity and resumes to bit-identical
parameters (float64).

``tests/fixtures/legacy_run/`` was made once by
``tests/fixtures/make_legacy_run.py`` with the code of commit 1ad1c0b: a
checkpoint after 12 updates, the perplexity of that checkpoint on its
corpus, and every parameter and accumulator array after resuming it to 20
updates. The code of today must reproduce them exactly on the stack that
made them (Python 3.11, numpy 1.23.5 and its OpenBLAS with the kernels it
chose there, ``Zen``: an AMD EPYC). Another numpy brings another OpenBLAS,
and another CPU other kernels (``SkylakeX`` on an Intel Xeon), whose float64
products round differently in the last bits: there the resumed arrays must
agree to float64 rounding (measured 1.1e-14 relative).
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lstm_accum.backend.openblas import openblas_corename

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "legacy_run")


def expected():
    with open(os.path.join(FIXTURE, "expected.json")) as f:
        return json.load(f)


def cli(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["THEANO_FLAGS"] = "floatX=float64,mode=FAST_COMPILE"
    return subprocess.run([sys.executable, "-m", "lstm_accum.cli"]
                          + list(args), env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def run_dir(tmp_path):
    """The fixture's corpus and checkpoint, copied where caches may go."""
    shutil.copy(os.path.join(FIXTURE, "corpus.txt"), str(tmp_path))
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(os.path.join(FIXTURE, "checkpoint.npz"), str(out))
    return tmp_path


def test_old_checkpoint_evaluates_to_the_same_perplexity(run_dir):
    corpus = str(run_dir / "corpus.txt")
    proc = cli("eval", str(run_dir / "run" / "checkpoint.npz"), corpus)
    assert proc.returncode == 0, proc.stderr
    # the whole report, but for the corpus path at its start
    assert proc.stdout.split(": ", 1)[1] == expected()["eval_stdout"]
    # and the exact number, through the Python API, in a float64 process
    code = (
        "import json, sys\n"
        "import lstm_accum\n"
        "from lstm_accum.evaluation import score_corpus\n"
        "from lstm_accum.data import encode_file\n"
        "model, vocab, saved = lstm_accum.load_model(sys.argv[1],"
        " batching='bucket')\n"
        "c = saved.metadata['config']\n"
        "corpus, _ = encode_file(sys.argv[2], vocab, lowercase=c['lowercase'],"
        " max_length=c['max_length'])\n"
        "s = score_corpus(model, corpus, batch_size=32)\n"
        "print(json.dumps([s.perplexity, s.tokens]))\n")
    env = dict(os.environ, PYTHONPATH=ROOT,
               THEANO_FLAGS="floatX=float64,mode=FAST_COMPILE")
    proc = subprocess.run([sys.executable, "-c", code,
                           str(run_dir / "run" / "checkpoint.npz"), corpus],
                          env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    ppl, tokens = json.loads(proc.stdout.strip().splitlines()[-1])
    assert tokens == expected()["tokens"]
    assert ppl == pytest.approx(expected()["perplexity"], rel=1e-12)


def test_old_checkpoint_resumes_to_bit_identical_parameters(run_dir):
    e = expected()
    proc = cli("train", str(run_dir / "corpus.txt"), "--out",
               str(run_dir / "run"), "--max-updates", str(e["second"]),
               "--resume", *e["options"])
    assert proc.returncode == 0, proc.stderr
    assert "resuming from" in proc.stdout
    with np.load(str(run_dir / "run" / "checkpoint.npz"),
                 allow_pickle=False) as f:
        got = {k: f[k] for k in f.files}
    with np.load(os.path.join(FIXTURE, "resumed.npz"),
                 allow_pickle=False) as f:
        want = {k: f[k] for k in f.files}
    assert any(k.startswith("acc/optimizer/") for k in want)
    same_stack = (np.__version__ == e["numpy"] and
                  (openblas_corename() or "").lower()
                  == e["openblas_core"].lower())
    for name, value in want.items():
        assert name in got, name
        assert got[name].dtype == value.dtype == np.float64 or \
            value.dtype.kind != "f", name
        assert got[name].shape == value.shape, name
        if same_stack or value.dtype.kind != "f":
            assert got[name].tobytes() == value.tobytes(), name
        else:
            np.testing.assert_allclose(got[name], value, rtol=1e-12,
                                       atol=1e-15, err_msg=name)
