"""Where the compile time of the training function goes, and what cuts it.

Run from the repository root (several minutes: every lever compiles from a
cold cache)::

    .venv/bin/python benchmarks/compile_time.py
    .venv/bin/python benchmarks/compile_time.py --levers default,O1 --units 256

The function is the original question's training step (one-hot input (1, T,
V) -> LSTMLayer(H, grad_clipping=5) -> SliceLayer -> softmax DenseLayer,
summed NLL, Adagrad updates), float32.  For each lever, two subprocesses
share a fresh ``base_compiledir`` in a temporary directory:

* ``cold``: empty cache -- includes Theano's own one-off modules
  (``lazylinker_ext``, ``cutils_ext``) and lstm_accum's scan loop, which a
  machine compiles once for every model (reported apart as "one-off");
* ``warm``: the same function again, everything cached.

Each reports: import, graph building, Theano's optimizer, C++ compilation
(number of modules and seconds in g++), the rest of linking, and the run
time of one training step (median) so a faster compile is weighed against a
slower step.  Levers (``THEANO_FLAGS`` added for that lever only):

``default``  lstm_accum's defaults (g++ -O3, the ``fast_run`` optimizer)
``O1``       ``gcc.cxxflags=-O1``
``O0``       ``gcc.cxxflags=-O0``
``nofusion`` ``optimizer_excluding=fusion`` (no fused elementwise kernels)
``O1nofusion`` both
``cachefix`` the two Theano cache fixes below (installed by
             lstm_accum.backend at import); all other levers run without
             them

Theano 1.0.5 on Python 3 recompiles some modules in *every* process, so a
"warm" compile is not warm: (1) ops whose ``__props__`` is empty (``Alloc``,
``ScalarFromTensor``, the crossentropy ops...) get an empty "version" in the
cache key (``CLinker.cmodule_key_`` treats the empty props tuple as
"unversioned"); (2) ``COp.c_code_cache_version`` (``DimShuffle``...) uses
``hash()`` of its C source, which Python 3 randomises per process.  Each
such module costs ~1 s of g++ and takes Theano's compile lock, which on a
shared machine means waiting behind other processes' compilations.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

VOCAB, UNITS, LENGTH = 2000, 256, 20
REPEATS = 11
LEVERS = {
    "default": "",
    "O1": "gcc.cxxflags=-O1",
    "O0": "gcc.cxxflags=-O0",
    "nofusion": "optimizer_excluding=fusion",
    "O1nofusion": "gcc.cxxflags=-O1,optimizer_excluding=fusion",
    "cachefix": "",
}


def install_cache_fixes():
    """Theano's compile-cache fixes, as ``lstm_accum.backend`` installs them
    at import (property-less ops versioned, COp versions from sha256)."""
    from lstm_accum.backend import patches, theano
    patches.version_ops_without_props(theano)
    patches.stable_cop_version(theano)
    return True


def remove_cache_fixes():
    """Undo :func:`install_cache_fixes`: Theano 1.0.5's own behaviour."""
    from lstm_accum.backend import patches
    from theano.gof import op
    wrapped = getattr(op.COp.c_code_cache_version, "__wrapped__", None)
    if wrapped is not None:
        op.COp.c_code_cache_version = wrapped
    pending = [op.PureOp]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            pending.append(sub)
            if isinstance(sub.__dict__.get("__props__"), patches.EmptyProps):
                sub.__props__ = ()


ONE_OFF = ("lazylinker_ext", "cutils_ext", "scan_perform")


def worker(vocab, units, repeats, cachefix, out):
    """Compile and time in this process (THEANO_FLAGS set); print JSON."""
    start = time.time()
    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    from lstm_accum.backend import lasagne, theano
    from lstm_accum.backend import scan_loop as scan_ext
    import scan_loop
    from theano.compile.profiling import ProfileStats
    from theano.gof import cmodule
    result = {"import_s": time.time() - start}
    if cachefix:
        install_cache_fixes()
    else:
        remove_cache_fixes()

    compiles = []
    original = cmodule.GCC_compiler.compile_str

    def timed_compile_str(module_name, *args, **kwargs):
        t0 = time.time()
        try:
            return original(module_name, *args, **kwargs)
        finally:
            compiles.append((module_name, time.time() - t0))

    cmodule.GCC_compiler.compile_str = staticmethod(timed_compile_str)
    # Build the scan loop now, so its (one-off) build is not counted below.
    t0 = time.time()
    result["scan_loop"] = scan_ext.status()
    result["scan_build_s"] = time.time() - t0

    t0 = time.time()
    lasagne.random.set_rng(np.random.RandomState(0))
    inputs, loss, params, grads = scan_loop.question_network(vocab, units)
    updates = lasagne.updates.adagrad(grads, params, learning_rate=0.005)
    result["graph_s"] = time.time() - t0

    profile = ProfileStats(atexit_print=False)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    step = theano.function(inputs, loss, updates=updates, profile=profile)
    result["function_s"] = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of g++ (child processes): unlike wall time, hardly
    # affected by other processes competing for the cores.
    result["gxx_cpu_s"] = (after.ru_utime + after.ru_stime
                           - children.ru_utime - children.ru_stime)
    result["optimizer_s"] = profile.optimizer_time
    result["linker_s"] = profile.linker_time
    one_off = [t for name, t in compiles if name in ONE_OFF]
    models = [t for name, t in compiles if name not in ONE_OFF]
    result["one_off_gxx_s"] = sum(one_off)
    result["modules"] = len(models)
    result["gxx_s"] = sum(models)
    result["gxx_max_s"] = max(models) if models else 0.0

    X, y = scan_loop.sentence(np.random.RandomState(1), vocab, LENGTH)
    step(X, y)
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step(X, y)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    result["step_ms"] = 1e3 * float(np.median(times))
    result["step_cpu_ms"] = 1e3 * float(np.median(cpu))
    np.savez(out, *[p.get_value() for p in params])
    print(json.dumps(result))


