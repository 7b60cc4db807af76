"""What validation costs with the defaults, at any corpus size (issue 13,
item 5).

For each corpus size it writes a synthetic text file (:mod:`synthetic`:
Zipf words ``w3 .. w1999``, English-like lengths, median 20 words), runs
``lstm-accum train FILE --out DIR --units H`` with the defaults (plus
``--epochs`` / ``--max-updates`` to bound the run) and reads the run's own
``metrics.jsonl``:

``valid sent.``    sentences held out (``--valid-fraction`` 5%, capped by
                   ``--valid-max``)
``validations``    how many ran, and at which updates the first came
``first at``       the training loop's seconds at the first validation
``valid share``    ``valid_elapsed / elapsed`` of the last validation
                   record: the part of the run spent validating, scoring,
                   checkpoint and plot included
``tok/s``          median training tokens/s of the updates

Usage::

    .venv/bin/python benchmarks/validation_cost.py \\
        --sizes 1000,1000000 --units 256 --max-updates 1000
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from synthetic import zipf_corpus  # noqa: E402
from lstm_accum.training.plotting import read_metrics  # noqa: E402
from lstm_accum.training.reporter import METRICS_NAME  # noqa: E402


def write_corpus(path, sentences, seed=1234):
    corpus = zipf_corpus(sentences, seed=seed)
    with open(path, "w", encoding="utf-8") as f:
        for sentence in corpus:
            f.write(" ".join("w%d" % w for w in sentence) + "\n")


def run(path, out, units, epochs, max_updates, extra=()):
    command = [sys.executable, "-m", "lstm_accum.cli", "train", path,
               "--out", out, "--units", str(units), "--epochs", str(epochs),
               "--progress", "off"]
    if max_updates:
        command += ["--max-updates", str(max_updates)]
    command += list(extra)
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(" ".join(command) + "\n" + proc.stdout[-2000:]
                           + proc.stderr[-2000:])
    records = read_metrics(os.path.join(out, METRICS_NAME))
    updates = [r for r in records if r["kind"] == "update"]
    valid = [r for r in records if r["kind"] == "validation"]
    held = [line for line in proc.stdout.splitlines()
            if line.startswith("corpus ")]
    return {"wall_s": wall, "updates": len(updates),
            "validations": [r["update"] for r in valid],
            "first_s": valid[0]["elapsed"] if valid else None,
            "share": (valid[-1]["valid_elapsed"] / valid[-1]["elapsed"]
                      if valid and valid[-1]["elapsed"] else None),
            "tok_s": float(np.median([r["tokens_per_s"] for r in updates
                                      if r["tokens_per_s"]])),
            "corpus_line": held[0] if held else ""}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,1000000",
                   help="comma-separated corpus sizes in sentences")
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-updates", type=int, default=1000,
                   help="bound each run (0: all epochs)")
    p.add_argument("--args", default="", help="more 'lstm-accum train' "
                   "options (default: none, the defaults are measured)")
    p.add_argument("--work", default=None)
    args = p.parse_args(argv)
    rows = []
    work = tempfile.mkdtemp(prefix="valid-cost-", dir=args.work)
    try:
        for size in [int(x) for x in args.sizes.split(",")]:
            path = os.path.join(work, "corpus-%d.txt" % size)
            write_corpus(path, size)
            r = run(path, os.path.join(work, "run-%d" % size), args.units,
                    args.epochs, args.max_updates, args.args.split())
            r["size"] = size
            rows.append(r)
            print(r["corpus_line"], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| sentences | updates | validations (at updates) | first at | "
          "valid share | tok/s | wall s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        v = r["validations"]
        shown = ", ".join(map(str, v[:6])) + (", ..." if len(v) > 6 else "")
        print("| %d | %d | %d (%s) | %.1f s | %.1f%% | %.0f | %.0f |"
              % (r["size"], r["updates"], len(v), shown, r["first_s"] or 0,
                 100 * (r["share"] or 0), r["tok_s"], r["wall_s"]))
    print("\n```\n.venv/bin/python benchmarks/validation_cost.py %s\n```"
          % " ".join(sys.argv[1:] if argv is None else argv))
    return rows


if __name__ == "__main__":
    main()
