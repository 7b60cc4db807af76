"""Every training path side by side: the question's approach against ours.

Run from the repository root::

    .venv/bin/python benchmarks/paths.py                 # full table (<15 min)
    .venv/bin/python benchmarks/paths.py --quick         # ~2 min
    .venv/bin/python benchmarks/paths.py --units 256 --cold none
    .venv/bin/python benchmarks/paths.py --profile benchmarks/profile_h256.txt

The model is the original question's LSTM language model, float32, built by
:func:`lstm_accum.models.build_model` (V=2000, one LSTM layer of H units,
softmax output), on the synthetic corpus of :mod:`synthetic` (Zipf words,
English-like lengths, fixed seed).  One update = Adagrad (learning rate
0.005) on the gradient averaged over a window of N sentences
(``normalize='samples'``, the question's choice).

Paths (``--paths``, comma-separated names or ``all``):

``question``       (a) the question's approach: a compiled function returns
                   each sentence's gradients to numpy, summed there; a second
                   compiled function takes the averaged gradients as inputs
                   and applies Adagrad.
``sample-onehot``  (b) :class:`~lstm_accum.GradientAccumulator`, one sentence
                   per call, one-hot input (the question's network).
``sample-ids``     (c) the same with word-id input (row lookup).
``bucket-onehot``  (d) equal-length minibatches of up to ``--batch-size``
``bucket-ids``         sentences, no mask; one-hot or id input.
``mask-ids``       (e) padded minibatches with a mask, id input (length-sorted
                   within pools of ``--mask-pool`` batches).
``mask-onehot``    (e') the same with one-hot input (not in ``all``).

How it is measured:

* every path runs in its own worker process (so its peak RSS is its own),
  all workers alive at once; windows are timed round-robin across paths,
  rotating the order, so load from other processes affects all paths alike;
* a window is N sentences (bucketed/masked paths: whole minibatches from the
  epoch plan until at least N sentences, as the trainer does); the window's
  arrays are built before the clock starts (data preparation excluded); the
  time covers every ``accumulate`` call and the ``apply``;
* tokens/s counts real target tokens (words + ``</s>``; padding excluded):
  the median over timed windows, with min..max; one untimed warm-up window
  per path first;
* FLOPs per target token, forward + backward, multiply-add = 2 (see
  :func:`flops_per_token`): one-hot input ``22*V*H + 24*H^2``; id input
  drops the input product (a row lookup): ``6*V*H + 24*H^2``.  The
  fraction of peak divides the achieved GFLOP/s by the float32 GEMM
  GFLOP/s of ``numpy.dot`` on 1024x1024 matrices measured in the same run;
* compile time (building the model and its compiled functions) is
  excluded from throughput: *warm* is the worker's own compile with the
  default Theano cache, *cold* a separate process with a fresh temporary
  ``base_compiledir`` (``--cold``).  Scan's compiled loop
  (:mod:`lstm_accum.backend.scan_loop`) is built before the clock starts in both.
"""
import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

__all__ = ["PATHS", "DEFAULT_PATHS", "KEY_PATHS", "flops_per_token",
           "param_count", "gemm_gflops", "run", "main"]

# Defaults: the sizes issue 6 names.
VOCAB = 2000          # V, special tokens included
UNITS = (256, 1024)   # H values measured
WINDOWS = (64, 256)   # N, sentences per update
BATCH_SIZE = 32       # sentences per bucketed / masked minibatch
MASK_POOL = 4         # mask: sort by length within pools of 4 batches
SENTENCES = 10000     # synthetic corpus size (bucket fill needs many)
REPEATS = 5           # timed windows per (path, N) at most
MIN_REPEATS = 2       # ... and at least
BUDGET = 12.0         # seconds of timed windows per (path, N, H) cell
LR = 0.005            # Adagrad learning rate (the question's)
SEED = 1234           # corpus, plans and weights
MEMORY_SIZE = dict(vocab=2000, units=4096, window=1024)  # the question's

