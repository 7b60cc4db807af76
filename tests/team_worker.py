"""Runs the team's operations (``lstm_accum.ops.team``) on fixed random
float32 inputs and saves every output to an ``.npz``: ``python
team_worker.py OUT``; ``python team_worker.py --train OUT`` trains a small
bucketed id model for three windows with :class:`GradientAccumulator` and
saves its parameters and accumulators instead (and whether its accumulate
step ran on the team); ``python team_worker.py --accumulate OUT`` runs the
accumulate step's op and the squared norm of ``test_accumulate_op.py``.  ``test_team.py`` runs it with different
``OPENBLAS_NUM_THREADS`` (read once per process, by OpenBLAS and by the
team).

Saved, per case: ``team/...`` (the operation with the team: TeamDot, and
the softmax NLL and fused LSTM operations with ``team=True``), ``plain/...``
(the same without the team: NumPy's dot, ``team=False``); ``.../both...``
is :class:`SoftmaxNLLAndGrad`, ``plain/ones...`` the two softmax passes it
stands for (``g`` = 1).
"""
import ctypes
import os
import sys

import numpy as np

from lstm_accum.backend import theano, T
from lstm_accum.ops import (FusedLSTM, FusedLSTMGrad, SoftmaxNLL,
                            SoftmaxNLLAndGrad, SoftmaxNLLGrad, TeamDot)
from lstm_accum.ops.mkl import load_mkl

import fused_worker

#: Products of at least this many multiply-adds run on the team, on MKL
#: when it is loaded (team_blas.c's LSTM_ACCUM_TEAM_GEMM_MIN).
TEAM_MIN = 2 ** 23

#: (M, K, N) of the products: the output layer's three at a minibatch of
#: 640 tokens, H = 96, V = 1001 (odd sizes: shares end inside a block of
#: 16), a tall and a tiny one (below the size that wakes the team, and
#: below OpenBLAS's own threshold for threads).
PRODUCTS = [(640, 96, 1001), (37, 2001, 129), (1001, 37, 640),
            (3, 5, 7)]
#: (N, V) of the softmax NLL: large enough for the team, V not a multiple
#: of 16, and one row.
SOFTMAX = [(300, 1001), (1, 70000)]
#: (steps, batch, H) of the fused LSTM: small batches that the team shares
#: only with team=True, each with a recurrent weight gradient large enough
#: (H * 4H * steps * batch >= 2^23) to be a product on the team.
LSTM = [(5, 32, 128), (8, 13, 160), (6, 9, 200)]
CLIP = 0.5


def one_call(a, b):
    """``a . b`` as the BLAS of the team's products computes it in one call
    on one thread: MKL's ``cblas_sgemm`` straight through ctypes when it
    runs them, else NumPy's ``dot`` (OpenBLAS, ``OPENBLAS_NUM_THREADS``
    threads)."""
    if a.shape[0] * a.shape[1] * b.shape[1] < TEAM_MIN:
        return np.dot(a, b)
    return blas_call(a, b)


def blas_call(a, b):
    """``a . b`` in one call of the BLAS of the team's products, whatever
    its size: MKL's ``cblas_sgemm`` through ctypes, or NumPy's ``dot``."""
    path = load_mkl()[0]
    M, K = a.shape
    N = b.shape[1]
    if path is None:
        return np.dot(a, b)
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    c = np.empty((M, N), np.float32)
    lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL | os.RTLD_NOLOAD)
    L, i, f, p = ctypes.c_longlong, ctypes.c_int, ctypes.c_float, \
        ctypes.c_void_p
    gemm = lib.cblas_sgemm_64
    gemm.argtypes = [i, i, i, L, L, L, f, p, L, p, L, f, p, L]
    gemm(101, 111, 111, M, N, K, 1.0, a.ctypes.data, K, b.ctypes.data, N,
         0.0, c.ctypes.data, N)
    return c


