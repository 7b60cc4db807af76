"""One pool of threads for the products and the loops
(``lstm_accum.ops.team``): the same numbers as the BLAS it calls on one
thread, whatever the number of threads.

``team_worker.py`` runs the operations in processes of their own with
``OPENBLAS_NUM_THREADS`` 1, 2 and 3 (read once per process, by OpenBLAS
and by the team; the team takes no more threads than the process has CPUs,
so 3 is 2 on a two-core machine), once with the team's products on MKL
(``LSTM_ACCUM_BLAS=mkl``, on any CPU, when the ``mkl`` package is
installed) and once on NumPy's OpenBLAS (``LSTM_ACCUM_BLAS=openblas``).
A planted defect -- the second of two threads skipping its share of the
products -- failed three of these tests.  The references are independent of the team's code:

* every product (``TeamDot``, plain, on transposed views, on a strided
  input that is copied first) equals one call of that BLAS on one thread
  (MKL's ``cblas_sgemm`` through ctypes, or NumPy's ``dot`` on one
  OpenBLAS thread) bit for bit, is the same at every thread count, and is
  within float32 rounding of the float64 product;
* the softmax NLL's and the fused LSTM's operations with ``team=True``
  equal the same operations without the team bit for bit (the loops are
  the same; the team shares out rows or columns), at every thread count;
  the recurrent weights' gradient, a product on the team, equals one call
  of that BLAS on the same operands bit for bit;
* training: three windows of a bucketed id model with the rewrite equal
  three windows without it (``optimizer_excluding``) bit for bit on one
  OpenBLAS thread, and within float32 rounding on two or on MKL (where
  the products summed in another order).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from lstm_accum.ops import TeamDot, mkl, team_unavailable
from lstm_accum.ops.fused_lstm import FusedLSTM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

pytestmark = pytest.mark.skipif(
    team_unavailable() is not None,
    reason="the team cannot run the products here: %s" % team_unavailable())


def _run(tmp_path, threads, *args, flags=None, blas="auto"):
    out = str(tmp_path / ("team-%d-%s-%s.npz" % (threads, blas, "-".join(
        args) or "ops")))
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([ROOT, HERE]),
               LSTM_ACCUM_BLAS=blas)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("GOTO_NUM_THREADS", None)
    if flags:
        env["THEANO_FLAGS"] = ",".join(
            x for x in (env.get("THEANO_FLAGS"), flags) if x)
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "team_worker.py")] + list(args)
        + [out], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


#: The switch LSTM_ACCUM_BLAS of the worker processes: MKL (on any CPU)
#: where the mkl package is installed, and NumPy's OpenBLAS.
SWITCHES = (["mkl"] if mkl._installed_runtime() else []) + ["openblas"]


@pytest.fixture(scope="module", params=SWITCHES)
def blas(request):
    """The switch LSTM_ACCUM_BLAS of the worker processes."""
    return request.param


@pytest.fixture(scope="module")
def runs(blas, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("team")
    return {t: _run(tmp, t, blas=blas) for t in (1, 2, 3)}


def test_the_products_run_on_mkl_when_asked(runs, blas):
    for run in runs.values():
        assert bool(run["mkl"]) == (blas == "mkl")
    # The C code runs them on MKL: some products (which ones depends on the
    # CPU) sum in another order than OpenBLAS, and the team equals MKL's
    # own call (below).
    one = runs[1]
    same = [np.array_equal(one["team/nn%d" % k], one["numpy/nn%d" % k])
            for k in range(4)]
    assert not all(same) if one["mkl"] else all(same)
    assert same[3]                      # (3, 5, 7): not on the team
    # MKL's strict mode keeps every sum whatever the share
    assert bool(one["shares_exact"]) or not one["mkl"]


def _product_key(key):
    """Keys of the team's products (the others are its loops)."""
    return not key.startswith(("team/softmax", "team/both", "team/lstm")) \
        or key.endswith("/5")          # the fused LSTM's dW


def test_team_results_do_not_depend_on_the_number_of_threads(runs):
    """Bit for bit where the BLAS's sums do not depend on the share
    (MKL; OpenBLAS's SkylakeX kernels); elsewhere (OpenBLAS's Haswell and
    Zen kernels) the products within float32 rounding, the loops still
    bit for bit."""
    keys = [k for k in runs[1] if k.startswith("team/")]
    assert len(keys) > 40
    exact = bool(runs[1]["shares_exact"])
    for t in (2, 3):
        for k in keys:
            want, got = runs[1][k], runs[t][k]
            if exact or not _product_key(k):
                assert np.array_equal(got, want), (t, k)
            else:
                scale = np.abs(want).max()
                assert np.abs(got - want).max() <= 1e-5 * scale, (t, k)