#: name -> (input kind, batching, approach, LSTM impl); approach 'question'
#: or 'accum'; impl as ``build_model(impl=...)``: the question's network is
#: Lasagne's scan LSTMLayer, ours the fused operation where it applies.
PATHS = {
    "question": ("onehot", "sample", "question", "scan"),
    "sample-onehot": ("onehot", "sample", "accum", "auto"),
    "sample-ids": ("ids", "sample", "accum", "auto"),
    "bucket-onehot": ("onehot", "bucket", "accum", "auto"),
    "bucket-ids": ("ids", "bucket", "accum", "auto"),
    "mask-ids": ("ids", "mask", "accum", "auto"),
    "mask-onehot": ("onehot", "mask", "accum", "auto"),
    "sample-onehot-scan": ("onehot", "sample", "accum", "scan"),
    "bucket-ids-scan": ("ids", "bucket", "accum", "scan"),
}
LABELS = {"question": "a", "sample-onehot": "b", "sample-ids": "c",
          "bucket-onehot": "d", "bucket-ids": "d", "mask-ids": "e",
          "mask-onehot": "e", "sample-onehot-scan": "b'",
          "bucket-ids-scan": "d'"}
DEFAULT_PATHS = ("question", "sample-onehot", "sample-ids", "bucket-onehot",
                 "bucket-ids", "mask-ids")
#: measured cold with ``--cold key``: the baseline, the question's network
#: on the device, the fastest path.
KEY_PATHS = ("question", "sample-onehot", "bucket-ids")


# ---------------------------------------------------------------------------
# arithmetic
def param_count(vocab, units):
    """Trainable parameters of the model (Lasagne 0.1 LSTM defaults).

    LSTM: 4 gates x (input weights V*H + recurrent H*H + bias H) plus 3
    peephole vectors H (``hid_init``/``cell_init`` are not trained); softmax
    layer: H*V + V.
    """
    return 4 * (vocab * units + units * units + units) + 3 * units + \
        units * vocab + vocab


def flops_per_token(vocab, units, input_kind):
    """Forward + backward FLOPs per target token (multiply-add = 2 FLOPs).

    Forward: input product ``2*V*4H`` (one-hot only), recurrent product
    ``2*H*4H``, softmax layer ``2*H*V``.  Backward: each product twice
    (gradient of its weights and of its input), except the input product,
    whose input (the data) needs no gradient.  Element-wise work (gates,
    softmax) is not counted.
    """
    V, H = vocab, units
    recurrent = 3 * 2 * H * 4 * H
    output = 3 * 2 * H * V
    inp = 2 * 2 * V * 4 * H if input_kind == "onehot" else 0
    return inp + recurrent + output


def _gemm_products(size):
    """The float32 products of ``size x size`` matrices that measure the
    peak: ``numpy.dot`` (NumPy's OpenBLAS) and, where the team runs, our
    ``TeamDot`` (the team's BLAS, MKL when installed)."""
    from lstm_accum.backend import theano, T
    from lstm_accum.ops import TeamDot, team_unavailable
    rng = np.random.RandomState(0)
    a = rng.rand(size, size).astype(np.float32)
    b = rng.rand(size, size).astype(np.float32)
    products = [lambda: np.dot(a, b)]
    if team_unavailable() is None:
        x, y = T.fmatrix(), T.fmatrix()
        team = theano.function([x, y], TeamDot()(x, y))
        products.append(lambda: team(a, b))
    return products


def _best_product_seconds(products, repeats):
    """The shortest time of one product: each product run once untimed,
    then `repeats` times timed."""
    best = np.inf
    for product in products:
        product()
        for _ in range(repeats):
            t0 = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - t0)
    return best


def gemm_gflops(size=1024, repeats=15):
    """float32 GEMM GFLOP/s on ``size x size`` matrices: the better of
    ``numpy.dot`` (NumPy's OpenBLAS) and our ``TeamDot`` (the team's BLAS,
    MKL when installed), each the best of `repeats` -- the machine's
    attainable peak through the BLAS libraries we have."""
    best = _best_product_seconds(_gemm_products(size), repeats)
    return 2.0 * size ** 3 / best / 1e9


#: The pseudo-path whose worker times the peak's products instead of
#: training (:func:`_gemm_worker`): measured in turn with the paths, it
#: says what the machine gave at that moment.
GEMM_WORKER = "gemm"
#: Timed runs of each product per window asked of the GEMM worker, and at
#: most per block of windows (about a second).
GEMM_PER_WINDOW = 4
GEMM_PER_BLOCK = 32