def shares_exact(rng):
    """Whether the BLAS's sums stay the same when a product is cut in two
    as the team cuts it (rows or columns, at a multiple of 16), each half
    one call: MKL's strict mode promises it; OpenBLAS's kernels keep it on
    some CPUs (SkylakeX's) and not on others (Haswell's and Zen's).  Only
    meaningful on one OpenBLAS thread."""
    for M, K, N in PRODUCTS[:3]:
        a = rng.randn(M, K).astype(np.float32)
        b = rng.randn(K, N).astype(np.float32)
        whole = blas_call(a, b)
        r, c = 16 * ((M + 15) // 32), 16 * ((N + 15) // 32)
        rows = np.vstack([blas_call(a[:r], b), blas_call(a[r:], b)])
        cols = np.hstack([blas_call(a, b[:, :c]), blas_call(a, b[:, c:])])
        if not (np.array_equal(rows, whole) and np.array_equal(cols, whole)):
            return False
    return True


def _functions():
    a, b = T.fmatrix(), T.fmatrix()
    dots = {
        "nn": theano.function([a, b], TeamDot()(a, b)),
        "tn": theano.function([a, b], TeamDot()(a.T, b)),
        "nt": theano.function([a, b], TeamDot()(a, b.T)),
        "strided": theano.function([a, b], TeamDot()(a[:, ::2], b[::2])),
    }
    x, bias, g = T.fmatrix(), T.fvector(), T.fvector()
    y = T.ivector()
    softmax = {}
    for team in (False, True):
        nll, sm = SoftmaxNLL(team)(x, bias, y)
        dx, db = SoftmaxNLLGrad(team)(g, sm, y)
        softmax[team] = theano.function([x, bias, y, g], [nll, sm, dx, db])
        softmax["both", team] = theano.function(
            [x, bias, y], SoftmaxNLLAndGrad(team)(x, bias, y))
    lstm = {}
    xs = T.ftensor3()
    W, c0, h0 = T.fmatrix(), T.fmatrix(), T.fmatrix()
    wci, wcf, wco = T.fvector(), T.fvector(), T.fvector()
    dh = T.ftensor3()
    for team in (False, True):
        hid, cell, act = FusedLSTM(CLIP, team=team)(
            xs, bias, *fused_worker.gates(W), wci, wcf, wco, c0, h0)
        grads = FusedLSTMGrad(CLIP, team=team)(
            *fused_worker.gates(W), wci, wcf, wco, c0, h0, hid, cell, act,
            dh)
        lstm[team] = theano.function(
            [xs, bias, W, wci, wcf, wco, c0, h0, dh],
            [hid, cell, act] + list(grads))
    return dots, softmax, lstm


def run(out):
    rng = np.random.RandomState(7)
    dots, softmax, lstm = _functions()
    res = {}
    f32 = np.float32
    for k, (M, K, N) in enumerate(PRODUCTS):
        a = rng.randn(M, K).astype(f32)
        b = rng.randn(K, N).astype(f32)
        res["team/nn%d" % k] = dots["nn"](a, b)
        res["plain/nn%d" % k] = one_call(a, b)
        res["f64/nn%d" % k] = np.dot(a.astype(np.float64), b)
        res["numpy/nn%d" % k] = np.dot(a, b)
        at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
        res["team/tn%d" % k] = dots["tn"](at, b)
        res["plain/tn%d" % k] = one_call(at.T, b)
        res["team/nt%d" % k] = dots["nt"](a, bt)
        res["plain/nt%d" % k] = one_call(a, bt.T)
        a2 = rng.randn(M, 2 * K).astype(f32)
        b2 = rng.randn(2 * K, N).astype(f32)
        res["team/strided%d" % k] = dots["strided"](a2, b2)
        res["plain/strided%d" % k] = one_call(a2[:, ::2], b2[::2])
    for k, (N, V) in enumerate(SOFTMAX):
        x = (rng.randn(N, V) * 3).astype(f32)
        bias = rng.randn(V).astype(f32)
        y = rng.randint(0, V, size=N).astype("int32")
        y[:3] = (0, V - 1, 15)[:N]          # targets at the share edges
        g = rng.rand(N).astype(f32)
        for team in (False, True):
            for name, v in zip(("nll", "sm", "dx", "db"),
                               softmax[team](x, bias, y, g)):
                res["%s/softmax%d/%s" % ("team" if team else "plain", k,
                                         name)] = v
            # the forward and the gradient of the plain sum in one pass,
            # and the two passes with g = 1 (an input: not rewritten)
            for name, v in zip(("nll", "dx", "db"),
                               softmax["both", team](x, bias, y)):
                res["%s/both%d/%s" % ("team" if team else "plain", k,
                                      name)] = v
            if not team:
                nll, _, dx, db = softmax[team](x, bias, y, np.ones_like(g))
                res.update({"plain/ones%d/nll" % k: nll,
                            "plain/ones%d/dx" % k: dx,
                            "plain/ones%d/db" % k: db})
    for k, (steps, batch, H) in enumerate(LSTM):
        args = [rng.randn(steps, batch, 4 * H), rng.randn(4 * H) * .1,
                rng.randn(H, 4 * H) * .3, rng.randn(H) * .1,
                rng.randn(H) * .1, rng.randn(H) * .1,
                rng.randn(batch, H) * .5, rng.randn(batch, H) * .5,
                rng.randn(steps, batch, H) * 3]
        args = [v.astype(f32) for v in args]
        for team in (False, True):
            for j, v in enumerate(lstm[team](*args)):
                res["%s/lstm%d/%d" % ("team" if team else "plain", k, j)] = v
        hid = res["plain/lstm%d/0" % k]
        dx = res["plain/lstm%d/3" % k]
        hprev = np.concatenate([args[7][None], hid[:-1]]).reshape(-1, H)
        res["plain/lstm%d/dW" % k] = one_call(hprev.T,
                                             dx.reshape(-1, 4 * H))
    res["mkl"] = load_mkl()[0] is not None
    res["shares_exact"] = shares_exact(rng)
    np.savez(out, **res)


def train(out):
    """Three windows of two minibatches (16 sentences of 10 words, V =
    500, H = 64: the products, the softmax and the steps are large enough
    for the team) and Adagrad."""
    from lstm_accum import GradientAccumulator, build_model
    from lstm_accum.backend import lasagne
    rng = np.random.RandomState(3)
    model = build_model(500, 64, input="ids", batching="bucket", seed=5)
    acc = GradientAccumulator(
        model.loss(), model.params, model.inputs, normalize="samples",
        update=lasagne.updates.adagrad, learning_rate=0.1,
        num_tokens=model.num_tokens(), vocab_size=model.vocab_size)
    for _ in range(3):
        for _ in range(2):
            X = rng.randint(0, 500, size=(16, 10)).astype("int32")
            acc.accumulate(X, np.roll(X, -1, axis=1))
        acc.apply()
    res = {"param/%d" % k: p.get_value() for k, p in enumerate(model.params)}
    res.update({"acc/%d" % k: a.get_value()
                for k, a in enumerate(acc.accumulators)})
    res["mkl"] = load_mkl()[0] is not None
    res["on_team"] = any(isinstance(node.op, TeamDot) for node in
                         acc.accumulate_fn.maker.fgraph.toposort())
    np.savez(out, **res)


def accumulate(out):
    """The accumulate step's op and the squared norm on the arrays of
    ``test_accumulate_op.py``: the accumulators after one call, and the
    norm of them and of the sources (also divided by 7 first)."""
    from lstm_accum.ops.accumulate import SquaredNorm
    import test_accumulate_op as case
    fn, shared = case.compiled("float32")
    src = case.sources("float32")
    res = {"ok": fn(1.0, *src)}
    res.update({"acc/%d" % k: s.get_value() for k, s in enumerate(shared)})
    xs = [T.fmatrix(), T.fvector()]
    res["norm"] = theano.function(xs, SquaredNorm()(*xs))(src[0], src[6])
    d = T.dscalar()
    res["norm/7"] = theano.function([d] + xs, SquaredNorm(True)(d, *xs))(
        7.0, src[0], src[6])
    np.savez(out, **res)


if __name__ == "__main__":
    if sys.argv[1] == "--train":
        train(sys.argv[2])
    elif sys.argv[1] == "--accumulate":
        accumulate(sys.argv[2])
    else:
        run(sys.argv[1])
