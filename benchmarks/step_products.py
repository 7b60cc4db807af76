"""The speed of the LSTM's per-step matrix products against a large product.

The fused LSTM (``lstm_accum/ops/fused_lstm.py``) does, per time step, the
forward product ``h_{t-1} (B, H) . W_hid (H, 4H)`` and the backward
product ``dG (B, 4H) . W_hid^T``, with B the batch (32 in the benchmarks),
and once per call the recurrent weight gradient over all steps.  These go
to the same BLAS as Theano's ``Dot22`` (NumPy's, ``blas=numpy C-API``), so
``numpy.dot`` of float32 arrays measures them.  Threads: OpenBLAS's
environment (``OPENBLAS_NUM_THREADS``), as for training.

Prints one table: GFLOP/s (multiply-add = 2), median of ``--repeats``
calls, for each product and, in the same run, a ``1024^3`` product (timed
the same way, at the start and the end of the run, the better of the two
kept; ``paths.gemm_gflops``, the other benchmarks' peak, takes the best
single call instead of a median) and the softmax layer's
``(N, H) . (H, V)``.

    OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/step_products.py
"""
import argparse
import os
import time

import numpy as np


def gflops(a, b, out, repeats):
    """Median GFLOP/s of ``numpy.dot(a, b, out=out)``."""
    for _ in range(3):
        np.dot(a, b, out=out)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.dot(a, b, out=out)
        times.append(time.perf_counter() - t)
    m, k = a.shape
    n = b.shape[1]
    return 2.0 * m * k * n / np.median(times) / 1e9


def product(m, k, n, rng, transpose_b=False):
    """Operands of an ``(m, k) . (k, n)`` product (``b`` a transposed view
    of a contiguous ``(n, k)`` array when ``transpose_b``) and its output."""
    a = rng.rand(m, k).astype(np.float32)
    if transpose_b:
        b = (rng.rand(n, k).astype(np.float32) * 0.01).T
    else:
        b = rng.rand(k, n).astype(np.float32) * 0.01
    return a, b, np.empty((m, n), np.float32)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--units", default="128,256,1024",
                   help="hidden sizes H (default %(default)s)")
    p.add_argument("--batch", type=int, default=32,
                   help="batch B of the per-step products (default 32)")
    p.add_argument("--rows", type=int, default=640,
                   help="rows N of the softmax layer's product: B times "
                        "the mean length (default 640)")
    p.add_argument("--vocab-size", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=40)
    args = p.parse_args(argv)
    rng = np.random.RandomState(0)
    big = product(1024, 1024, 1024, rng)
    start = gflops(*big, args.repeats)
    B, N, V = args.batch, args.rows, args.vocab_size
    rows = []
    for H in [int(u) for u in args.units.split(",")]:
        rows.append((H, gflops(*product(B, H, 4 * H, rng), args.repeats),
                     gflops(*product(B, 4 * H, H, rng, transpose_b=True),
                            args.repeats),
                     gflops(*product(N, H, V, rng), args.repeats)))
    peak = max(start, gflops(*big, args.repeats))
    print("threads: OPENBLAS_NUM_THREADS=%s; GEMM 1024^3: %.1f GFLOP/s "
          "(best of the start and the end)"
          % (os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"), peak))
    print("| H | `h (B,H) . W (H,4H)` | `dG (B,4H) . W^T` | "
          "`h (N,H) . W_out (H,V)` | step products / GEMM 1024^3 |")
    print("|---|---|---|---|---|")
    for H, fwd, bwd, out in rows:
        print("| %d | %.1f | %.1f | %.1f | %.0f%%, %.0f%% |"
              % (H, fwd, bwd, out, 100 * fwd / peak, 100 * bwd / peak))
    print("GFLOP/s of float32 numpy.dot, median of %d calls; B=%d, N=%d, "
          "V=%d" % (args.repeats, B, N, V))


if __name__ == "__main__":
    main()