def _gemm_worker(send, size=1024):
    """Serve :class:`Worker`'s protocol with the peak's products: for a
    block of `count` windows, GEMM_PER_WINDOW * count timed runs of each
    product, at most GEMM_PER_BLOCK; the reply's ``tokens / seconds`` is
    the best run's FLOP/s."""
    t0 = time.perf_counter()
    from lstm_accum.backend import describe
    products = _gemm_products(size)
    send(ready=True, compile_s=time.perf_counter() - t0, import_s=0.0,
         describe=describe(), params=0, rss_kb=_rss_kb())
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "exit":
            send(rss_kb=_rss_kb())
            return
        best = _best_product_seconds(products, min(
            GEMM_PER_WINDOW * cmd.get("count", 1), GEMM_PER_BLOCK))
        send(seconds=best, tokens=2.0 * size ** 3, samples=0, steps=0,
             calls=0, windows=cmd.get("count", 1), rss_kb=_rss_kb())


def _gemm_in_subprocess(env_extra):
    env = dict(os.environ, **env_extra)
    code = ("import sys; sys.path.insert(0, %r); import paths; "
            "print(paths.gemm_gflops())" % HERE)
    out = subprocess.run([sys.executable, "-c", code], env=env,
                         capture_output=True, text=True, timeout=120)
    return float(out.stdout.strip()) if out.returncode == 0 else None


def measure_gemm():
    """GEMM GFLOP/s as configured, and with ``OPENBLAS_CORETYPE=SkylakeX``
    when the CPU has AVX-512 and the user did not choose a core type (the
    bundled OpenBLAS 0.3.20/0.3.21 misdetects recent CPUs as generic)."""
    from lstm_accum.backend.openblas import cpu_flags
    out = {"as_configured": gemm_gflops(), "coretype": os.environ.get(
        "OPENBLAS_CORETYPE")}
    if "OPENBLAS_CORETYPE" not in os.environ and "avx512f" in cpu_flags():
        out["skylakex"] = _gemm_in_subprocess(
            {"OPENBLAS_CORETYPE": "SkylakeX"})
    out["peak"] = max(v for k, v in out.items()
                      if k in ("as_configured", "skylakex") and v)
    return out


def _rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ---------------------------------------------------------------------------
# the worker: one path, in its own process
class _Question(object):
    """The question's approach: gradients to numpy, summed there; Adagrad
    from a second function taking the averaged gradients as inputs."""

    def __init__(self, model, profile=False):
        from lstm_accum.backend import theano, T, lasagne
        params = model.params
        self.grad_fn = theano.function(
            model.inputs, theano.grad(model.loss(), params),
            name="question/grads", profile=profile or None)
        grads_in = [T.TensorType(p.dtype, p.broadcastable)(
            "grad/" + p.name) for p in params]
        self.apply_fn = theano.function(
            grads_in, [], name="question/adagrad", profile=profile or None,
            updates=lasagne.updates.adagrad(grads_in, params,
                                            learning_rate=LR))
        self.sums, self.count = None, 0

    def accumulate(self, *arrays):
        grads = self.grad_fn(*arrays)
        if self.sums is None:
            self.sums = [np.array(g) for g in grads]
        else:
            for s, g in zip(self.sums, grads):
                s += g
        self.count += 1

    def apply(self):
        self.apply_fn(*[s / s.dtype.type(self.count) for s in self.sums])
        self.sums, self.count = None, 0

    def functions(self):
        return [self.grad_fn, self.apply_fn]


class _Accum(object):
    def __init__(self, model, profile=False):
        from lstm_accum.backend import theano, lasagne
        from lstm_accum.accumulation.accumulator import GradientAccumulator
        saved = theano.config.profile
        theano.config.profile = bool(profile)
        try:
            self.acc = GradientAccumulator(
                model.loss(), model.params, model.inputs, normalize="samples",
                update=lasagne.updates.adagrad, learning_rate=LR,
                num_tokens=model.num_tokens(), vocab_size=model.vocab_size)
        finally:
            theano.config.profile = saved
        self.accumulate = self.acc.accumulate
        self.apply = self.acc.apply

    def functions(self):
        return [self.acc.accumulate_fn, self.acc.apply_fn]


