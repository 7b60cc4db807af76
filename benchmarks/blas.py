"""Which BLAS should Theano use?  GEMM and the LSTM training step, side by side.

Run from the repository root (takes a few minutes the first time: each BLAS
setting compiles its own Theano modules)::

    .venv/bin/python benchmarks/blas.py
    .venv/bin/python benchmarks/blas.py --configs numpy,numpy+SkylakeX

Each configuration runs in its own subprocess with ``THEANO_FLAGS=
blas.ldflags=...`` and, for some, ``OPENBLAS_CORETYPE`` (set for that
subprocess only; it selects OpenBLAS's kernels at load time):

``numpy``
    ``blas.ldflags=`` (empty): Theano's NumPy C-API fallback, i.e. NumPy's
    bundled OpenBLAS through ``PyArray_MatrixProduct2`` plus NumPy loops
    for the ``alpha``/``beta`` parts of GEMM.  lstm_accum's default.
``scipy``
    the OpenBLAS inside the SciPy wheel (32-bit ints, standard symbols),
    linked with ``-L<scipy.libs> -l<file> -Xlinker -rpath=<scipy.libs>``
    (no commas: ``THEANO_FLAGS`` splits on them).
``debian``
    Debian's ``libopenblas-dev`` (``-lopenblas``); skipped when absent.

``+CORE`` appends ``OPENBLAS_CORETYPE=CORE``.  Measured: float32 GEMM
through NumPy and through a compiled Theano ``dot`` (1024^3, and the
one-hot input product of the LSTM: (T, V) x (V, 4H)), and the LSTM training
step of the original question's network (forward + backward + Adagrad, one
sentence, V=2000, H=256, T=20) in ms and in nominal GFLOP/s
(6 T (4VH + 4H^2 + HV) flops).  Results are checked: GEMM against float64
NumPy, and the LSTM parameters after the timed steps against the first
configuration.  GEMM GFLOP/s are from the fastest call (least disturbed
by other processes on a shared machine), step times are medians (and the
fastest call).  Set ``OPENBLAS_NUM_THREADS`` to compare per-core kernels.
"""
import argparse
import ctypes
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

VOCAB, UNITS, LENGTH = 2000, 256, 20   # the LSTM size
REPEATS = 15                           # timed calls; the median is kept
GEMM_N = 1024                          # square GEMM size
DEFAULT_CONFIGS = ("numpy", "numpy+SkylakeX", "numpy+Haswell", "scipy",
                   "scipy+SkylakeX", "debian", "debian+Haswell")
DEBIAN_LIB = "/usr/lib/x86_64-linux-gnu/libopenblas.so"


def scipy_openblas():
    """Path of the OpenBLAS shipped inside the SciPy wheel, or None."""
    import importlib.util
    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = os.path.join(os.path.dirname(spec.submodule_search_locations[0]),
                        "scipy.libs")
    found = sorted(glob.glob(os.path.join(libs, "libopenblas*.so")))
    return found[0] if found else None


def ldflags_for(blas):
    """``blas.ldflags`` for 'numpy', 'scipy' or 'debian' (None: absent)."""
    if blas == "numpy":
        return ""
    if blas == "scipy":
        path = scipy_openblas()
        if path is None:
            return None
        directory, name = os.path.split(path)
        # -lNAME finds libNAME.so: the file name without 'lib' and '.so'.
        # -Xlinker, not -Wl,-rpath,DIR: THEANO_FLAGS splits on commas.
        return "-L%s -l%s -Xlinker -rpath=%s" % (
            directory, name[3:-3], directory)
    if blas == "debian":
        return "-lopenblas" if os.path.exists(DEBIAN_LIB) else None
    raise ValueError("unknown BLAS %r: expected numpy, scipy or debian"
                     % blas)


def _corename(path, suffix=""):
    try:
        lib = ctypes.CDLL(path)
        fn = getattr(lib, "openblas_get_corename" + suffix)
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_char_p
    return fn().decode()


