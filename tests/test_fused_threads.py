"""The fused LSTM's float32 C operations: right, whatever the shape, the
number of threads, and after ``fork``.

On CPUs with AVX-512 the float32 steps run on packed weight panels and a
team of threads (``lstm_accum.ops.panels``); elsewhere they run on BLAS and
these tests check that path instead.

* Against an independent reference: the NumPy ``perform`` of the same
  operations in float64 (itself checked against Lasagne's scan layer to
  1e-10 in ``test_fused_lstm.py``), at sizes that leave partial row blocks
  (batch 13, 17, 9, 1) and partial panels (H = 40, 37, 130, 1000, 1030),
  small enough to run on one thread and large enough for a team, with and
  without the gradient reaching cells and gates.  Within float32 rounding:
  no further from float64 than twice as far as NumPy's float32 (BLAS) run
  of the same ``perform``, relative to the largest value of each output.
* One thread against two, in separate processes (``OPENBLAS_NUM_THREADS``
  is read once): bit-for-bit equal.  Every element is one sum in a fixed
  order whichever thread computes it; only ``dW``, one BLAS product over
  all steps, may differ by rounding.
* Each test runs the operations as built alone and as training compiles
  them (``team=True``), where the threads share the steps of far smaller
  batches: at H <= 256 by rows (each thread runs its own sentences), above
  by units.
* A child forked after the operations ran on two threads (their workers
  are not in the child) runs them again and gets the same bits, and does
  not hang.  Its first shapes run after the largest, in a panel buffer
  kept from the calls before (stale values past their panels).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import fused_worker
from lstm_accum.ops.fused_lstm import FusedLSTM, FusedLSTMGrad

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
N_FORWARD, N_GRAD = 3, 8
DW = 2  # index of dW among FusedLSTMGrad's outputs


def _reference(values, aux, dtype):
    """perform() of FusedLSTM, then FusedLSTMGrad, in dtype (NumPy)."""
    x, b, W, wci, wcf, wco, c0, h0, dh, dc, da = [
        v.astype(dtype) for v in values]
    fwd = [[None] for _ in range(N_FORWARD)]
    gates = np.split(W, 4, axis=1)
    FusedLSTM(fused_worker.CLIP).perform(None, [x, b] + gates + [
        wci, wcf, wco, c0, h0], fwd)
    fwd = [o[0] for o in fwd]
    grad = [[None] for _ in range(N_GRAD)]
    FusedLSTMGrad(fused_worker.CLIP, aux=aux).perform(
        None, gates + [wci, wcf, wco, c0, h0] + fwd + [dh]
        + ([dc, da] if aux else []), grad)
    return fwd + [g[0] for g in grad]


def _both(values, dtype):
    """The outputs of fused_worker.build()'s function, by perform()."""
    return (_reference(values, False, dtype)
            + _reference(values, True, dtype)[N_FORWARD:])


@pytest.fixture(scope="module", params=[False, True], ids=["", "team"])
def fused_fn(request):
    return fused_worker.build(team=request.param)


def test_float32_within_rounding_of_float64_reference(fused_fn):
    rng = np.random.RandomState(5)
    for (steps, batch, H), values in fused_worker.inputs(rng):
        got = fused_fn(*values)
        want, numpy32 = _both(values, "float64"), _both(values, "float32")
        assert len(got) == len(want)
        for k, (a, b, c) in enumerate(zip(got, want, numpy32)):
            assert a.dtype == np.float32 and a.shape == b.shape, k
            scale = max(np.abs(b).max(), 1.0)
            err = np.abs(a - b).max() / scale
            rounding = np.abs(c - b).max() / scale
            assert err <= max(2 * rounding, 1e-6), (steps, batch, H, k, err,
                                                    rounding)


def test_rows_do_not_depend_on_the_batch_around_them(fused_fn):
    """Each sentence's outputs are the same bits in a batch of 32 (four
    blocks of 8 rows that read each block of the weight panels together)
    as in batches of 8, 13 and 11 (one block, a block and a partial one):
    every element is one sum in a fixed order whatever its row block.
    H = 160: more than one block of summed rows (LSTM_ACCUM_CHAIN)
    forward and backward."""
    rng = np.random.RandomState(11)
    steps, batch, H = 3, 32, 160
    values = [rng.randn(steps, batch, 4 * H), rng.randn(4 * H) * .1,
              rng.randn(H, 4 * H) * .3, rng.randn(H) * .1,
              rng.randn(H) * .1, rng.randn(H) * .1,
              rng.randn(batch, H) * .5, rng.randn(batch, H) * .5,
              rng.randn(steps, batch, H) * 3, rng.randn(steps, batch, H),
              rng.randn(steps, batch, 4 * H)]
    values = [v.astype("float32") for v in values]
    whole = fused_fn(*values)
    # outputs per row: hid, cell, act, dx (steps, batch, .); dc0, dh0
    # (batch, .); for the plain gradient and the one with aux
    by_step = [0, 1, 2, N_FORWARD, N_FORWARD + N_GRAD]
    by_row = [N_FORWARD + 6, N_FORWARD + 7, N_FORWARD + N_GRAD + 6,
              N_FORWARD + N_GRAD + 7]
    for lo, hi in ((0, 8), (8, 21), (21, 32)):
        part = list(values)
        for k in (0, 8, 9, 10):
            part[k] = values[k][:, lo:hi]
        for k in (6, 7):
            part[k] = values[k][lo:hi]
        got = fused_fn(*[np.ascontiguousarray(v) for v in part])
        for k in by_step:
            assert np.array_equal(got[k], whole[k][:, lo:hi]), (lo, k)
        for k in by_row:
            assert np.array_equal(got[k], whole[k][lo:hi]), (lo, k)


def _run_worker(tmp_path, threads, fork):
    out = str(tmp_path / ("threads%d.npz" % threads))
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([ROOT, HERE]))
    cmd = [sys.executable, os.path.join(HERE, "fused_worker.py"), out]
    done = subprocess.run(cmd + (["--fork"] if fork else []), env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="one CPU: a team of two threads is one")
def test_two_threads_equal_one_bit_for_bit_also_after_fork(tmp_path):
    one = np.load(_run_worker(tmp_path, 1, fork=False))
    two_path = _run_worker(tmp_path, 2, fork=True)
    two = np.load(two_path)
    child = np.load(two_path[:-len(".npz")] + ".child.npz")
    assert sorted(one.files) == sorted(two.files) == sorted(child.files)
    dws = {N_FORWARD + DW, N_FORWARD + N_GRAD + DW}
    for name in one.files:
        assert np.array_equal(two[name], child[name]), name
        if int(name.rsplit("_", 1)[1]) in dws:
            np.testing.assert_allclose(two[name], one[name], rtol=1e-5,
                                       atol=1e-5 * np.abs(one[name]).max())
        else:
            assert np.array_equal(two[name], one[name]), name