class _Feeder(object):
    """Windows of the epoch plans of one batching, epoch after epoch."""

    def __init__(self, corpus, input_kind, batching, vocab, batch_size,
                 mask_pool, seed):
        self.corpus, self.input_kind, self.batching = corpus, input_kind, \
            batching
        self.vocab, self.batch_size, self.seed = vocab, batch_size, seed
        self.mask_pool = mask_pool if batching == "mask" else None
        self.epoch, self.plan, self.pos = -1, [], 0

    def _next_indices(self):
        from lstm_accum.data.batches import plan_epoch
        if self.pos >= len(self.plan):
            self.epoch += 1
            self.plan = plan_epoch(self.corpus, self.batching,
                                   self.batch_size, self.seed, self.epoch,
                                   pool_size=self.mask_pool)
            self.pos = 0
        self.pos += 1
        return self.plan[self.pos - 1]

    def window(self, n):
        """Arrays of minibatches until >= n sentences; (batches, samples,
        real target tokens, computed time steps incl. padding)."""
        from lstm_accum.data.batches import make_batch
        batches, samples, tokens, steps = [], 0, 0, 0
        while samples < n:
            idx = self._next_indices()
            arrays = make_batch(self.corpus, idx, self.batching,
                                self.input_kind, self.vocab, "float32")
            batches.append(arrays)
            samples += len(idx)
            tokens += int((self.corpus.lengths[idx] + 1).sum())
            steps += arrays[1].size
        return batches, samples, tokens, steps


def _worker(args):
    """Serve one path over stdin/stdout JSON lines (see :func:`run`)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)           # anything else printed goes to the log

    def send(**msg):
        proto.write(json.dumps(msg) + "\n")

    if args.worker == GEMM_WORKER:
        return _gemm_worker(send)
    t0 = time.perf_counter()
    from lstm_accum.backend import theano, describe
    from lstm_accum.backend import scan_loop as scan_ext
    from lstm_accum.models import build_model
    import synthetic
    loop = scan_ext.status()          # builds the compiled loop if needed
    t_import = time.perf_counter() - t0
    input_kind, batching, approach, impl = PATHS[args.worker]
    corpus = synthetic.zipf_corpus(args.sentences, args.vocab, args.seed)
    rss_base = _rss_kb()
    t0 = time.perf_counter()
    model = build_model(args.vocab, args.units[0], input=input_kind,
                        batching=batching, seed=args.seed, impl=impl)
    runner = (_Question if approach == "question" else _Accum)(model)
    t_compile = time.perf_counter() - t0
    send(ready=True, compile_s=t_compile, import_s=t_import, scan_loop=loop,
         describe=describe(), rss_base_kb=rss_base, rss_kb=_rss_kb(),
         params=int(sum(p.get_value(borrow=True).size
                        for p in model.params)),
         floatX=theano.config.floatX)
    if args.compile_only:
        return
    feeder = _Feeder(corpus, input_kind, batching, args.vocab,
                     args.batch_size, args.mask_pool, args.seed)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "exit":
            send(rss_kb=_rss_kb())
            return
        # "count" consecutive windows, all drawn before the clock starts and
        # timed as one block, back to back as training runs them
        drawn = [feeder.window(cmd["n"]) for _ in range(cmd.get("count", 1))]
        start = time.perf_counter()
        for batches, _, _, _ in drawn:
            for arrays in batches:
                runner.accumulate(*arrays)
            runner.apply()
        seconds = time.perf_counter() - start
        send(seconds=seconds, samples=sum(w[1] for w in drawn),
             tokens=sum(w[2] for w in drawn), steps=sum(w[3] for w in drawn),
             calls=sum(len(w[0]) for w in drawn), windows=len(drawn),
             rss_kb=_rss_kb())


class Worker(object):
    """A path's worker process (parent side)."""

    def __init__(self, path, units, args, env=None, compile_only=False):
        self.path = path
        # "PATH@other" runs PATH from the checkout given by --against
        path, _, other = path.partition("@")
        tree = args.against if other else ROOT
        env = dict(env or {})
        if other:
            env.update(args.against_env)
        self.log = tempfile.NamedTemporaryFile(
            "w+", prefix="paths-%s-" % path, suffix=".log", delete=False)
        cmd = [sys.executable, os.path.join(tree, "benchmarks", "paths.py"),
               "--worker", path,
               "--units", str(units), "--vocab-size", str(args.vocab_size),
               "--sentences", str(args.sentences), "--seed", str(args.seed),
               "--batch-size", str(args.batch_size),
               "--mask-pool", str(args.mask_pool)]
        if compile_only:
            cmd.append("--compile-only")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, text=True, bufsize=1, cwd=tree,
            env=dict(os.environ, **env))
        self.info = self._receive()

    def _receive(self):
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.log.seek(0)
            tail = self.log.read()[-3000:]
            raise RuntimeError("worker %s died (exit %s); its log:\n%s"
                               % (self.path, self.proc.returncode, tail))
        return json.loads(line)

    def window(self, n, count=1):
        """Time `count` consecutive windows of >= `n` sentences as one block
        (drawn before the clock starts); the worker's reply."""
        self.proc.stdin.write(json.dumps({"cmd": "window", "n": n,
                                          "count": count}) + "\n")
        return self._receive()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"cmd": "exit"}\n')
                self.info["final_rss_kb"] = self._receive()["rss_kb"]
            except (BrokenPipeError, RuntimeError):
                pass
            self.proc.wait(timeout=60)
        self.log.close()
        os.unlink(self.log.name)