def compare_fusion(vocab, units, repeats):
    """Run time of the step with and without elementwise fusion.

    Both functions are compiled in this process (``Mode.excluding``) and
    called alternately, so other processes' load affects both alike; their
    loss and gradients on the same parameters are compared.
    """
    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    from lstm_accum.backend import lasagne, theano
    import scan_loop
    lasagne.random.set_rng(np.random.RandomState(0))
    inputs, loss, params, grads = scan_loop.question_network(vocab, units)
    mode = theano.compile.get_default_mode()
    modes = (("fusion", mode), ("nofusion", mode.excluding("fusion")))
    X, y = scan_loop.sentence(np.random.RandomState(1), vocab, LENGTH)
    outs = {name: theano.function(inputs, [loss] + grads, mode=m)(X, y)
            for name, m in modes}
    diff = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
               for a, b in zip(outs["nofusion"], outs["fusion"]))
    # Timed: the training step (Adagrad's elementwise updates are where
    # fusion could matter most).  Both update the same parameters.
    updates = lasagne.updates.adagrad(grads, params, learning_rate=0.005)
    fns = {name: theano.function(inputs, loss, updates=updates, mode=m)
           for name, m in modes}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn(X, y)
            times[name].append((time.perf_counter() - t0,
                                time.process_time() - c0))
    print("training step, V=%d H=%d T=%d, median of %d (wall ms, cpu ms);"
          " max rel. difference of loss and gradients: %.1e"
          % (vocab, units, LENGTH, repeats, diff))
    for name, t in times.items():
        t = np.array(t)
        print("%-9s %8.2f %8.2f" % (name, 1e3 * np.median(t[:, 0]),
                                     1e3 * np.median(t[:, 1])))


def run(lever, compiledir, vocab, units, repeats, out):
    env = dict(os.environ)
    # One BLAS thread: the step's CPU time then measures the code, not
    # OpenBLAS's spinning threads.
    env["OPENBLAS_NUM_THREADS"] = "1"
    flags = [f for f in env.get("THEANO_FLAGS", "").split(",") if f]
    flags += ["base_compiledir=" + compiledir]
    if LEVERS[lever]:
        flags.append(LEVERS[lever])
    env["THEANO_FLAGS"] = ",".join(flags)
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker",
         "--vocab", str(vocab), "--units", str(units),
         "--repeats", str(repeats), "--out", out]
        + (["--cachefix"] if lever == "cachefix" else []),
        env=env, stdout=subprocess.PIPE, universal_newlines=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levers", default=",".join(LEVERS))
    parser.add_argument("--vocab", type=int, default=VOCAB)
    parser.add_argument("--units", type=int, default=UNITS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--worker", action="store_true",
                        help=argparse.SUPPRESS)
    parser.add_argument("--cachefix", action="store_true",
                        help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--fusion", action="store_true",
                        help="only compare the run time and results with "
                             "and without elementwise fusion, in-process")
    args = parser.parse_args(argv)
    if args.fusion:
        compare_fusion(args.vocab, args.units, args.repeats)
        return
    if args.worker:
        worker(args.vocab, args.units, args.repeats, args.cachefix, args.out)
        return
    print("compile time of the training step, V=%d H=%d (step timed at T=%d,"
          " median of %d, OPENBLAS_NUM_THREADS=1); seconds, wall unless "
          "'cpu'" % (args.vocab, args.units, LENGTH, args.repeats))
    print("%-11s %-5s %7s %7s %9s %9s %8s %8s %8s %8s %8s %8s %8s %9s" % (
        "lever", "cache", "import", "one-off", "function", "optimize",
        "modules", "g++", "g++ cpu", "g++ max", "link", "step ms",
        "step cpu", "params vs"))
    reference = None
    for lever in args.levers.split(","):
        with tempfile.TemporaryDirectory(prefix="theano-cold-") as tmp:
            for cache in ("cold", "warm", "warm"):
                out = os.path.join(tmp, "params.npz")
                r = run(lever, tmp, args.vocab, args.units, args.repeats,
                        out)
                # Same seeds, same steps: the parameters must agree with
                # the first lever's up to float32 rounding.
                with np.load(out, allow_pickle=False) as f:
                    values = [f["arr_%d" % i] for i in range(len(f.files))]
                if reference is None:
                    reference = values
                diff = max(float(np.abs(v - w).max() / np.abs(w).max())
                           for v, w in zip(values, reference))
                print("%-11s %-5s %7.1f %7.1f %9.1f %9.1f %8d %8.1f %8.1f "
                      "%8.1f %8.1f %8.2f %8.2f %9.1e" % (
                          lever, cache, r["import_s"],
                          r["one_off_gxx_s"] + r["scan_build_s"],
                          r["function_s"], r["optimizer_s"], r["modules"],
                          r["gxx_s"], r["gxx_cpu_s"], r["gxx_max_s"],
                          r["linker_s"], r["step_ms"], r["step_cpu_ms"],
                          diff))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
