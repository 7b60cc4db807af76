"""Data-parallel training over MPI: measured on this machine, projected beyond.

Measures, with 1 and 2 MPI ranks on this machine (shared memory, Open MPI),
the same windows of the same synthetic corpus (``benchmarks/synthetic.py``:
Zipf word ids, English-like lengths), id input, float32:

* tokens/s of whole windows (accumulate on each rank's share, allreduce,
  apply), median of the measured windows (min..max), after one warm-up
  window; compile time excluded;
* bytes each rank sends per update (the allreduce buffer: every parameter's
  accumulator plus 4 counters);
* allreduce time (copy in, ``MPI_Allreduce``, copy out) as a fraction of the
  window time, and the time ranks waited for each other (load imbalance).

From the 1-rank figures it then **projects** (a model, not a measurement)
the time of one window on ``p`` workers joined by a 10 Gb/s network, with a
ring allreduce, which sends and receives ``2 (p-1)/p * bytes`` per worker::

    t_net(p)  = 2 (p-1)/p * bytes / bandwidth + 2 (p-1) * latency
    strong (same window): T(p) = t_compute / p + t_apply + t_copy + t_net(p)
    weak (p x window):    T(p) = t_compute     + t_apply + t_copy + t_net(p)

with ``t_apply`` and ``t_copy`` (the allreduce on 1 rank: two memcpy of the
buffer) measured here, ``t_compute`` = the median 1-rank window time minus
those two (so the p = 1 row is the measurement), ``bandwidth`` = 1.25e9 B/s and
``latency`` = 50 us per message (assumed).

Run (about 5 minutes on 2 cores with a warm Theano cache)::

    .venv/bin/python benchmarks/distributed.py
    .venv/bin/python benchmarks/distributed.py --units 256 1024 --windows 3

It launches itself under ``mpirun`` (see
:func:`lstm_accum.accumulation.mpi.local_mpirun_command`); ``--worker`` is that
internal mode.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BANDWIDTH = 10e9 / 8        # bytes/s of a 10 Gb/s link
LATENCY = 50e-6             # s per message (assumed, TCP over 10 GbE)
PROJECTED_WORKERS = (1, 2, 8, 64)


def worker(args):
    """One run under mpirun: rank 0 prints one 'RESULT {json}' line."""
    from lstm_accum.backend import theano, lasagne
    from lstm_accum.accumulation import Distributed, GradientAccumulator
    from lstm_accum.data.batches import make_batch, plan_epoch
    from lstm_accum.models import build_model
    from benchmarks.synthetic import zipf_corpus

    dist = Distributed(enabled=True)
    corpus = zipf_corpus(args.sentences, vocab_size=args.vocab, seed=1234)
    plan = plan_epoch(corpus, "bucket", args.batch_size, seed=0, epoch=0)
    # Windows: consecutive batches holding at least `window` sentences, the
    # same on every rank; each rank takes every size-th batch of a window.
    windows, current, count = [], [], 0
    for batch in plan:
        current.append(batch)
        count += len(batch)
        if count >= args.window:
            windows.append(current)
            current, count = [], 0
    needed = 1 + args.windows
    if len(windows) < needed:
        raise SystemExit("only %d windows in %d sentences; pass more "
                         "--sentences" % (len(windows), args.sentences))

    start = time.perf_counter()
    model = build_model(args.vocab, args.units, input="ids",
                        batching="bucket", seed=0)
    acc = GradientAccumulator(model.loss(), model.params, model.inputs,
                              normalize="tokens",
                              num_tokens=model.num_tokens(),
                              update=lasagne.updates.adagrad,
                              learning_rate=0.005)
    dist.broadcast_parameters(acc)
    compile_seconds = time.perf_counter() - start

    records = []
    for w, window in enumerate(windows[:needed]):
        tokens = sum(len(b) * (int(corpus.lengths[b[0]]) + 1)
                     for b in window)
        mine = [make_batch(corpus, b, "bucket", "ids", args.vocab)
                for b in dist.shard(window)]
        dist.barrier()
        t0 = time.perf_counter()
        for X, y in mine:
            acc.accumulate(X, y)
        t1 = time.perf_counter()
        sums = dist.allreduce_window(acc)
        t2 = time.perf_counter()
        result = acc.apply()
        t3 = time.perf_counter()
        assert result.tokens == tokens, (result.tokens, tokens)
        times = np.array([t1 - t0, sums.wait_seconds, sums.seconds,
                          t3 - t2, t3 - t0])
        # The slowest rank sets the pace: report the max over ranks.
        dist.comm.allreduce(times, op="max")
        if w > 0:
            records.append(dict(tokens=tokens, compute=times[0],
                                wait=times[1], allreduce=times[2],
                                apply=times[3], window=times[4]))
    if dist.is_root:
        print("RESULT " + json.dumps(dict(
            ranks=dist.size, units=args.units, vocab=args.vocab,
            threads=os.environ.get("OPENBLAS_NUM_THREADS", "default"),
            bytes=sums.bytes, compile_seconds=compile_seconds,
            floatX=theano.config.floatX, windows=records)), flush=True)


def run(ranks, units, args):
    """Launch one worker run; returns its result dict."""
    from lstm_accum.accumulation.mpi import local_mpirun_command
    env = dict(os.environ)
    env.setdefault("THEANO_FLAGS", "floatX=float32")
    threads = str(max(1, (os.cpu_count() or 1) // ranks))
    env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = threads
    command = local_mpirun_command(ranks) + [
        sys.executable, os.path.abspath(__file__), "--worker",
        "--units", str(units), "--vocab", str(args.vocab),
        "--window", str(args.window), "--windows", str(args.windows),
        "--batch-size", str(args.batch_size),
        "--sentences", str(args.sentences)]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True,
                          text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit("worker failed (%d): %s\n%s" % (
        proc.returncode, " ".join(command), proc.stderr[-3000:]))


def summarize(result):
    w = result["windows"]
    rate = [r["tokens"] / r["window"] for r in w]

    def med(key):
        return float(np.median([r[key] for r in w]))
    return dict(rate=float(np.median(rate)), rate_min=min(rate),
                rate_max=max(rate), window=med("window"),
                compute=med("compute"), wait=med("wait"),
                allreduce=med("allreduce"), apply=med("apply"),
                tokens=float(np.median([r["tokens"] for r in w])))


def t_net(p, nbytes, bandwidth=BANDWIDTH, latency=LATENCY):
    """Ring allreduce time per update on p workers (a model)."""
    if p == 1:
        return 0.0
    return 2.0 * (p - 1) / p * nbytes / bandwidth + 2 * (p - 1) * latency


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true",
                        help=argparse.SUPPRESS)
    parser.add_argument("--units", type=int, nargs="+", default=[256, 1024],
                        help="H values (default: 256 1024)")
    parser.add_argument("--vocab", type=int, default=2000, help="V")
    parser.add_argument("--window", type=int, default=256,
                        help="sentences per window (all ranks together)")
    parser.add_argument("--windows", type=int, default=3,
                        help="measured windows (after one warm-up)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="sentences per bucket")
    parser.add_argument("--sentences", type=int, default=3000,
                        help="synthetic corpus size")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    if args.worker:
        args.units = args.units[0]
        return worker(args)

    from lstm_accum.accumulation.mpi import require_mpi  # says how to install
    require_mpi()
    print("V=%d, id input, bucketed batches of %d, windows of >= %d "
          "sentences, float32, %d cores; median of %d windows (min..max)"
          % (args.vocab, args.batch_size, args.window, os.cpu_count() or 1,
             args.windows))
    header = ("%5s %5s %7s %22s %7s %8s %9s %7s %7s %8s %10s" % (
        "H", "ranks", "threads", "tokens/s", "speedup", "window s",
        "allreduce", "frac", "wait s", "apply s", "MB/update"))
    print(header)
    print("-" * len(header))
    measured = {}
    for units in args.units:
        base = None
        for ranks in args.ranks:
            result = run(ranks, units, args)
            s = summarize(result)
            measured[(units, ranks)] = (result, s)
            base = base or s["rate"]
            print("%5d %5d %7s %8.0f (%5.0f..%5.0f) %6.2fx %8.3f %9.4f "
                  "%6.2f%% %7.3f %8.3f %10.2f" % (
                      units, ranks, result["threads"], s["rate"],
                      s["rate_min"], s["rate_max"], s["rate"] / base,
                      s["window"], s["allreduce"],
                      100 * s["allreduce"] / s["window"], s["wait"],
                      s["apply"], result["bytes"] / 1e6), flush=True)

    print()
    print("PROJECTION (a model, not a measurement) to p workers on a 10 Gb/s "
          "network, ring allreduce:")
    print("  t_net(p) = 2(p-1)/p * bytes / %.3g B/s + 2(p-1) * %g s;"
          % (BANDWIDTH, LATENCY))
    print("  strong (same window): T(p) = t_compute/p + t_apply + t_copy + "
          "t_net(p)")
    print("  weak (p x window):    T(p) = t_compute + t_apply + t_copy + "
          "t_net(p)")
    print("  t_compute, t_apply, t_copy measured with 1 rank above; assumes "
          "perfectly balanced shares (the 'wait s' column shows the "
          "imbalance measured with 2 ranks).")
    header = ("%5s %4s %10s %10s %12s %9s %12s %12s %9s" % (
        "H", "p", "MB sent", "t_net s", "strong tok/s", "speedup",
        "strong eff.", "weak tok/s", "weak eff."))
    print(header)
    print("-" * len(header))
    for units in args.units:
        if (units, 1) not in measured:
            continue
        result, s = measured[(units, 1)]
        nbytes = result["bytes"]
        fixed = s["apply"] + s["allreduce"]
        # t_compute: the median window minus its apply and (1-rank) copies,
        # so that p = 1 reproduces the measured median window time.
        t1 = s["window"]
        s["compute"] = t1 - fixed
        for p in PROJECTED_WORKERS:
            net = t_net(p, nbytes)
            strong = s["compute"] / p + fixed + net
            weak = s["compute"] + fixed + net
            sent = 2.0 * (p - 1) / p * nbytes if p > 1 else 0.0
            print("%5d %4d %10.1f %10.4f %12.0f %8.2fx %11.0f%% %12.0f "
                  "%8.0f%%" % (
                      units, p, sent / 1e6, net, s["tokens"] / strong,
                      t1 / strong, 100 * t1 / strong / p,
                      p * s["tokens"] / weak, 100 * t1 / weak))


if __name__ == "__main__":
    main()
