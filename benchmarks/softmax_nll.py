"""Softmax cross-entropy of the output layer: Theano's operation vs ours.

Run from the repository root::

    .venv/bin/python benchmarks/softmax_nll.py
    .venv/bin/python benchmarks/softmax_nll.py --rows 700,4000 --repeats 41

The non-GEMM part of the output layer of a language model, float32, V=2000
classes, N rows (tokens per call; ~700 in bucketed training at H=256):

* ``theano``: ``T.nnet.crossentropy_softmax_argmax_1hot_with_bias(x, b, y)``
  (what ``lstm_accum.models.language_model`` uses), its gradient
  ``CrossentropySoftmax1HotWithBiasDx`` and the ``Sum`` over rows for the
  bias;
* ``ours``: :func:`lstm_accum.ops.softmax_nll.softmax_nll` (one vectorised pass
  each way, the bias gradient summed in the same pass; for the gradient of
  the sum, the forward and the gradient in one pass, ``SoftmaxNLLAndGrad``,
  whose time against our two passes (the rewrite left out) is printed
  under each ``fwd+bwd`` row).

Two functions per variant, compiled once: ``forward`` returns the losses,
``fwd+bwd`` returns the gradients of ``sum(nll)`` with respect to the logits
and the bias.  Calls of the variants alternate, so the load of other
processes on the machine affects both alike; the table gives the median
time (and the fastest call) in ms, ns per element of the (N, V) matrix, and
the ratio theano / ours of the medians.  The outputs of the two variants are
compared once (max relative difference).  One thread
(``OPENBLAS_NUM_THREADS=1``, ``OMP_NUM_THREADS=1``, set unless already
set; neither operation calls BLAS).  Compile time is excluded.
"""
import argparse
import os
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lstm_accum.backend import T, theano  # noqa: E402
from lstm_accum.ops.softmax_nll import WITH_GRAD, softmax_nll  # noqa: E402

VOCAB = 2000          # classes V (the vocabulary)
ROWS = (700, 4000)    # tokens per call N
REPEATS = 31          # timed calls per variant and size; the median is kept
DTYPE = "float32"
SEED = 0


def compile_variants(dtype=DTYPE):
    """{(variant, kind): compiled function (logits, b, y) -> outputs}."""
    x = T.matrix("logits", dtype=dtype)
    b = T.vector("b", dtype=dtype)
    y = T.ivector("y")
    losses = {
        "theano": T.nnet.crossentropy_softmax_argmax_1hot_with_bias(
            x, b, y)[0],
        "ours": softmax_nll(x, b, y),
    }
    fns = {}
    for variant, nll in losses.items():
        fns[variant, "forward"] = theano.function([x, b, y], nll)
        fns[variant, "fwd+bwd"] = theano.function(
            [x, b, y], theano.grad(nll.sum(), [x, b]))
    fns["ours", "two passes"] = theano.function(
        [x, b, y], theano.grad(losses["ours"].sum(), [x, b]),
        mode=theano.compile.mode.get_default_mode().excluding(WITH_GRAD))
    return fns


def make_data(rows, vocab, rng, dtype=DTYPE):
    """Logits like an output layer's: a Zipf bias plus noise; Zipf targets."""
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    logits = (rng.normal(0, 2, (rows, vocab)) + np.log(p)).astype(dtype)
    b = rng.normal(0, 0.5, vocab).astype(dtype)
    y = rng.choice(vocab, rows, p=p).astype("int32")
    return logits, b, y


def _max_rel_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300))


def measure(fns, rows, vocab, repeats, seed=SEED, dtype=DTYPE):
    """Rows of the table for one N: [(kind, times theano, times ours,
    max rel diff)]."""
    args = make_data(rows, vocab, np.random.RandomState(seed), dtype)
    out = []
    for kind in ("forward", "fwd+bwd", "two passes"):
        pair = [fns["theano" if kind != "two passes" else "ours", kind],
                fns["ours", kind if kind != "two passes" else "fwd+bwd"]]
        want, got = pair[0](*args), pair[1](*args)   # warm-up + check
        if kind == "forward":
            want, got = [want], [got]
        diff = max(_max_rel_diff(w, g) for w, g in zip(want, got))
        times = [[], []]
        for _ in range(repeats):
            for i, fn in enumerate(pair):
                t0 = time.perf_counter()
                fn(*args)
                times[i].append(time.perf_counter() - t0)
        out.append((kind, times[0], times[1], diff))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=",".join(map(str, ROWS)),
                        help="comma-separated N (default %(default)s)")
    parser.add_argument("--vocab", type=int, default=VOCAB,
                        help="classes V (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help="timed calls per variant (default %(default)s)")
    parser.add_argument("--dtype", default=DTYPE,
                        choices=("float32", "float64"),
                        help="(default %(default)s)")
    args = parser.parse_args(argv)
    rows = [int(r) for r in args.rows.split(",")]

    t0 = time.perf_counter()
    fns = compile_variants(args.dtype)
    print("compiled in %.1f s; %s, V=%d, %d calls per variant (interleaved), "
          "OPENBLAS_NUM_THREADS=%s" % (
              time.perf_counter() - t0, args.dtype, args.vocab, args.repeats,
              os.environ["OPENBLAS_NUM_THREADS"]))
    header = ("%6s  %-8s  %17s  %17s  %9s  %8s  %8s" % (
        "N", "pass", "theano ms (min)", "ours ms (min)", "ns/el t|o",
        "ratio", "max diff"))
    print(header)
    print("-" * len(header))
    for n in rows:
        for kind, t_theano, t_ours, diff in measure(
                fns, n, args.vocab, args.repeats, dtype=args.dtype):
            med_t, med_o = np.median(t_theano), np.median(t_ours)
            if kind == "two passes":
                print("%6s  ours in two passes %.2f ms (%.2f), in one %.2f "
                      "(%.2f): %.2fx, max diff %.1e" % (
                          "", 1e3 * med_t, 1e3 * min(t_theano), 1e3 * med_o,
                          1e3 * min(t_ours), med_t / med_o, diff))
                continue
            per_el = 1e9 / (n * args.vocab)
            print("%6d  %-8s  %8.2f (%6.2f)  %8.2f (%6.2f)  %4.1f|%4.1f  "
                  "%7.1fx  %8.1e" % (
                      n, kind, 1e3 * med_t, 1e3 * min(t_theano),
                      1e3 * med_o, 1e3 * min(t_ours), med_t * per_el,
                      med_o * per_el, med_t / med_o, diff))


if __name__ == "__main__":
    main()