def _times(fn, repeats):
    """(median, min) seconds per call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), float(min(times))


def _best(fn, repeats):
    # Throughput: the fastest call, the one least disturbed by other
    # processes on a shared machine.
    return _times(fn, repeats)[1]


def worker(blas, repeats, out):
    """Measure in this process (THEANO_FLAGS already set); print JSON."""
    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    from lstm_accum.backend import T, floatX, lasagne, theano
    import scan_loop

    result = {"ldflags": theano.config.blas.ldflags,
              "threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}
    numpy_lib = glob.glob(os.path.join(os.path.dirname(np.__file__),
                                       os.pardir, "numpy.libs",
                                       "libopenblas*.so"))
    result["numpy_core"] = (_corename(numpy_lib[0], "64_") if numpy_lib
                            else None)
    linked = {"scipy": scipy_openblas(), "debian": DEBIAN_LIB}.get(blas)
    result["linked_core"] = _corename(linked) if linked else None

    rng = np.random.RandomState(0)
    a = rng.uniform(-1, 1, (GEMM_N, GEMM_N)).astype(floatX)
    b = rng.uniform(-1, 1, (GEMM_N, GEMM_N)).astype(floatX)
    flops = 2.0 * GEMM_N ** 3
    result["numpy_gemm_gflops"] = flops / _best(lambda: a.dot(b),
                                                repeats) / 1e9
    A, B = T.matrix("A"), T.matrix("B")
    dot = theano.function([A, B], T.dot(A, B))
    result["theano_gemm_gflops"] = flops / _best(lambda: dot(a, b),
                                                 repeats) / 1e9
    exact = a.astype("float64").dot(b.astype("float64"))
    result["theano_gemm_rel_err"] = float(
        np.abs(dot(a, b) - exact).max() / np.abs(exact).max())
    x = rng.uniform(-1, 1, (LENGTH, VOCAB)).astype(floatX)
    w = rng.uniform(-1, 1, (VOCAB, 4 * UNITS)).astype(floatX)
    result["theano_input_gemm_gflops"] = (
        2.0 * LENGTH * VOCAB * 4 * UNITS
        / _best(lambda: dot(x, w), repeats) / 1e9)

    lasagne.random.set_rng(np.random.RandomState(1))
    inputs, loss, params, grads = scan_loop.question_network(VOCAB, UNITS)
    updates = lasagne.updates.adagrad(grads, params, learning_rate=0.005)
    start = time.time()
    step = theano.function(inputs, loss, updates=updates)
    result["compile_s"] = time.time() - start
    X, y = scan_loop.sentence(np.random.RandomState(2), VOCAB, LENGTH)
    seconds, fastest = _times(lambda: step(X, y), repeats)
    result["step_ms"] = 1e3 * seconds
    result["step_min_ms"] = 1e3 * fastest
    H, V, N = UNITS, VOCAB, LENGTH
    result["step_gflops"] = 6.0 * N * (4 * V * H + 4 * H * H + H * V) \
        / seconds / 1e9
    np.savez(out, *[p.get_value() for p in params])
    print(json.dumps(result))


def run(config, repeats, out):
    """Run one configuration in a subprocess; return its result or None."""
    blas, _, core = config.partition("+")
    ldflags = ldflags_for(blas)
    if ldflags is None:
        return None
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if core:
        env["OPENBLAS_CORETYPE"] = core
    flags = [f for f in env.get("THEANO_FLAGS", "").split(",")
             if f and not f.strip().startswith("blas.ldflags")]
    env["THEANO_FLAGS"] = ",".join(flags + ["blas.ldflags=" + ldflags])
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", blas,
         "--repeats", str(repeats), "--out", out],
        env=env, stdout=subprocess.PIPE, universal_newlines=True)
    if proc.returncode != 0:
        return {"error": "exit status %d" % proc.returncode}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                        help="comma-separated, e.g. numpy,scipy+SkylakeX")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.repeats, args.out)
        return
    print("BLAS for Theano: float32, GEMM %d^3; LSTM step V=%d H=%d T=%d "
          "(fwd+bwd+adagrad), median of %d, OPENBLAS_NUM_THREADS=%s"
          % (GEMM_N, VOCAB, UNITS, LENGTH, args.repeats,
             os.environ.get("OPENBLAS_NUM_THREADS", "default")))
    header = ("%-16s %-11s %-11s %9s %9s %9s %9s %9s %9s %10s %9s" % (
        "config", "numpy core", "linked", "np GF/s", "th GF/s", "in GF/s",
        "step ms", "step min", "step GF/s", "params vs", "gemm err"))
    print(header)
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, config in enumerate(args.configs.split(",")):
            out = os.path.join(tmp, "%d.npz" % i)
            r = run(config, args.repeats, out)
            if r is None:
                print("%-16s (not installed)" % config)
                continue
            if "error" in r:
                print("%-16s failed: %s" % (config, r["error"]))
                continue
            with np.load(out, allow_pickle=False) as f:
                values = [f[k] for k in sorted(f.files,
                                               key=lambda k: int(k[4:]))]
            if reference is None:
                reference, diff = values, 0.0
            else:
                diff = max(float(np.abs(v - w).max() / np.abs(w).max())
                           for v, w in zip(values, reference))
            print("%-16s %-11s %-11s %9.1f %9.1f %9.1f %9.2f %9.2f %9.1f "
                  "%10.1e %9.1e" % (
                      config, r["numpy_core"], r["linked_core"] or "-",
                      r["numpy_gemm_gflops"], r["theano_gemm_gflops"],
                      r["theano_input_gemm_gflops"], r["step_ms"],
                      r["step_min_ms"], r["step_gflops"], diff,
                      r["theano_gemm_rel_err"]))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
