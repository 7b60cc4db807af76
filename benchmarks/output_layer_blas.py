"""The output layer's three matrix products on our BLAS against PyTorch's.

At H <= 256 the output layer's products are most of a training call: the
logits ``h (N, H) . W (H, V)``, the weights' gradient ``h^T . dZ`` and the
hidden states' gradient ``dZ . W^T``.  PyTorch's language model runs the
same three.  This times them alone, at the shapes of a call of bucket-ids
training (N = 528 tokens, V = 2000), three ways, each in its own process
with the same thread count, in alternating runs:

* ``numpy``: NumPy's ``dot`` (the OpenBLAS in NumPy's wheel);
* ``ours``: ``TeamDot``, as training runs them (``lstm_accum.ops.team``:
  each thread of the team multiplies its share on one thread of MKL when
  the ``mkl`` package is installed, of NumPy's OpenBLAS otherwise);
* ``torch``: PyTorch's ``@`` (MKL in its x86 wheel).

Prints one table: per H and thread count, the median of ``--rounds``
rounds of ``--calls`` calls of the three products, ms and GFLOP/s
(multiply-add = 2), for each side, and PyTorch's time over ours.  PyTorch
runs from a separate environment (see ``torch_reference.py``), never from
``.venv``::

    .venv/bin/python benchmarks/output_layer_blas.py --torch-python TORCH_VENV/bin/python
"""
import argparse
import json
import os
import subprocess
import sys
import time

SIDES = ("numpy", "ours", "torch")
TOKENS = 528    # tokens of a call of bucket-ids training (28 sentences)
VOCAB = 2000


def _products(lib, H):
    """A function that runs the three products once, on lib's BLAS."""
    shapes = ((TOKENS, H), (H, VOCAB), (TOKENS, VOCAB))
    if lib == "torch":
        import torch
        h, W, d = [torch.randn(*s) for s in shapes]
        return lambda: (h @ W, h.t() @ d, d @ W.t())
    import numpy as np
    rng = np.random.RandomState(0)
    h, W, d = [rng.randn(*s).astype("float32") for s in shapes]
    if lib == "numpy":
        return lambda: (h.dot(W), h.T.dot(d), d.dot(W.T))
    from lstm_accum.backend import theano, T
    from lstm_accum.ops import TeamDot
    a, b = T.fmatrix(), T.fmatrix()
    fns = [theano.function([a, b], TeamDot()(x, y)) for x, y in
           ((a, b), (a.T, b), (a, b.T))]
    return lambda: (fns[0](h, W), fns[1](h, d), fns[2](d, W))


def worker(lib, units, threads, rounds, calls):
    """{H: median seconds of the three products} on lib's BLAS."""
    if lib == "torch":
        import torch
        torch.set_num_threads(threads)
    medians = {}
    for H in units:
        run = _products(lib, H)
        for _ in range(3):
            run()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(calls):
                run()
            times.append((time.perf_counter() - start) / calls)
        medians[H] = sorted(times)[len(times) // 2]
    return medians


def _run(python, lib, args, threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    cmd = [python, os.path.abspath(__file__), "--worker", lib, "--units",
           ",".join(map(str, args.units)), "--threads", str(threads),
           "--rounds", str(args.rounds), "--calls", str(args.calls)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit("%s worker failed:\n%s" % (lib, done.stderr))
    return {int(h): s for h, s in json.loads(done.stdout).items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch-python",
                        help="Python of an environment with torch")
    parser.add_argument("--units", default="128,256,1024",
                        type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--threads", default="1,2",
                        type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--runs", type=int, default=2,
                        help="alternating runs of each side")
    parser.add_argument("--worker", choices=SIDES)
    args = parser.parse_args(argv)
    if args.worker:
        json.dump(worker(args.worker, args.units, args.threads[0],
                         args.rounds, args.calls), sys.stdout)
        return 0
    if not args.torch_python:
        parser.error("--torch-python is required: the Python of a separate "
                     "environment with torch (see torch_reference.py)")
    from lstm_accum.ops.mkl import load_mkl
    team_blas = "MKL" if load_mkl()[0] else "OpenBLAS"
    print("| H | threads | NumPy's OpenBLAS, ms (GFLOP/s) | ours (team, %s), "
          "ms (GFLOP/s) | PyTorch's MKL, ms (GFLOP/s) | PyTorch / ours "
          "| PyTorch / NumPy |" % team_blas)
    print("|---|---|---|---|---|---|---|")
    for threads in args.threads:
        best = {lib: {} for lib in SIDES}
        for _ in range(args.runs):
            for lib in SIDES:
                python = args.torch_python if lib == "torch" else \
                    sys.executable
                for H, s in _run(python, lib, args, threads).items():
                    best[lib][H] = min(s, best[lib].get(H, s))
        for H in args.units:
            flop = 6.0 * TOKENS * H * VOCAB
            t = [best[lib][H] for lib in SIDES]
            print("| %d | %d | %s | %.2fx | %.2fx |" % (
                H, threads, " | ".join("%.2f (%.0f)" % (
                    x * 1e3, flop / x / 1e9) for x in t),
                t[1] / t[2], t[0] / t[2]))
    print("\nN=%d tokens, V=%d; each side: the best of %d runs of the median "
          "of %d rounds of %d calls" % (TOKENS, VOCAB, args.runs,
                                        args.rounds, args.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