def test_products_equal_their_blas_in_one_call(runs):
    one = runs[1]
    names = [k[len("plain/"):] for k in one if k.startswith("plain/")
             and not k.startswith(("plain/softmax", "plain/both",
                                   "plain/ones", "plain/lstm"))]
    assert len(names) == 16
    for name in names:
        expected = one["plain/" + name]
        got = one["team/" + name]
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.array_equal(got, expected), name
    for k in range(4):
        want = one["f64/nn%d" % k]
        got = one["team/nn%d" % k].astype(np.float64)
        # float32 rounding of sums of |a||b| terms
        bound = 1e-6 * np.sqrt(want.shape[0]) * np.abs(want).max() + 1e-5
        assert np.abs(got - want).max() <= 30 * bound, k


def test_softmax_on_the_team_equals_the_loops_alone(runs):
    for t, run in runs.items():
        keys = [k for k in run if k.startswith("plain/softmax")]
        assert len(keys) == 8
        for k in keys:
            assert np.array_equal(run["team/" + k[6:]], run[k]), (t, k)


def test_softmax_and_its_gradient_in_one_pass_equal_the_two_passes(runs):
    """SoftmaxNLLAndGrad, on any number of threads and without the team,
    equals SoftmaxNLL then SoftmaxNLLGrad with g = 1 (no team), bit for
    bit: its rows are shared in blocks of 16 and its bias sums added in
    the two passes' order."""
    for t, run in runs.items():
        for case in range(2):
            for name in ("nll", "dx", "db"):
                want = run["plain/ones%d/%s" % (case, name)]
                for side in ("team", "plain"):
                    got = run["%s/both%d/%s" % (side, case, name)]
                    assert got.dtype == want.dtype
                    assert np.array_equal(got, want), (t, side, case, name)


def test_fused_lstm_on_the_team_equals_the_loops_alone(runs):
    dW = 5      # hid, cell, act, then dx, db, dW, ...
    for t, run in runs.items():
        for case in range(3):
            for j in range(3 + 8):
                key = "lstm%d/%d" % (case, j)
                team, plain = run["team/" + key], run["plain/" + key]
                if j == dW:
                    # one product on the team: its BLAS's one-call sums
                    # (within rounding where its sums depend on the share)
                    one = run["plain/lstm%d/dW" % case] if t == 1 else \
                        runs[1]["plain/lstm%d/dW" % case]
                    scale = np.abs(plain).max()
                    if t == 1 or runs[1]["shares_exact"]:
                        assert np.array_equal(team, one)
                    assert np.abs(team - one).max() <= 1e-5 * scale
                    assert np.abs(team - plain).max() <= 1e-5 * scale
                else:
                    assert np.array_equal(team, plain), (t, key)


@pytest.mark.parametrize("blas", SWITCHES)
@pytest.mark.parametrize("threads", [1, 2])
def test_training_with_the_team_equals_training_without(tmp_path, threads,
                                                        blas):
    team = _run(tmp_path, threads, "--train", blas=blas)
    alone = _run(tmp_path, threads, "--train", blas=blas,
                 flags="optimizer_excluding=lstm_accum_team")
    assert bool(team.pop("on_team")) and not bool(alone.pop("on_team"))
    on_mkl = bool(team.pop("mkl"))
    assert on_mkl == bool(alone.pop("mkl"))
    exact = threads == 1 and not on_mkl
    assert sorted(team) == sorted(alone)
    for k in team:
        if exact:
            assert np.array_equal(team[k], alone[k]), k
        else:
            scale = max(np.abs(alone[k]).max(), 1e-30)
            assert np.abs(team[k] - alone[k]).max() <= 1e-4 * scale, k


def test_the_accumulate_step_runs_on_the_team():
    from lstm_accum import GradientAccumulator, build_model
    from lstm_accum.backend import theano
    model = build_model(60, 16, input="ids", batching="bucket", seed=1)
    acc = GradientAccumulator(model.loss(), model.params, model.inputs,
                              normalize="samples",
                              num_tokens=model.num_tokens(),
                              vocab_size=model.vocab_size)
    ops = [node.op for node in acc.accumulate_fn.maker.fgraph.toposort()]
    assert any(isinstance(op, TeamDot) for op in ops)
    assert not any(isinstance(op, theano.tensor.blas.Dot22) for op in ops)
    lstm = [op for op in ops if type(op).__name__.startswith("FusedLSTM")]
    assert len(lstm) == 2 and all(op.team for op in lstm)
    # the loss is a sum: its forward and gradient are one operation
    softmax = [op for op in ops if type(op).__name__.startswith("Softmax")]
    assert [type(op).__name__ for op in softmax] == ["SoftmaxNLLAndGrad"]
    assert softmax[0].team


def test_team_dot_without_the_team_is_numpy_dot():
    """perform (Theano's Python linker) is NumPy's dot."""
    rng = np.random.RandomState(0)
    a = rng.randn(5, 7).astype("float32")
    b = rng.randn(7, 3).astype("float32")
    out = [[None]]
    TeamDot().perform(None, [a, b], out)
    assert np.array_equal(out[0][0], a.dot(b))
    with pytest.raises(TypeError, match="float32 matrices"):
        TeamDot()(np.zeros((2, 2)), np.zeros((2, 2)))
    assert FusedLSTM(0.0, team=True) != FusedLSTM(0.0)
