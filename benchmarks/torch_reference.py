"""Our fastest path against PyTorch's CPU LSTM, side by side (issues 6, 14).

The reference is the language model PyTorch users write for word ids:
``nn.Embedding(V, H) -> nn.LSTM(H, H, batch_first=True) -> nn.Linear(H, V)``,
summed cross-entropy, ``torch.optim.Adagrad`` (``torch-embed``).  This
script measures, in one run, our bucketed id path (``bucket-ids``) and the
question's approach (``question``, the baseline column) against it: timed
round-robin on the same windows of the same synthetic corpus, with the same
number of threads on both sides of a row, at every H of ``--units`` and
every thread count of ``--threads``.  It prints the full table, then a
summary: tokens/s and ratios per (H, threads), and GFLOP/s as a fraction of
the float32 GEMM peak at that thread count, measured in the same run.

PyTorch is *not* a dependency of lstm_accum: never install it into
``.venv``.  Make a separate environment from the wheel on disk (PyPI also
works)::

    python3.11 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install \\
        /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl \\
        'numpy<2'

Then, from the repository root, with the project's environment::

    .venv/bin/python benchmarks/torch_reference.py \\
        --torch-python /tmp/torchvenv/bin/python    # H=128,256,1024; ~12 min
    .venv/bin/python benchmarks/torch_reference.py \\
        --torch-python /tmp/torchvenv/bin/python --units 256 \\
        --paths torch-embed,torch-onehot,bucket-onehot,bucket-ids,question

Paths (``--paths``, comma-separated):

``torch-embed``    (the reference) what a PyTorch user writes for word ids:
                   ``nn.Embedding(V, H)`` -> ``nn.LSTM(H, H)`` (its fused
                   CPU kernel) -> ``nn.Linear(H, V)``.  Not quite our model:
                   an extra ``(H, 4H)`` input product after the lookup,
                   +24 H^2 FLOPs per token, where ours looks up a row of the
                   ``(V, 4H)`` input weights directly.
``torch-onehot``   one-hot input ``(B, T, V)`` -> ``nn.LSTM(V, H)`` ->
                   ``nn.Linear(H, V)`` -> summed softmax cross-entropy: the
                   question's model and math, PyTorch's default CPU kernel
                   (oneDNN's fused LSTM).
``torch-onehot-native``  the same with oneDNN off: ATen's own CPU LSTM (all
                   steps' input product as one matrix product, then each step
                   as ATen operations under autograd).  Faster here: oneDNN's
                   backward also computes the gradient of the V-wide input,
                   which nothing needs.
``torch-ids``      our id model exactly: the input product is a row lookup
                   ``W_in[ids]`` (``F.embedding`` into the ``(V, 4H)``
                   input weights, as our ``ids`` path), then the recurrence
                   as one ``addmm`` and the gate arithmetic per step (Python
                   loop, autograd).  ``nn.LSTM`` cannot take precomputed
                   gate inputs, so this path cannot use its fused kernel.
``bucket-ids``, ``question``, ``bucket-onehot``, ... ours: the workers of
                   :mod:`paths` (any name in ``paths.PATHS``).

The torch paths use PyTorch's LSTM: no peephole connections (Lasagne's has
three ``(H,)`` vectors: 3H multiplications per step, not counted in FLOPs),
two bias vectors (``b_ih + b_hh``: the same sum as our one), no
``grad_clipping`` (ours clips the gate pre-activation gradients at 5), and
``torch.optim.Adagrad`` (``eps`` added after the square root, 1e-6, where
Lasagne adds it under the root).  Apart from torch-embed's extra input
product, the matrix products, hence the FLOPs per token, are the same as
ours to well under 1%.

How it is measured:

* the data: the synthetic corpus of :mod:`synthetic`
  (``zipf_corpus(sentences, V, seed)``), bucketed minibatches of up to 32
  equal-length sentences (no mask) from ``plan_epoch(corpus, 'bucket', 32,
  seed, epoch)`` + ``make_batch(..., 'ids')``, epoch after epoch.  The parent
  process (``.venv``) exports every window of the run to an ``.npz``
  (``--export``) in the order a :mod:`paths` bucket worker draws them, so the
  torch processes train on exactly the windows ``bucket-onehot`` and
  ``bucket-ids`` train on (``question`` draws its own per-sentence windows of
  the same corpus);
* a window is whole minibatches until at least N sentences; every
  minibatch's summed loss is back-propagated (``loss.backward()`` adds into
  ``.grad``), then the gradients are divided by the window's sentence count,
  one Adagrad step (learning rate ``paths.LR``) and ``zero_grad``.  The
  window's tensors (one-hot expansion included) are built before the clock
  starts, for every path;
* every path runs in its own process, all alive at once for one (H, threads)
  setting; after one untimed warm-up window each, it is timed two ways,
  round-robin, rotating which path goes first, each timing after a pause
  (``--gap``, 0.3 s) in which no process computes (an idle worker's
  threads keep spinning for a while after its own work: OpenBLAS's up to
  ~0.1 s, libgomp's and our team's briefly; without the pause they share
  the cores with the next path's):

  - windows alone: ``--repeats`` single windows, each timed by itself;
  - blocks: ``--blocks`` blocks of ``--block-windows`` (48) consecutive
    windows, each block timed as a whole, as training runs them: the
    threads of each side stay as warm, and spin as they do, as in an hour
    of training.  The question's approach is timed alone only (its blocks
    would take most of the run; ``--block-paths`` to change that);

  a path's figure in the summary is the lower of its two medians, and the
  headline ratio, ours / PyTorch, the lower of the two ratios;
* threads: ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` and
  ``MKL_NUM_THREADS`` set to the row's value for every process, and
  ``torch.set_num_threads`` in the torch processes.  On a shared 2-core
  machine the 2-thread rows measure contention as much as speed: while
  another process holds one core, PyTorch's OpenMP threads (a barrier per
  operation, per time step) slow down up to 10-20x, OpenBLAS's threads in
  our paths far less (the same torch worker at 2 threads measured from 600
  to 19000 tokens/s from one run to the next here).  The output gives the
  load average of each group: a 2-thread row says something about speed only
  when it stayed near 1 (this script's own worker).  The cause is libgomp's
  spin-waiting; with ``--omp-passive`` (``OMP_WAIT_POLICY=PASSIVE`` in
  every process) the same worker measured ~5000 instead of ~700 tokens/s
  at 2 threads while another process held a core, about its 1-thread
  speed;
* tokens/s counts real target tokens (words + ``</s>``): the median over the
  timed windows or blocks (min..max, how many);
* FLOPs per target token, forward + backward, counting the matrix products
  only (multiply-add = 2 FLOPs; gates, softmax and lookups not counted),
  :func:`flops_per_token`: the recurrent product ``h W_hid`` (``2 * H *
  4H`` forward, twice that backward: ``24 H^2``), the output layer ``h
  W_out`` (``2 * H * V``, three times: ``6 V H``), the one-hot input
  product for one-hot paths (forward and the weight gradient, ``16 V H``)
  and torch-embed's ``(H, 4H)`` input product (``24 H^2``).  So ids
  ``6VH + 24H^2``, one-hot ``22VH + 24H^2``, torch-embed ``6VH + 48H^2``
  (at V=2000, H=1024: 37.5, 70.2 and 62.6 MFLOP per token);
* the GEMM peak: float32 products of 1024x1024 matrices, the better of
  ``numpy.dot`` and our ``TeamDot`` (:func:`paths.gemm_gflops`, best of
  15 each), in a subprocess with each thread
  count's environment, at the start and at the end of the run (the higher
  counts); "% peak" is a path's GFLOP/s over the peak at its thread count;
* the GEMM alongside: the same products, in a worker of their own that
  takes its turn in every round of both ways of timing (best of a few runs
  a turn); "% GEMM alongside" is our GFLOP/s over that round's, the median
  over the rounds.  On a shared virtual machine the GEMM rate moves by
  10-20% from one minute to the next: the peak says what the code reaches
  of the best the machine gave, this what it reaches of what the machine
  gave at the time.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

__all__ = ["TORCH_PATHS", "DEFAULT_PATHS", "flops_per_token",
           "export_windows", "run", "format_table", "main"]

# Defaults (issue 14: V=2000, H=128, 256 and 1024, N=64, minibatches of 32).
VOCAB = 2000          # V, special tokens included
UNITS = (128, 256, 1024)  # H values measured
WINDOWS = (64,)       # N, sentences per update (at least)
REPEATS = 5           # timed windows per (path, N), after one warm-up
BLOCKS = 3            # then timed blocks of consecutive windows per path
BLOCK_WINDOWS = 48    # windows per block: as training runs them
THREADS = (1, 2)      # BLAS/OpenMP/torch threads; the machine has 2 cores
BATCH_SIZE = 32       # sentences per bucketed minibatch
SENTENCES = 100000    # synthetic corpus size: buckets of 32 fill about as
                      # in a corpus of a million sentences
SEED = 1234           # corpus, plans and weights

#: torch path -> (input kind, oneDNN allowed, short description for the
#: table).  nn.LSTM on the CPU runs oneDNN's fused RNN kernel by default;
#: with oneDNN off, ATen's own CPU LSTM (the input product of all steps as
#: one matrix product, then each step as ATen operations under autograd):
#: measured 1.25x faster on the one-hot input here, since oneDNN's backward
#: also computes the gradient of the (V-wide) input, which nothing needs.
TORCH_PATHS = {
    "torch-onehot": ("onehot", True, "nn.LSTM, oneDNN fused kernel (the "
                     "default); no peepholes, 2 biases, no grad clipping"),
    "torch-onehot-native": ("onehot", False, "nn.LSTM, oneDNN off (ATen "
                            "ops per step, autograd); no peepholes, 2 "
                            "biases, no grad clipping"),
    "torch-ids": ("ids", True, "W_in row lookup + per-step addmm loop "
                  "(autograd); no peepholes, no grad clipping"),
    "torch-embed": ("ids", True, "nn.Embedding(V,H) -> nn.LSTM(H,H) -> "
                    "nn.Linear, as PyTorch users write it (+24H^2 "
                    "FLOPs/token)"),
}
#: Measured unless --paths says otherwise: the reference (what PyTorch users
#: write), our fastest path and the question's approach (the baseline).
DEFAULT_PATHS = ("torch-embed", "bucket-ids", "question")
REFERENCE = "torch-embed"   # the "x torch-embed" column divides by this path
OURS = "bucket-ids"         # the summary puts this path against REFERENCE
BASELINE = "question"        # the "x question" column divides by this path


def _import_paths():
    """:mod:`paths` (the project's benchmark), importable from here."""
    for p in (ROOT, HERE):
        if p not in sys.path:
            sys.path.insert(0, p)
    import paths
    return paths


def flops_per_token(path, vocab, units):
    """Forward + backward FLOPs per target token of `path` (as
    :func:`paths.flops_per_token`; torch-embed adds its ``(H, 4H)`` input
    product: forward and both backward products, ``3 * 2 * H * 4H``)."""
    paths = _import_paths()
    if path in TORCH_PATHS:
        kind = TORCH_PATHS[path][0]
    else:
        kind = paths.PATHS[path][0]
    extra = 3 * 2 * units * 4 * units if path == "torch-embed" else 0
    return paths.flops_per_token(vocab, units, kind) + extra


# ---------------------------------------------------------------------------
# data: the windows a paths.py bucket worker draws, exported once
def export_windows(filename, windows=WINDOWS, repeats=REPEATS,
                   sentences=SENTENCES, vocab=VOCAB, batch_size=BATCH_SIZE,
                   seed=SEED, blocks=0, block_windows=0):
    """Write the windows of a run to an ``.npz`` (run under ``.venv``).

    The windows are those a :mod:`paths` worker of a bucketed path draws
    (its ``_Feeder``: ``plan_epoch(corpus, 'bucket', batch_size, seed,
    epoch)`` and ``make_batch(..., 'ids')``, epoch after epoch), in the order
    :func:`run` asks for them: one warm-up window of >= 1 sentence, then
    `repeats` windows of >= N sentences for each N in `windows`, then
    `blocks` x `block_windows` windows of >= N sentences for each N.

    Parameters
    ----------
    filename : str
        The ``.npz`` to write.
    windows : sequence of int
        N values, sentences per window (at least).
    repeats : int
        Timed windows per N.
    blocks, block_windows : int
        Timed blocks per N and windows per block.
    sentences, vocab, batch_size, seed : int
        Corpus size, V, most sentences per minibatch, seed of the corpus and
        of the epoch plans.

    Returns
    -------
    dict
        ``windows`` (number written, warm-up included), ``batches``,
        ``tokens``.

    Notes
    -----
    Keys: ``n`` (requested N of every window, 1 for the warm-up),
    ``batches`` (minibatches per window), ``X%05d``/``y%05d`` (int32
    ``(B, T)`` input ids and targets of every minibatch, in order) and the
    scalars ``vocab``, ``batch_size``, ``seed``, ``sentences``.
    """
    paths = _import_paths()
    import synthetic
    corpus = synthetic.zipf_corpus(sentences, vocab, seed)
    feeder = paths._Feeder(corpus, "ids", "bucket", vocab, batch_size,
                           paths.MASK_POOL, seed)
    plan = [1] + [int(n) for n in windows for _ in range(repeats)] + [
        int(n) for n in windows for _ in range(blocks * block_windows)]
    arrays = {"n": np.asarray(plan, dtype=np.int64), "vocab": np.int64(vocab),
              "batch_size": np.int64(batch_size), "seed": np.int64(seed),
              "sentences": np.int64(sentences)}
    counts, k, tokens = [], 0, 0
    for n in plan:
        batches, _, tok, _ = feeder.window(n)
        counts.append(len(batches))
        tokens += tok
        for X, y in batches:
            arrays["X%05d" % k] = np.ascontiguousarray(X, dtype=np.int32)
            arrays["y%05d" % k] = np.ascontiguousarray(y, dtype=np.int32)
            k += 1
    arrays["batches"] = np.asarray(counts, dtype=np.int64)
    np.savez(filename, **arrays)
    return {"windows": len(plan), "batches": k, "tokens": tokens}


# ---------------------------------------------------------------------------
# the torch worker: runs under the torch environment, imports no lstm_accum
def _torch_model(path, vocab, units, seed):
    """(parameters, loss function ``f(X, y) -> summed NLL``) of `path`."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    torch.manual_seed(seed)
    V, H = vocab, units
    linear = nn.Linear(H, V)
    if path in ("torch-onehot", "torch-onehot-native"):
        lstm = nn.LSTM(V, H, batch_first=True)
        modules = [lstm, linear]

        def hidden(X):
            return lstm(X)[0]
    elif path == "torch-embed":
        embed = nn.Embedding(V, H)
        lstm = nn.LSTM(H, H, batch_first=True)
        modules = [embed, lstm, linear]

        def hidden(X):
            return lstm(embed(X))[0]
    elif path == "torch-ids":
        # nn.LSTM's layout and initialisation, stored as (V, 4H) and
        # (H, 4H) so that a token's input product is one row and a step's
        # recurrent product one addmm; gates in PyTorch's order i, f, g, o.
        ref = nn.LSTM(V, H, batch_first=True)
        W_in = nn.Parameter(ref.weight_ih_l0.detach().t().contiguous())
        W_hid = nn.Parameter(ref.weight_hh_l0.detach().t().contiguous())
        b = nn.Parameter((ref.bias_ih_l0 + ref.bias_hh_l0).detach().clone())
        modules = [nn.ParameterList([W_in, W_hid, b]), linear]

        def hidden(X):
            gates_x = F.embedding(X, W_in) + b          # (B, T, 4H)
            h = gates_x.new_zeros(X.shape[0], H)
            c = h
            hs = []
            for t in range(X.shape[1]):
                i, f, g, o = torch.addmm(gates_x[:, t], h, W_hid).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                hs.append(h)
            return torch.stack(hs, 1)
        hidden.reference = ref
    else:
        raise ValueError("unknown torch path %r; choose from %s"
                         % (path, ", ".join(TORCH_PATHS)))
    params = [p for m in modules for p in m.parameters()]

    def loss(X, y):
        out = linear(hidden(X))
        return F.cross_entropy(out.reshape(-1, V), y.reshape(-1),
                               reduction="sum")
    loss.hidden = hidden
    return params, loss


def _check_ids_recurrence(hidden, vocab, seed):
    """Largest difference between torch-ids' loop and ``nn.LSTM`` with the
    same weights on a small batch (the loop's gate order is PyTorch's)."""
    import torch
    import torch.nn.functional as F
    rng = np.random.RandomState(seed)
    X = torch.from_numpy(rng.randint(0, vocab, size=(3, 7)).astype(np.int64))
    with torch.no_grad():
        ours = hidden(X)
        ref = hidden.reference(F.one_hot(X, vocab).float())[0]
    return float((ours - ref).abs().max())


def _torch_worker(args):
    """Serve one torch path over stdin/stdout JSON lines, the protocol of
    :mod:`paths` workers (``ready``, then one reply per ``window``)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)           # anything else printed goes to the log

    def send(**msg):
        proto.write(json.dumps(msg) + "\n")

    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    torch.backends.mkldnn.enabled = TORCH_PATHS[args.torch_worker][1]
    data = np.load(args.data, allow_pickle=False)
    vocab = int(data["vocab"])
    plan, counts = data["n"], data["batches"]
    first = np.r_[0, np.cumsum(counts)]
    t0 = time.perf_counter()
    params, loss_fn = _torch_model(args.torch_worker, vocab, args.units[0],
                                   args.seed)
    check = (_check_ids_recurrence(loss_fn.hidden, vocab, args.seed)
             if args.torch_worker == "torch-ids" else None)
    opt = torch.optim.Adagrad(params, lr=args.lr, eps=1e-6)
    build_s = time.perf_counter() - t0
    send(ready=True, compile_s=build_s, params=int(sum(p.numel()
                                                       for p in params)),
         describe="torch %s, threads=%d, %s" % (
             torch.__version__, torch.get_num_threads(),
             "oneDNN on" if torch.backends.mkldnn.enabled else
             "oneDNN off"),
         ids_check=check, rss_kb=resource.getrusage(
             resource.RUSAGE_SELF).ru_maxrss)
    onehot = TORCH_PATHS[args.torch_worker][0] == "onehot"
    k = 0
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "exit":
            send(rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            return
        # "count" consecutive windows, built before the clock starts and
        # timed as one block (as training runs them)
        drawn = []
        for _ in range(cmd.get("count", 1)):
            if k >= len(plan) or int(plan[k]) != cmd["n"]:
                raise RuntimeError(
                    "asked for window %d of N=%d but %s holds %s; export "
                    "the data with the same --windows, --repeats, --blocks "
                    "and --block-windows" % (
                        k, cmd["n"], args.data,
                        "only %d windows" % len(plan) if k >= len(plan)
                        else "N=%d there" % plan[k]))
            batches, samples = [], 0
            for j in range(first[k], first[k + 1]):
                X = torch.from_numpy(data["X%05d" % j].astype(np.int64))
                y = torch.from_numpy(data["y%05d" % j].astype(np.int64))
                if onehot:
                    X = F.one_hot(X, vocab).float()
                batches.append((X, y))
                samples += y.shape[0]
            drawn.append((batches, samples))
            k += 1
        total = 0.0
        start = time.perf_counter()
        for batches, samples in drawn:
            for X, y in batches:
                loss = loss_fn(X, y)
                loss.backward()                 # adds into .grad
                total += loss.item()
            for p in params:                    # the mean over the window
                p.grad.div_(samples)
            opt.step()
            opt.zero_grad()
        seconds = time.perf_counter() - start
        tokens = sum(y.numel() for b, _ in drawn for _, y in b)
        send(seconds=seconds, samples=sum(n for _, n in drawn),
             tokens=tokens, steps=tokens,
             calls=sum(len(b) for b, _ in drawn), windows=len(drawn),
             loss_per_token=total / tokens,
             rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# ---------------------------------------------------------------------------
# the parent (under .venv)
_TORCH_WORKER = []


def _torch_worker_class():
    """:class:`paths.Worker` for torch paths (defined on first use: the torch
    worker process runs this file too and must not need :mod:`paths`)."""
    if _TORCH_WORKER:
        return _TORCH_WORKER[0]
    paths = _import_paths()

    class TorchWorker(paths.Worker):
        """A torch path's worker process: :class:`paths.Worker`'s protocol
        and parent side, started with the torch environment's Python."""

        def __init__(self, path, units, data, threads, args, env=None):
            self.path = path
            self.log = tempfile.NamedTemporaryFile(
                "w+", prefix="torchref-%s-" % path, suffix=".log",
                delete=False)
            cmd = [args.torch_python, os.path.abspath(__file__),
                   "--torch-worker", path, "--units", str(units),
                   "--data", data, "--threads", str(threads),
                   "--seed", str(args.seed), "--lr", repr(paths.LR)]
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self.log, text=True, bufsize=1, cwd=ROOT,
                env=dict(os.environ, **(env or {})))
            self.info = self._receive()
    _TORCH_WORKER.append(TorchWorker)
    return TorchWorker


def _code_version():
    """The commit measured, and the library files changed since (the speed
    of our paths is whatever the working tree holds)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                              cwd=ROOT, capture_output=True, text=True,
                              timeout=30).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "lstm_accum",
             "benchmarks/paths.py"], cwd=ROOT, capture_output=True,
            text=True, timeout=30).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    changed = sorted(line[3:] for line in dirty if line.strip())
    return head + (" + uncommitted changes to " + ", ".join(changed)
                   if changed else "")


def _thread_env(threads, omp_passive=False):
    t = str(threads)
    env = {"OPENBLAS_NUM_THREADS": t, "OMP_NUM_THREADS": t,
           "MKL_NUM_THREADS": t}
    if omp_passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def _os_threads(pid):
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return None


def _rates(times, tokens):
    return [float(t) / float(s) for s, t in zip(times, tokens)]


def _summary(times, tokens):
    rates = np.asarray(_rates(times, tokens))
    return {"median": float(np.median(rates)), "min": float(rates.min()),
            "max": float(rates.max()), "repeats": int(len(rates))}


def _start(path, H, threads, data, args, log):
    paths = _import_paths()
    env = _thread_env(threads, args.omp_passive)
    log("# H=%d threads=%d: starting %s ..." % (H, threads, path))
    if path in TORCH_PATHS:
        w = _torch_worker_class()(path, H, data, threads, args, env=env)
        if w.info.get("ids_check") is not None and \
                not w.info["ids_check"] < 1e-4:
            w.close()
            raise RuntimeError("torch-ids' recurrence differs from nn.LSTM "
                               "by %g" % w.info["ids_check"])
    else:
        w = paths.Worker(path, H, args, env=env)
    log("#   ready in %.1f s (%s)%s" % (
        w.info["compile_s"], w.info["describe"],
        "; loop vs nn.LSTM, same weights: max |diff| %.1e" % w.info[
            "ids_check"] if w.info.get("ids_check") is not None else ""))
    return w


def team_blas():
    """Which BLAS runs the team's products, as the report says it."""
    from lstm_accum.ops.mkl import load_mkl
    path, why = load_mkl()
    return "MKL (%s)" % path if path else "NumPy's OpenBLAS (%s)" % why


def run(args, log=print):
    """Measure ``args.paths`` for every H and thread count; the results as a
    JSON-ready dict (``runs``: one entry per (H, threads, path) with
    ``windows: {N: {median, min, max, repeats, tokens, samples}}``)."""
    _import_paths()       # also puts the repository root on sys.path
    from lstm_accum.backend import openblas as blas
    results = {"argv": sys.argv, "python": platform.python_version(),
               "machine": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "vocab": args.vocab_size,
               "openblas": blas.openblas_corename(),
               "team_blas": team_blas(),
               "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
               "code": _code_version(), "omp_passive": args.omp_passive,
               "gap_s": args.gap, "blocks": args.blocks,
               "block_windows": args.block_windows,
               "runs": []}
    fd, data = tempfile.mkstemp(prefix="torchref-", suffix=".npz")
    os.close(fd)
    try:
        t0 = time.perf_counter()
        info = export_windows(data, args.windows, args.repeats,
                              args.sentences, args.vocab_size,
                              args.batch_size, args.seed, args.blocks,
                              args.block_windows)
        log("# exported %d windows (%d minibatches, %d tokens) in %.1f s"
            % (info["windows"], info["batches"], info["tokens"],
               time.perf_counter() - t0))
        results["gemm"] = _gemm_peaks(args.threads, args.omp_passive, log)
        for H in args.units:
            for threads in args.threads:
                results["runs"].extend(
                    _measure(H, threads, data, args, log))
        # The machine may be busier at the start than at the end: the peak
        # is the better of both measurements.
        again = _gemm_peaks(args.threads, args.omp_passive, log)
        for t, v in again.items():
            results["gemm"][t] = max(results["gemm"][t] or 0, v or 0) or None
    finally:
        os.unlink(data)
    return results


def _gemm_peaks(threads, omp_passive, log):
    """{str(threads): float32 GEMM GFLOP/s} of :func:`paths.gemm_gflops`,
    each in a subprocess with that thread count's environment."""
    paths = _import_paths()
    out = {}
    for t in threads:
        out[str(t)] = paths._gemm_in_subprocess(_thread_env(t, omp_passive))
        log("# GEMM peak, %d thread%s: %s GFLOP/s" % (
            t, "s" if t > 1 else "",
            "%.1f" % out[str(t)] if out[str(t)] else "failed"))
    return out


def _measure(H, threads, data, args, log):
    workers = {}
    load = [os.getloadavg()[0]]    # other processes share the 2 cores
    paths = _import_paths()
    gemm = paths.GEMM_WORKER
    # the GEMM worker takes its turn with the paths: what the machine gave
    # at each round (format_summary's "% GEMM alongside")
    turns = list(args.paths) + [gemm]
    try:
        for path in args.paths:
            workers[path] = _start(path, H, threads, data, args, log)
        workers[gemm] = paths.Worker(gemm, H, args,
                                     env=_thread_env(threads,
                                                     args.omp_passive))
        for w in workers.values():           # warm-up, untimed
            w.window(1)
        os_threads = {p: _os_threads(w.proc.pid) for p, w in workers.items()}
        timed = {(p, n): ([], [], []) for p in turns for n in args.windows}
        losses = {}      # torch paths: training loss per token, per window
        rnd = 0
        for n in args.windows:
            for _ in range(args.repeats):
                k = rnd % len(turns)
                for p in turns[k:] + turns[:k]:  # rotate the order
                    time.sleep(args.gap)    # the others' threads park
                    r = workers[p].window(n)
                    timed[p, n][0].append(r["seconds"])
                    timed[p, n][1].append(r["tokens"])
                    timed[p, n][2].append(r["samples"])
                    if "loss_per_token" in r:
                        losses.setdefault(p, []).append(r["loss_per_token"])
                rnd += 1
            log("# H=%d threads=%d N=%d: %s" % (H, threads, n, ", ".join(
                "%s %.0f" % (p, np.median(np.asarray(timed[p, n][1]) /
                                          np.asarray(timed[p, n][0])))
                for p in args.paths)))
        # Blocks of consecutive windows, no pause, as training runs them:
        # each worker's threads stay as warm (or as spinning) as in an
        # hour of training; the order rotates as above.
        blocked = [p for p in args.paths if p in args.block_paths]
        blocked += [gemm] if blocked else []
        blocks = {(p, n): ([], []) for p in blocked for n in args.windows}
        for n in args.windows:
            for b in range(args.blocks if blocked else 0):
                k = b % len(blocked)
                for p in blocked[k:] + blocked[:k]:
                    time.sleep(args.gap)    # the others' threads park
                    r = workers[p].window(n, args.block_windows)
                    blocks[p, n][0].append(r["seconds"])
                    blocks[p, n][1].append(r["tokens"])
            if args.blocks and blocked:
                log("# H=%d threads=%d N=%d, blocks of %d windows: %s" % (
                    H, threads, n, args.block_windows, ", ".join(
                        "%s %.0f" % (p, np.median(
                            np.asarray(blocks[p, n][1]) /
                            np.asarray(blocks[p, n][0])))
                        for p in blocked if p != gemm)))
    finally:
        for w in workers.values():
            w.close()
    load.append(os.getloadavg()[0])
    out = []
    for p in args.paths:
        w = workers[p]
        entry = {"units": H, "threads": threads, "path": p,
                 "describe": w.info["describe"],
                 "compile_s": w.info["compile_s"],
                 "params": w.info["params"], "os_threads": os_threads[p],
                 "rss_mb": w.info.get("final_rss_kb", 0) / 1024.0,
                 "loss_per_token": losses.get(p), "load_avg": load,
                 "windows": {}, "blocks": {}, "rounds": {}}
        for n in args.windows:
            s = _summary(timed[p, n][0], timed[p, n][1])
            s.update(tokens=float(np.mean(timed[p, n][1])),
                     samples=float(np.mean(timed[p, n][2])))
            entry["windows"][str(n)] = s
            if args.blocks and p in blocked:
                entry["blocks"][str(n)] = _summary(*blocks[p, n])
            # round by round, this path's rate and the GEMM's, for
            # format_summary's "% GEMM alongside"
            entry["rounds"][str(n)] = {
                way: {"rate": _rates(*got[p, n][:2]),
                      "gemm_gflops": [g / 1e9 for g in
                                      _rates(*got[gemm, n][:2])]}
                for way, got in (("windows", timed), ("blocks", blocks))
                if (p, n) in got}
        out.append(entry)
    return out


def _describe_path(path):
    if path in TORCH_PATHS:
        return TORCH_PATHS[path][2]
    paths = _import_paths()
    kind, batching, approach = paths.PATHS[path][:3]
    what = {"question": "question's approach (grads to numpy)",
            "accum": "GradientAccumulator"}[approach]
    return "ours: %s, %s, %s input" % (what, batching, kind)


def _peak(results, threads):
    return (results.get("gemm") or {}).get(str(threads)) or float("nan")


def format_table(results):
    """The results as Markdown: every path's row, then the summary of our
    path against PyTorch's as its users write it (:func:`format_summary`)."""
    runs = results["runs"]
    V = results["vocab"]
    lines = ["| H | threads | N | path | tokens/s median (min..max), "
             "windows alone | blocks | x %s | x %s | GFLOP/s | %% peak | "
             "model |" % (REFERENCE, BASELINE),
             "|" + "---|" * 11]
    keys = sorted({(r["units"], r["threads"], int(n)) for r in runs
                   for n in r["windows"]})
    for H, threads, n in keys:
        rows = [r for r in runs if r["units"] == H and
                r["threads"] == threads and str(n) in r["windows"]]
        med = {r["path"]: _headline(r, n) for r in rows}
        for r in rows:
            w = r["windows"][str(n)]
            b = r.get("blocks", {}).get(str(n))
            rate = _headline(r, n)
            ratio = [("%.2f" % (rate / med[b])) if b in med else "-"
                     for b in (REFERENCE, BASELINE)]
            gf = rate * flops_per_token(r["path"], V, H) / 1e9
            lines.append(
                "| %d | %d | %d | %s | %.0f (%.0f..%.0f) x%d | %s | %s | "
                "%s | %.1f | %.0f%% | %s |" % (
                    H, threads, n, r["path"], w["median"], w["min"],
                    w["max"], w["repeats"],
                    "%.0f (%.0f..%.0f) x%d" % (b["median"], b["min"],
                                               b["max"], b["repeats"])
                    if b else "-", ratio[0], ratio[1], gf,
                    100 * gf / _peak(results, threads),
                    _describe_path(r["path"])))
    lines.append("")
    lines.extend(format_summary(results))
    lines.append("")
    med = {(r["units"], r["threads"], r["path"], n): w["median"]
           for r in runs for n, w in r["windows"].items()}
    slower = sorted({p for (H, t, p, n), v in med.items() if p in TORCH_PATHS
                     and t > 1 and v < med.get((H, 1, p, n), 0)})
    if slower and not results.get("omp_passive"):
        lines.append(
            "Note: %s ran slower with more threads than with 1: PyTorch's "
            "OpenMP threads spin-wait, which collapses when another process "
            "holds a core of this machine; measure on a quiet machine, or "
            "with --omp-passive (OMP_WAIT_POLICY=PASSIVE for every "
            "process)." % ", ".join(slower))
    if results.get("omp_passive"):
        lines.append("OMP_WAIT_POLICY=PASSIVE in every process "
                     "(--omp-passive).")
    loads = sorted({(r["units"], r["threads"], tuple(r["load_avg"]))
                    for r in runs})
    lines.append("1-minute load average at the start and end of each "
                 "(H, threads) group (%d CPUs; our own workers run one at a "
                 "time): %s." % (results["cpus"], "; ".join(
                     "H=%d/%d thr %.1f..%.1f" % (H, t, a, b)
                     for H, t, (a, b) in loads)))
    threads_seen = sorted({(r["threads"], r["path"], r["os_threads"])
                           for r in runs})
    lines.append("OS threads per worker process after warm-up (threads "
                 "setting: path=count): " + "; ".join(
                     "%d: %s" % (t, ", ".join("%s=%s" % (p, c) for tt, p, c
                                              in threads_seen if tt == t))
                     for t in sorted({t for t, _, _ in threads_seen})) + ".")
    describe = sorted({r["describe"] for r in runs if r["path"] not in
                       TORCH_PATHS})
    lines.append("Ours: %s; OpenBLAS kernels %s%s; team's products on "
                 "%s; code %s." % (
        "; ".join(describe) or "no path of ours", results["openblas"],
        (", OPENBLAS_CORETYPE=%s" % results["openblas_coretype"])
        if results["openblas_coretype"] else "", results["team_blas"],
        results["code"]))
    torch_desc = sorted({r["describe"].split(", threads")[0] for r in runs
                         if r["path"] in TORCH_PATHS})
    if torch_desc:
        lines.append("Torch: %s (separate environment)." % "; ".join(
            torch_desc))
    return "\n".join(lines)


def _headline(run, n):
    """A path's tokens/s for the summary: the lower of its median over
    windows timed alone and its median over blocks of windows."""
    rates = [run["windows"][str(n)]["median"]]
    if str(n) in run.get("blocks", {}):
        rates.append(run["blocks"][str(n)]["median"])
    return min(rates)


def format_summary(results, ours=OURS, reference=REFERENCE,
                   baseline=BASELINE):
    """Lines: one row per (H, threads, N) with the tokens/s of `baseline`,
    `ours` and `reference`, ours / `reference` by each way of timing and
    the headline ratio (the lower of the two), and `ours`' GFLOP/s against
    the GEMM peak at that thread count; then how the FLOPs are counted."""
    paths = _import_paths()
    runs = results["runs"]
    V = results["vocab"]
    med = {(r["units"], r["threads"], int(n), r["path"]): r
           for r in runs for n in r["windows"]}
    keys = sorted({k[:3] for k in med})
    if not any((k + (ours,)) in med and (k + (reference,)) in med
               for k in keys):
        return []
    lines = ["Summary, tokens/s of one side-by-side run (each path: the "
             "lower of its median over windows timed alone and over blocks "
             "of consecutive windows):", "",
             "| H | threads | N | %s (baseline) | ours: %s | %s | "
             "ours / %s, windows alone | blocks | **ours / %s (the lower)** "
             "| ours / %s | ours GFLOP/s | %% GEMM peak (peak) | "
             "%% GEMM alongside |" % (
                 baseline, ours, reference, reference, reference, baseline),
             "|" + "---|" * 13]
    nan = float("nan")

    def way(k, p, what):
        r = med.get(k + (p,))
        w = r and r.get(what, {}).get(str(k[2]))
        return w["median"] if w else nan

    for H, threads, n in keys:
        k = (H, threads, n)
        b, o, r = (_headline(med[k + (p,)], n) if k + (p,) in med else nan
                   for p in (baseline, ours, reference))
        alone = way(k, ours, "windows") / way(k, reference, "windows")
        block = way(k, ours, "blocks") / way(k, reference, "blocks")
        low = min(x for x in (alone, block) if x == x) if alone == alone \
            else nan
        gf = o * flops_per_token(ours, V, H) / 1e9
        peak = _peak(results, threads)
        lines.append("| %d | %d | %d | %.0f | %.0f | %.0f | %.2fx | %s | "
                     "**%.2fx** | %.2fx | %.1f | %.0f%% (%.0f) | %s |" % (
                         H, threads, n, b, o, r, alone,
                         "%.2fx" % block if block == block else "-", low,
                         o / b, gf, 100 * gf / peak, peak,
                         _alongside(med.get(k + (ours,)), n, V)))
    H = max(k[0] for k in keys)
    lines.append("")
    lines.append(
        "FLOPs per target token (forward + backward, matrix products only, "
        "multiply-add = 2): %s %s = 6VH + 24H^2, %s 6VH + 48H^2 (its extra "
        "(H, 4H) input product), one-hot paths 22VH + 24H^2; at V=%d, H=%d: "
        "%s %.1f MFLOP, %s %.1f MFLOP. %% GEMM peak = GFLOP/s / float32 "
        "1024x1024 GEMM GFLOP/s (the better of numpy.dot and our TeamDot) "
        "at the row's thread count, measured in this run (best of its start "
        "and end): %s. %% GEMM alongside: the same GEMM timed in turn with "
        "the paths, at every round (the best of %d runs a window, of %d a "
        "block); ours' GFLOP/s over that round's, the median over the "
        "rounds, the lower of windows alone and blocks (each in "
        "brackets): what the code reaches of what the machine gave at the "
        "time." % (
            "ours", ours, reference, V, H, ours,
            flops_per_token(ours, V, H) / 1e6, reference,
            flops_per_token(reference, V, H) / 1e6,
            ", ".join("%s thread%s %.1f" % (t, "s" if t != "1" else "", v)
                      for t, v in sorted((results.get("gemm") or {}).items())
                      if v), paths.GEMM_PER_WINDOW, paths.GEMM_PER_BLOCK))
    return lines


def _alongside(run, n, vocab):
    """`run`'s GFLOP/s over the GEMM's of the same round, as a percentage:
    the median over the rounds of each way of timing, the lower of the two
    first ("-" for runs without rounds)."""
    rounds = (run or {}).get("rounds", {}).get(str(n), {})
    pct = {}
    for way in ("windows", "blocks"):
        r = rounds.get(way)
        if r and r["rate"]:
            gflop = flops_per_token(run["path"], vocab, run["units"]) / 1e9
            pct[way] = 100 * float(np.median(
                [rate * gflop / g
                 for rate, g in zip(r["rate"], r["gemm_gflops"])]))
    if not pct:
        return "-"
    return "%.0f%% (%s)" % (min(pct.values()), ", ".join(
        "%.0f" % pct[w] for w in ("windows", "blocks") if w in pct))


def _check_torch_python(exe):
    """Why `exe` cannot run the torch workers, or None."""
    try:
        out = subprocess.run(
            [exe, "-c", "import torch, numpy; print(torch.__version__)"],
            capture_output=True, text=True, timeout=300)
    except OSError as err:
        return str(err)
    if out.returncode != 0:
        return out.stderr.strip().splitlines()[-1] if out.stderr else \
            "exit %d" % out.returncode
    return None


# ---------------------------------------------------------------------------
def _int_list(text):
    return tuple(int(x) for x in text.split(",") if x)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Our fastest path against PyTorch's CPU LSTM, side by "
                    "side (issues 6, 14); see the module docstring.")
    p.add_argument("--torch-python", metavar="PYTHON",
                   help="Python of an environment with torch and numpy<2 "
                        "(e.g. /tmp/torchvenv/bin/python; see the docstring)")
    p.add_argument("--units", type=_int_list, default=UNITS,
                   help="comma-separated H values (default %s)"
                   % ",".join(map(str, UNITS)))
    p.add_argument("--windows", type=_int_list, default=WINDOWS,
                   help="comma-separated N values (default %s)"
                   % ",".join(map(str, WINDOWS)))
    p.add_argument("--repeats", type=int, default=REPEATS,
                   help="timed windows per (path, N) (default %d)" % REPEATS)
    p.add_argument("--threads", type=_int_list, default=THREADS,
                   help="comma-separated thread counts, one row group each "
                        "(default %s)" % ",".join(map(str, THREADS)))
    p.add_argument("--paths", default=",".join(DEFAULT_PATHS),
                   help="comma-separated: torch paths (%s) and paths.py "
                        "names (default %s)" % (", ".join(TORCH_PATHS),
                                                ",".join(DEFAULT_PATHS)))
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--vocab-size", type=int, default=VOCAB)
    p.add_argument("--sentences", type=int, default=SENTENCES)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--gap", type=float, default=0.3,
                   help="seconds of pause before each timed window, so "
                        "that the other workers' threads stop spinning "
                        "(default 0.3)")
    p.add_argument("--blocks", type=int, default=BLOCKS,
                   help="timed blocks of consecutive windows per (path, N), "
                        "after the windows timed alone (default %d; 0: "
                        "none)" % BLOCKS)
    p.add_argument("--block-windows", type=int, default=BLOCK_WINDOWS,
                   help="windows per block (default %d)" % BLOCK_WINDOWS)
    p.add_argument("--block-paths", default=None,
                   help="comma-separated: the paths also timed in blocks "
                        "(default: every path but %s, the baseline, whose "
                        "blocks would take most of the run)" % BASELINE)
    p.add_argument("--omp-passive", action="store_true",
                   help="set OMP_WAIT_POLICY=PASSIVE in every process: "
                        "PyTorch's multi-threaded rows then stay sane while "
                        "other processes share the cores (see the "
                        "docstring)")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--export", metavar="FILE",
                   help="instead: only write the windows of such a run to "
                        "FILE (.npz)")
    p.add_argument("--torch-worker", choices=sorted(TORCH_PATHS),
                   help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--lr", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_worker:
        if len(args.threads) != 1 or not args.data or args.lr is None:
            p.error("a torch worker needs one --threads, --data and --lr")
        args.threads = args.threads[0]
        return args
    args.vocab = args.vocab_size
    args.paths = tuple(x for x in args.paths.split(",") if x)
    args.block_paths = tuple(
        x for x in args.block_paths.split(",") if x) \
        if args.block_paths is not None else tuple(
            x for x in args.paths if x != BASELINE)
    if args.repeats < 1 or not args.units or not args.windows or \
            not args.threads or min(args.threads) < 1:
        p.error("need --repeats >= 1 and non-empty --units, --windows and "
                "--threads (>= 1 each)")
    if args.export:
        return args
    paths = _import_paths()
    unknown = [x for x in args.paths if x not in TORCH_PATHS and
               x not in paths.PATHS]
    if unknown:
        p.error("unknown path %r; choose from %s" % (
            unknown[0], ", ".join(list(TORCH_PATHS) + list(paths.PATHS))))
    # paths.Worker reads these
    args.mask_pool = paths.MASK_POOL
    if any(x in TORCH_PATHS for x in args.paths):
        if not args.torch_python:
            p.error("--torch-python is required for the torch paths: the "
                    "Python of a separate environment with torch (see "
                    "'python3.11 -m venv /tmp/torchvenv' in the docstring)")
        why = _check_torch_python(args.torch_python)
        if why:
            p.error("--torch-python %s cannot import torch and numpy (%s); "
                    "make the environment as the docstring says"
                    % (args.torch_python, why))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.torch_worker:
        return _torch_worker(args)
    if args.export:
        info = export_windows(args.export, args.windows, args.repeats,
                              args.sentences, args.vocab_size,
                              args.batch_size, args.seed, args.blocks,
                              args.block_windows)
        print("wrote %s: %d windows, %d minibatches, %d tokens" % (
            args.export, info["windows"], info["batches"], info["tokens"]))
        return info
    t0 = time.time()
    results = run(args)
    results["wall_s"] = time.time() - t0
    _import_paths().report(results, format_table(results), args.json)
    return results


if __name__ == "__main__":
    main()