def cold_compile(path, units, args):
    """Compile time of `path` in a fresh process with an empty Theano
    compile directory (removed afterwards)."""
    tmp = tempfile.mkdtemp(prefix="paths-cold-")
    flags = os.environ.get("THEANO_FLAGS", "")
    flags = ",".join(f for f in (flags, "base_compiledir=" + tmp) if f)
    try:
        w = Worker(path, units, args, env={"THEANO_FLAGS": flags},
                   compile_only=True)
        w.proc.wait(timeout=1800)
        w.close()
        return w.info
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# the parent: schedule, collect, print
def _summary(times, tokens):
    rates = np.asarray(tokens, float) / np.asarray(times, float)
    return {"median": float(np.median(rates)), "min": float(rates.min()),
            "max": float(rates.max()), "repeats": int(len(rates))}


def run(paths=DEFAULT_PATHS, units=UNITS, windows=WINDOWS, args=None,
        log=print):
    """Measure `paths` at every H in `units` and N in `windows`.

    Returns
    -------
    dict
        JSON-ready results: ``gemm``, ``cold`` (path -> seconds), and
        ``runs``: a list of ``{units, path, compile_s, rss_mb, params,
        windows: {N: {median, min, max, repeats, tokens, samples, calls,
        steps}}}``.
    """
    if args is None:
        args = parse_args([])
    results = {"argv": sys.argv, "python": platform.python_version(),
               "machine": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "runs": [], "cold": {},
               "vocab": args.vocab_size}
    log("# measuring float32 GEMM peak (1024x1024) ...")
    results["gemm"] = measure_gemm()
    log("# GEMM: %s" % ", ".join("%s=%s" % (k, ("%.1f GFLOP/s" % v) if
                                             isinstance(v, float) else v)
                                 for k, v in results["gemm"].items()))
    cold = {"none": (), "question": ("question",), "key": KEY_PATHS,
            "all": paths}[args.cold]
    for path in [p for p in paths if p in cold]:
        log("# cold compile of %s (fresh base_compiledir) ..." % path)
        info = cold_compile(path, min(units), args)
        results["cold"][path] = info["compile_s"]
        log("#   %.1f s" % info["compile_s"])
    for H in units:
        workers = {}
        try:
            for path in paths:
                log("# H=%d: starting %s ..." % (H, path))
                workers[path] = Worker(path, H, args)
                log("#   compiled in %.1f s (%s)" % (
                    workers[path].info["compile_s"],
                    workers[path].info["describe"]))
            for path, w in workers.items():      # warm-up, untimed
                w.window(1)
            timed = {(p, n): ([], []) for p in paths for n in windows}
            detail = {(p, n): {} for p in paths for n in windows}
            spent = dict.fromkeys(timed, 0.0)
            for n in windows:
                rnd = 0
                while True:
                    todo = [p for p in paths
                            if len(timed[p, n][0]) < args.min_repeats or (
                                len(timed[p, n][0]) < args.repeats and
                                spent[p, n] < args.budget)]
                    if not todo:
                        break
                    k = rnd % len(todo)
                    for p in todo[k:] + todo[:k]:   # rotate the order
                        time.sleep(getattr(args, "gap", 0.0))
                        r = workers[p].window(n, getattr(args, "block", 1))
                        timed[p, n][0].append(r["seconds"])
                        timed[p, n][1].append(r["tokens"])
                        spent[p, n] += r["seconds"]
                        for key in ("samples", "tokens", "steps", "calls"):
                            detail[p, n].setdefault(key, []).append(r[key])
                    rnd += 1
                log("# H=%d N=%d: done (%s)" % (H, n, ", ".join(
                    "%s x%d" % (p, len(timed[p, n][0])) for p in paths)))
        finally:
            for w in workers.values():
                w.close()
        for path in paths:
            w = workers[path]
            entry = {"units": H, "path": path,
                     "compile_s": w.info["compile_s"],
                     "scan_loop": w.info["scan_loop"],
                     "params": w.info["params"],
                     "rss_mb": w.info.get("final_rss_kb", 0) / 1024.0,
                     "rss_base_mb": w.info["rss_base_kb"] / 1024.0,
                     "windows": {}}
            for n in windows:
                s = _summary(*timed[path, n])
                d = detail[path, n]
                s.update(samples=float(np.mean(d["samples"])),
                         tokens=float(np.mean(d["tokens"])),
                         steps=float(np.mean(d["steps"])),
                         calls=float(np.mean(d["calls"])))
                entry["windows"][str(n)] = s
            results["runs"].append(entry)
    # The machine may be busier at the start than at the end: the peak is
    # the best of both measurements.
    again = measure_gemm()
    for key in ("as_configured", "skylakex", "peak"):
        if again.get(key):
            results["gemm"][key] = max(results["gemm"].get(key) or 0,
                                       again[key])
    log("# GEMM again: %.1f GFLOP/s peak" % again["peak"])
    results["memory"] = memory_figures()
    return results


