"""The apply step alone: the time of one ``GradientAccumulator.apply()``.

Run from the repository root::

    .venv/bin/python benchmarks/apply_step.py              # H=128,256,1024; ~2 min

For each H and update rule, the bucket-ids model of :mod:`paths` (V=2000,
float32) is built and its accumulator compiled, twice, each in its own
process: ``ours`` with the default compile mode (the apply step's loops of
:mod:`lstm_accum.ops.simd_elemwise`: one loop per parameter), ``theano``
with that rewrite left out (``optimizer_excluding=lstm_accum_simd_elemwise``:
Theano's own elementwise loops).  Each process accumulates a window of 64
sentences and applies it, ``--windows`` times; the table gives the median
(min..max) of the apply calls after the first 10, and the parameters'
size.  The processes run one after the other, alternating, ``--rounds``
times; a variant's figure is the median of its rounds' medians.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VARIANTS = {"ours": "", "theano": "optimizer_excluding=lstm_accum_simd_elemwise"}


def worker(H, rule, windows):
    """Apply times in ms, after 10 warm-up windows; the parameters' MB."""
    sys.path.insert(0, HERE)
    sys.path.insert(0, ROOT)
    import numpy as np
    import paths
    import synthetic
    from lstm_accum.backend import lasagne
    from lstm_accum.accumulation.accumulator import GradientAccumulator
    from lstm_accum.models import build_model
    corpus = synthetic.zipf_corpus(paths.SENTENCES, paths.VOCAB, paths.SEED)
    input_kind, batching, _, impl = paths.PATHS["bucket-ids"]
    model = build_model(paths.VOCAB, H, input=input_kind, batching=batching,
                        seed=paths.SEED, impl=impl)
    acc = GradientAccumulator(
        model.loss(), model.params, model.inputs, normalize="samples",
        update=getattr(lasagne.updates, rule), learning_rate=0.001,
        num_tokens=model.num_tokens(), vocab_size=model.vocab_size)
    feeder = paths._Feeder(corpus, input_kind, batching, paths.VOCAB,
                           paths.BATCH_SIZE, paths.MASK_POOL, paths.SEED)
    times = []
    for _ in range(windows):
        for arrays in feeder.window(64)[0]:
            acc.accumulate(*arrays)
        start = time.perf_counter()
        acc.apply()
        times.append((time.perf_counter() - start) * 1e3)
    size = sum(p.get_value(borrow=True).nbytes for p in model.params)
    return {"ms": times[10:], "mb": size / 2.0 ** 20}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", default="128,256,1024")
    parser.add_argument("--rules", default="adagrad,adam")
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        H, rule, windows = args.worker
        print(json.dumps(worker(int(H), rule, int(windows))))
        return
    import numpy as np
    print("| H | rule | parameters MB | theano loops, ms median (min..max) "
          "| ours | theano / ours |")
    print("|---|---|---|---|---|---|")
    for H in [int(u) for u in args.units.split(",")]:
        for rule in args.rules.split(","):
            runs = {v: [] for v in VARIANTS}
            for _ in range(args.rounds):
                for variant, flags in VARIANTS.items():
                    env = dict(os.environ)
                    env["THEANO_FLAGS"] = ",".join(
                        f for f in (env.get("THEANO_FLAGS", ""), flags) if f)
                    out = subprocess.run(
                        [sys.executable, __file__, "--worker", str(H), rule,
                         str(args.windows)], env=env, check=True,
                        capture_output=True, text=True).stdout
                    runs[variant].append(json.loads(out.splitlines()[-1]))
            cells = {}
            for variant, results in runs.items():
                ms = [t for r in results for t in r["ms"]]
                med = float(np.median([np.median(r["ms"]) for r in results]))
                cells[variant] = (med, "%.2f (%.2f..%.2f)" % (
                    med, min(ms), max(ms)))
            print("| %d | %s | %.1f | %s | %s | %.2fx |" % (
                H, rule, runs["ours"][0]["mb"], cells["theano"][1],
                cells["ours"][1], cells["theano"][0] / cells["ours"][0]))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
