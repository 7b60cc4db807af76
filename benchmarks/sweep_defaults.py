"""Sweep of training settings on held-out real text (how the defaults of
issue 13 were chosen).

For each corpus and hidden size H, the corpus is split once as
:mod:`quality` splits it (held-out = the last lines, never trained on);
then every candidate setting trains through the real ``lstm-accum train``
command line with only ``--units``, ``--epochs``, ``--vocab-size`` and the
candidate's own options, and its ``best.npz`` is scored on the held-out
text. PyTorch's ``Embedding -> LSTM -> Linear`` (Adam 1e-3, batches of 32,
clip 5; :mod:`torch_quality_worker`) trains once per (corpus, H) on the
same tokens, as the anchor. Runs go ``--jobs`` at a time, each on one
thread (perplexities do not depend on how busy the machine is; the wall
times of a sweep with ``--jobs 2`` are only indicative).

For each run the table gives:

``ppl``        held-out perplexity (``best.npz``; ``</s>`` counted)
``/torch``     that over PyTorch's held-out perplexity
``/unigram``   that over the add-one unigram baseline of the training split
``spike``      the largest training loss of updates 2-50 over update 1's
               (issue 13 item 3: above 1.00 is a start-up spike)
``valid %``    share of the training loop's time spent validating (from
               ``metrics.jsonl``: each validation record's ``elapsed``
               minus the record before it)
``updates``, ``wall s``

Usage::

    .venv/bin/python benchmarks/sweep_defaults.py --corpus lee,kjv \\
        --units 128,256 --epochs 3 --torch-python /tmp/torchvenv/bin/python

``--candidates`` picks candidates by label (comma-separated; default all
of :data:`CANDIDATES`); ``--extra LABEL=ARGS`` adds one (repeatable).
"""
import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import quality  # noqa: E402
from lstm_accum.training.plotting import read_metrics  # noqa: E402
from lstm_accum.training.reporter import METRICS_NAME  # noqa: E402

#: (label, extra ``lstm-accum train`` options). ``defaults`` is what a
#: user gets with no option besides size and epochs.
CANDIDATES = (
    ("defaults", ""),
    ("adagrad-0.005", "--optimizer adagrad --lr 0.005"),
    ("adagrad-0.05", "--optimizer adagrad --lr 0.05"),
    ("adagrad-0.1", "--optimizer adagrad --lr 0.1"),
    ("adagrad-0.2", "--optimizer adagrad --lr 0.2"),
    ("adam-0.001", "--optimizer adam --lr 0.001"),
    ("adam-0.003", "--optimizer adam --lr 0.003"),
    ("adam-0.01", "--optimizer adam --lr 0.01"),
    ("adam-0.003-w32", "--optimizer adam --lr 0.003 --accumulate 32"),
    ("adam-0.003-tok", "--optimizer adam --lr 0.003 --normalize tokens"),
    ("adagrad-0.1-w32", "--optimizer adagrad --lr 0.1 --accumulate 32"),
    ("adam-0.005", "--optimizer adam --lr 0.005"),
    ("adam-0.02", "--optimizer adam --lr 0.02"),
    ("adam-0.01-w32", "--optimizer adam --lr 0.01 --accumulate 32"),
    ("adam-0.01-tok", "--optimizer adam --lr 0.01 --normalize tokens"),
    ("adam-0.01-clip1", "--optimizer adam --lr 0.01 --normalize tokens "
     "--max-norm 1"),
)


def run_summary(out):
    """Start-up spike and validation share from a run's metrics."""
    records = read_metrics(os.path.join(out, METRICS_NAME))
    updates = [r for r in records if r.get("kind") == "update"]
    losses = [r["loss"] for r in updates[:50] if r.get("loss") is not None]
    spike = (max(losses[1:]) / losses[0]) if len(losses) > 1 else None
    valid_s, previous = 0.0, 0.0
    for r in records:
        elapsed = r.get("elapsed")
        if elapsed is None:
            continue
        if r.get("kind") == "validation":
            valid_s += elapsed - previous
        previous = elapsed
    return {"updates": len(updates), "spike": spike,
            "valid_share": valid_s / previous if previous else None,
            "first_loss": losses[0] if losses else None,
            "train_loop_s": previous}