def memory_figures(vocab=MEMORY_SIZE["vocab"], units=MEMORY_SIZE["units"],
                   window=MEMORY_SIZE["window"], itemsize=4):
    """Bytes the question's list of N gradients needs, and ours."""
    n = param_count(vocab, units)
    return {"vocab": vocab, "units": units, "window": window,
            "params": n, "question_bytes": window * n * itemsize,
            "ours_bytes": 2 * n * itemsize, "param_bytes": n * itemsize}


def format_table(results):
    """The results as a Markdown table (and notes)."""
    gemm = results["gemm"]["peak"]
    rows = []
    runs = results["runs"]
    base = {(r["units"], n): r["windows"][n]["median"] for r in runs
            if r["path"] == "question" for n in r["windows"]}
    head = ("| H | N | path | tokens/s median (min..max) | x (a) | "
            "GFLOP/s | % peak | sent./call | peak RSS MB | compile warm s |")
    rows.append(head)
    rows.append("|" + "---|" * 10)
    order = {p: i for i, p in enumerate(PATHS)}
    order.update((p + "@" + AGAINST, i + 0.5) for p, i in list(order.items()))
    windows = sorted({int(n) for r in runs for n in r["windows"]})
    for H in sorted({r["units"] for r in runs}):
        for n in windows:
            for r in sorted([r for r in runs if r["units"] == H],
                            key=lambda r: order[r["path"]]):
                w = r["windows"][str(n)]
                kind = PATHS[r["path"].partition("@")[0]][0]
                gf = w["median"] * flops_per_token(results["vocab"], H,
                                                   kind) / 1e9
                ratio = w["median"] / base[H, str(n)] if (H, str(n)) in base \
                    else float("nan")
                rows.append(
                    "| %d | %d | (%s) %s | %.0f (%.0f..%.0f) x%d | %.2f | "
                    "%.1f | %.1f%% | %.1f | %.0f | %.1f |" % (
                        H, n, LABELS[r["path"].partition("@")[0]], r["path"],
                        w["median"],
                        w["min"], w["max"], w["repeats"], ratio, gf,
                        100 * gf / gemm, w["samples"] / w["calls"],
                        r["rss_mb"], r["compile_s"]))
    lines = rows
    g = results["gemm"]
    lines.append("")
    lines.append("GEMM peak (float32 1024x1024, the better of numpy.dot and "
                 "our TeamDot, best at the start "
                 "and the end of the run): %.1f GFLOP/s as "
                 "configured%s; %% peak uses %.1f." % (
                     g["as_configured"],
                     (", %.1f with OPENBLAS_CORETYPE=SkylakeX" % g["skylakex"])
                     if g.get("skylakex") else "", gemm))
    if results["cold"]:
        warm = {r["path"]: r["compile_s"] for r in runs}
        lines.append("Compile time (model + its compiled functions), cold "
                     "(fresh base_compiledir) / warm: " + "; ".join(
                         "%s %.1f s / %.1f s" % (p, s, warm.get(p, np.nan))
                         for p, s in results["cold"].items()) + ".")
    m = results["memory"]
    lines.append("Memory at V=%d, H=%d (%d trainable parameters, float32), "
                 "N=%d: the question's list of N gradients %.1f GB; ours "
                 "(accumulators + Adagrad state) %.2f GB, whatever N (both "
                 "also hold the %.2f GB of parameters)." % (
                     m["vocab"], m["units"], m["params"], m["window"],
                     m["question_bytes"] / 1e9, m["ours_bytes"] / 1e9,
                     m["param_bytes"] / 1e9))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# profile (issue 6 section 3)
def profile(out_path, units=256, vocab=VOCAB, windows=3, window=64,
            paths=("question", "sample-onehot", "bucket-ids"),
            batch_size=BATCH_SIZE,
            n_ops=15, n_apply=15, seed=SEED):
    """Theano's profiler on the compiled functions of `paths`, in-process.

    Writes each function's op summary (top `n_ops` op types, top `n_apply`
    nodes) to `out_path`.
    """
    from lstm_accum.backend import theano, describe
    from lstm_accum.models import build_model
    import synthetic
    import io
    corpus = synthetic.zipf_corpus(SENTENCES, vocab, seed)
    theano.config.profiling.n_ops = n_ops
    theano.config.profiling.n_apply = n_apply
    theano.config.profiling.time_thunks = True
    theano.config.profiling.ignore_first_call = True
    out = io.StringIO()
    out.write("# Theano profile, H=%d V=%d, %d windows of N>=%d sentences "
              "after one warm-up window; %s\n# command: %s\n" % (
                  units, vocab, windows, window, describe(),
                  " ".join(sys.argv)))
    from theano.scan_module.scan_op import Scan
    for path in paths:
        input_kind, batching, approach, impl = PATHS[path]
        model = build_model(vocab, units, input=input_kind, batching=batching,
                            seed=seed, impl=impl)
        # config.profile while compiling also profiles scan's inner graphs.
        theano.config.profile = True
        try:
            runner = (_Question if approach == "question" else _Accum)(
                model, profile=True)
        finally:
            theano.config.profile = False
        feeder = _Feeder(corpus, input_kind, batching, vocab, batch_size,
                         MASK_POOL, seed)
        total = 0.0
        tokens = 0
        for k in range(windows + 1):
            batches, samples, tok, steps = feeder.window(window)
            t0 = time.perf_counter()
            for arrays in batches:
                runner.accumulate(*arrays)
            runner.apply()
            if k:
                total += time.perf_counter() - t0
                tokens += tok
        out.write("\n\n######## path %s: %.0f tokens/s under the profiler "
                  "(%d tokens in %.2f s)\n" % (path, tokens / total, tokens,
                                                total))
        for fn in runner.functions():
            fn.profile.summary(file=out, n_ops_to_print=n_ops,
                               n_apply_to_print=n_apply)
            for node in fn.maker.fgraph.toposort():
                inner = getattr(getattr(node.op, "fn", None), "profile", None)
                if isinstance(node.op, Scan) and inner:
                    out.write("\n---- inner graph of %s (per step) ----\n"
                              % node.op.name)
                    inner.summary(file=out, n_ops_to_print=n_ops,
                                  n_apply_to_print=n_apply)
    with open(out_path, "w") as f:
        f.write(out.getvalue())
    return out.getvalue()


# ---------------------------------------------------------------------------
#: The mark of the rows run from the --against checkout.
AGAINST = "before"