def sweep(args, name, units, candidates, log=print):
    """Rows of one (corpus, H): each candidate, and PyTorch."""
    path = quality.corpus_file(name, args.data_dir, log=log)
    work = tempfile.mkdtemp(prefix="sweep-", dir=args.work)
    rows = []
    try:
        train_path, heldout_path, lines = quality.split_lines(
            path, work, args.heldout_lines, args.max_sentences)

        def train(item):
            label, extra = item
            out = os.path.join(work, label)
            result = quality.train_lstm_accum(
                train_path, out, units, args.epochs, args.vocab_size,
                shlex.split(extra), 1, os.path.join(work, label + ".log"))
            return label, extra, out, result

        torch_future = None
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(train, c) for c in candidates]
            for future in futures:
                label, extra, out, result = future.result()
                score, train_split, heldout, vocab = quality.score_lstm_accum(
                    out, train_path, heldout_path)
                if torch_future is None:
                    data = os.path.join(work, "ids.npz")
                    quality.export_ids(data, train_split, heldout, len(vocab))
                    torch_future = pool.submit(
                        quality.run_torch, args.torch_python, data, units,
                        args.epochs, args.seed, 1)
                row = {"corpus": name, "units": units, "label": label,
                       "args": extra, "wall_s": result["wall_s"]}
                row.update(score)
                row.update(run_summary(out))
                rows.append(row)
                log("%s H=%d %-18s ppl %.1f (unigram %.1f) spike %s"
                    % (name, units, label, score["perplexity"],
                       score["unigram"], _fmt(row["spike"], "%.2f")))
            torch = torch_future.result()
        for row in rows:
            row["torch"] = torch["perplexity"]
            row["torch_wall_s"] = torch["process_s"]
        log("%s H=%d PyTorch ppl %.1f" % (name, units, torch["perplexity"]))
        return rows, lines
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fmt(value, pattern):
    return "-" if value is None else pattern % value


def format_table(rows):
    out = ["| corpus | H | candidate | options | ppl | /torch | /unigram | "
           "spike | valid % | updates | wall s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append("| %s | %d | %s | `%s` | %.1f | %.3f | %.3f | %s | %s | "
                   "%d | %.0f |"
                   % (r["corpus"], r["units"], r["label"], r["args"] or "-",
                      r["perplexity"], r["perplexity"] / r["torch"],
                      r["perplexity"] / r["unigram"],
                      _fmt(r["spike"], "%.2f"),
                      _fmt(r["valid_share"] and 100 * r["valid_share"],
                           "%.1f"),
                      r["updates"], r["wall_s"]))
    seen = set()
    for r in rows:
        key = (r["corpus"], r["units"])
        if key not in seen:
            seen.add(key)
            out.append("")
            out.append("* %s, H=%d: PyTorch held-out ppl %.1f (%.0f s); "
                       "unigram %.1f" % (key + (r["torch"], r["torch_wall_s"],
                                                r["unigram"])))
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=quality._list(str), default=["lee"])
    p.add_argument("--units", type=quality._list(int), default=[128])
    p.add_argument("--epochs", type=int, default=quality.EPOCHS)
    p.add_argument("--vocab-size", type=int, default=quality.VOCAB_SIZE)
    p.add_argument("--heldout-lines", type=int, default=None)
    p.add_argument("--max-sentences", type=int, default=0)
    p.add_argument("--candidates", type=quality._list(str), default=None,
                   help="labels of CANDIDATES to run (default all)")
    p.add_argument("--extra", action="append", default=[],
                   metavar="LABEL=ARGS", help="one more candidate")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=quality.SEED)
    p.add_argument("--torch-python", required=True)
    p.add_argument("--data-dir", default=quality.DATA_DIR)
    p.add_argument("--work", default=None)
    p.add_argument("--json")
    args = p.parse_args(argv)
    known = dict(CANDIDATES)
    labels = args.candidates or [c[0] for c in CANDIDATES]
    unknown = [x for x in labels if x not in known]
    if unknown:
        p.error("unknown candidates %s; known: %s" % (unknown, list(known)))
    args.chosen = [(x, known[x]) for x in labels]
    for item in args.extra:
        label, sep, extra = item.partition("=")
        if not sep or not label:
            p.error("--extra takes LABEL=ARGS, got %r" % item)
        args.chosen.append((label, extra))
    return args


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    rows = []
    for name in args.corpus:
        for units in args.units:
            rows += sweep(args, name, units, args.chosen)[0]
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)
    print("\n%s, %s, %.0f s in all\n" % (platform.node(),
                                         time.strftime("%Y-%m-%d %H:%M"),
                                         time.time() - t0))
    print(format_table(rows))
    print("\n```\n%s\n```" % " ".join(
        shlex.quote(x) for x in [".venv/bin/python",
                                 "benchmarks/sweep_defaults.py"]
        + list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