def _int_list(text):
    return tuple(int(x) for x in text.split(",") if x)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Tokens/s of every training path side by side "
                    "(issue 6); see the module docstring.")
    p.add_argument("--units", type=_int_list, default=UNITS,
                   help="comma-separated H values (default 256,1024)")
    p.add_argument("--windows", type=_int_list, default=WINDOWS,
                   help="comma-separated N values (default 64,256)")
    p.add_argument("--paths", default="all",
                   help="comma-separated path names, or 'all' (%s)"
                   % ",".join(DEFAULT_PATHS))
    p.add_argument("--repeats", type=int, default=REPEATS,
                   help="most timed windows per cell (default %d)" % REPEATS)
    p.add_argument("--min-repeats", type=int, default=MIN_REPEATS,
                   help="fewest timed windows per cell (default %d)"
                   % MIN_REPEATS)
    p.add_argument("--budget", type=float, default=BUDGET,
                   help="seconds of timed windows per cell after which no "
                        "more repeats start (default %g)" % BUDGET)
    p.add_argument("--gap", type=float, default=0.0,
                   help="seconds of pause before each timed window, in "
                        "which no worker computes, so that the previous "
                        "worker's idle threads stop spinning (default 0)")
    p.add_argument("--block", type=int, default=1,
                   help="consecutive windows timed as one (default 1)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--mask-pool", type=int, default=MASK_POOL)
    p.add_argument("--vocab-size", type=int, default=VOCAB)
    p.add_argument("--sentences", type=int, default=SENTENCES)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--cold", choices=("none", "question", "key", "all"),
                   default="question",
                   help="which paths to compile once more with an empty "
                        "Theano cache: the question's only (default; a cold "
                        "compile takes minutes on a busy machine), key = %s, "
                        "or all" % ",".join(KEY_PATHS))
    p.add_argument("--quick", action="store_true",
                   help="small run: H=128, N=64, 3 windows, no cold compile")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--profile", metavar="FILE",
                   help="instead: profile the question, sample-onehot and "
                        "bucket-ids "
                        "paths at H=256 and write the summaries to FILE")
    p.add_argument("--worker", choices=sorted(PATHS) + [GEMM_WORKER],
                   help=argparse.SUPPRESS)
    p.add_argument("--compile-only", action="store_true",
                   help=argparse.SUPPRESS)
    p.add_argument("--against", metavar="DIR",
                   help="also run every path from the checkout in DIR (e.g. "
                        "an earlier commit: `git worktree add DIR REV`), side "
                        "by side; its rows are marked PATH@%s" % AGAINST)
    p.add_argument("--against-env", metavar="NAME=VALUE", action="append",
                   default=[],
                   help="run the PATH@%s rows with this environment "
                        "variable set (repeatable); without --against, from "
                        "this checkout: e.g. LSTM_ACCUM_BLAS=openblas puts "
                        "NumPy's OpenBLAS beside MKL" % AGAINST)
    args = p.parse_args(argv)
    args.vocab = args.vocab_size
    if args.quick:
        args.units, args.windows = (128,), (64,)
        args.repeats, args.min_repeats, args.cold = 3, 3, "none"
        args.sentences = min(args.sentences, 4000)
    if args.paths == "all":
        args.paths = DEFAULT_PATHS
    else:
        args.paths = tuple(args.paths.split(","))
        unknown = [x for x in args.paths if x not in PATHS]
        if unknown:
            p.error("unknown path %r; choose from %s" % (
                unknown[0], ", ".join(PATHS)))
    if args.min_repeats < 1 or args.repeats < args.min_repeats:
        p.error("need 1 <= --min-repeats <= --repeats")
    pairs = [a.partition("=") for a in args.against_env]
    bad = [a for a, (name, eq, _) in zip(args.against_env, pairs)
           if not (eq and name)]
    if bad:
        p.error("--against-env %r: give NAME=VALUE, e.g. "
                "LSTM_ACCUM_BLAS=openblas" % bad[0])
    args.against_env = {name: value for name, _, value in pairs}
    if args.against_env and not args.against:
        args.against = ROOT
    if args.against and not args.worker:
        args.against = os.path.abspath(args.against)
        if not os.path.isfile(os.path.join(args.against, "benchmarks",
                                           "paths.py")):
            p.error("--against %s is not a checkout of lstm_accum (no "
                    "benchmarks/paths.py there)" % args.against)
        args.paths = tuple(q for p_ in args.paths
                           for q in (p_, p_ + "@" + AGAINST))
    return args


def report(results, table, json_path=None):
    """Print the command line, the table and the wall time; write the
    results as JSON to `json_path` when given."""
    print()
    print("command: %s" % " ".join([os.path.relpath(sys.executable, ROOT)]
                                   + sys.argv))
    print(table)
    print("total wall time %.0f s" % results["wall_s"])
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return _worker(args)
    if args.profile:
        profile(args.profile, units=256 if args.units == UNITS else
                args.units[0], vocab=args.vocab_size)
        print("wrote %s" % args.profile)
        return None
    t0 = time.time()
    results = run(args.paths, args.units, args.windows, args)
    results["wall_s"] = time.time() - t0
    report(results, format_table(results), args.json)
    return results


if __name__ == "__main__":
    main()
