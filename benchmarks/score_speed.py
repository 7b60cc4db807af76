"""Scoring speed: our scoring API against our training path and PyTorch.

Run from the repository root (PyTorch in its own environment, never in
``.venv``; see :mod:`torch_reference`)::

    .venv/bin/python benchmarks/score_speed.py \\
        --torch-python /tmp/torchvenv/bin/python        # H=256,1024; ~5 min

Three workers per H, each in its own process, all alive at once, on the same
sentences (``--sentences`` of the synthetic corpus of :mod:`synthetic`: Zipf
words over V=2000, English-like lengths, median 20 words):

``score``   :func:`lstm_accum.evaluation.score_sentences` on the whole list
            (forward only, per-word log-probabilities summed per sentence;
            minibatches of up to ``--batch-size`` sentences of
            :func:`~lstm_accum.evaluation.sentences.length_batches`:
            sorted by length, each taking sentences down to an eighth
            shorter than its longest, whose steps past their end are
            dropped).
``train``   our training path ``bucket-ids`` exactly as :mod:`paths` runs it
            (its worker: equal-length minibatches of 32, forward + backward
            accumulated on the device, one Adagrad update per window of 256
            sentences), windows until the pass has covered as many sentences.
``torch``   ``nn.Embedding(V, H) -> nn.LSTM(H, H) -> nn.Linear(H, V)``,
            ``log_softmax`` and the targets' log-probabilities, under
            ``torch.no_grad()``, in the same minibatches as ``score``,
            the same steps dropped.

A pass is all the sentences once; passes are timed round-robin, the order
rotating, so load from other processes touches every worker alike; one
untimed pass per worker first (compilation, warm-up).  tokens/s counts
target tokens (words + ``</s>``); the table gives the median over passes
(min..max) and the ratios of the medians.  Every process gets the same
number of threads (``--threads``: ``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``torch.set_num_threads``), with
OpenMP's wait policy left at its default, as PyTorch users run it
(``--omp-passive`` sets ``OMP_WAIT_POLICY=PASSIVE`` in every process
instead: PyTorch's threads then sleep between operations, which keeps its
two-thread figures sane when another process holds a core).  Before each
pass no worker computes for ``--gap`` seconds, so that the previous
worker's idle threads have stopped spinning.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

VOCAB = 2000          # V, special tokens included
UNITS = (256, 1024)   # H values measured
SENTENCES = 3000      # sentences scored per pass
PASSES = 5            # timed passes per worker
BATCH_SIZE = 64       # most sentences per scoring minibatch (ours and torch;
                      # score_sentences' default)
TRAIN_WINDOW = 256    # sentences per update of the training path
SEED = 1234           # corpus and weights
WORKERS = ("score", "train", "torch")


# ---------------------------------------------------------------------------
# workers: one per process, JSON lines on stdin/stdout (paths.Worker's
# protocol: 'ready', then one reply per command)
def _serve(ready, one_pass):
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)           # anything else printed goes to the log
    proto.write(json.dumps(dict(ready, ready=True)) + "\n")
    for line in sys.stdin:
        if json.loads(line)["cmd"] == "exit":
            proto.write(json.dumps({"rss_kb": 0}) + "\n")
            return
        start = time.perf_counter()
        tokens = one_pass()
        proto.write(json.dumps({"seconds": time.perf_counter() - start,
                                "tokens": tokens}) + "\n")


def _score_worker(args):
    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    import synthetic
    from lstm_accum.backend import describe
    from lstm_accum.evaluation import score_sentences
    from lstm_accum.models import build_model
    corpus = synthetic.zipf_corpus(args.sentences, args.vocab_size,
                                   args.seed)
    sentences = [corpus.sentence(i) for i in range(len(corpus))]
    t0 = time.perf_counter()
    model = build_model(args.vocab_size, args.units, input="ids",
                        batching="bucket", seed=args.seed)
    score_sentences(model, sentences, batch_size=args.batch_size)
    ready = {"compile_s": time.perf_counter() - t0, "describe": describe()}

    def one_pass():
        scores = score_sentences(model, sentences,
                                 batch_size=args.batch_size)
        return int(scores.targets.sum())
    _serve(ready, one_pass)


def _torch_worker(args):
    import torch
    from torch import nn
    torch.set_num_threads(args.threads)
    data = np.load(args.data)
    flat, offsets = data["ids"].astype(np.int64), data["offsets"]
    lengths = np.diff(offsets)
    batches = []
    # score_sentences' minibatches (the parent's length_batches): rows
    # shorter than the longest get </s> (id 2) after their end, and the
    # outputs there are dropped, as ours are
    for idx in np.split(data["batch_order"], data["batch_bounds"]):
        n = int(lengths[idx].max())
        inside = np.arange(n) < lengths[idx][:, None]
        words = np.full((len(idx), n), 2, np.int64)
        words[inside] = flat[(offsets[idx][:, None] + np.arange(n))[inside]]
        X = np.concatenate([np.ones((len(idx), 1), np.int64), words], 1)
        y = np.concatenate([words, np.full((len(idx), 1), 2, np.int64)], 1)
        keep = np.arange(n + 1) <= lengths[idx][:, None]
        batches.append((torch.from_numpy(X), torch.from_numpy(y),
                        torch.from_numpy(keep)))
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    V, H = args.vocab_size, args.units
    embed, lstm, linear = (nn.Embedding(V, H), nn.LSTM(H, H, batch_first=True),
                           nn.Linear(H, V))
    for m in (embed, lstm, linear):
        m.eval()
    tokens = int(sum(int(keep.sum()) for _, _, keep in batches))

    def one_pass():
        totals = []
        with torch.no_grad():
            for X, y, keep in batches:
                logp = torch.log_softmax(linear(lstm(embed(X))[0]), -1)
                word = logp.gather(-1, y[..., None])[..., 0]
                totals.append(torch.where(keep, word, 0.0).sum(1))
        return tokens
    one_pass()
    _serve({"compile_s": time.perf_counter() - t0,
            "describe": "torch %s, threads=%d" % (torch.__version__,
                                                  torch.get_num_threads())},
           one_pass)


# ---------------------------------------------------------------------------
# the parent
def _start(name, H, args, data):
    sys.path.insert(0, HERE)
    import paths
    t = str(args.threads)
    threads = dict(OPENBLAS_NUM_THREADS=t, OMP_NUM_THREADS=t,
                   MKL_NUM_THREADS=t)
    if args.omp_passive:
        threads["OMP_WAIT_POLICY"] = "PASSIVE"
    env = dict(os.environ, **threads)
    if name == "train":
        return paths.Worker("bucket-ids", H, argparse.Namespace(
            vocab_size=args.vocab_size, sentences=args.sentences,
            seed=args.seed, batch_size=paths.BATCH_SIZE,
            mask_pool=paths.MASK_POOL, against=None), env=threads)
    python = sys.executable if name == "score" else args.torch_python
    cmd = [python, os.path.abspath(__file__), "--worker", name,
           "--units", str(H), "--vocab-size", str(args.vocab_size),
           "--sentences", str(args.sentences), "--seed", str(args.seed),
           "--batch-size", str(args.batch_size),
           "--threads", str(args.threads), "--data", data]
    w = paths.Worker.__new__(paths.Worker)
    w.path = name
    w.log = tempfile.NamedTemporaryFile("w+", prefix="score-speed-%s-"
                                        % name, suffix=".log", delete=False)
    w.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=w.log,
                              text=True, bufsize=1, cwd=ROOT, env=env)
    w.info = w._receive()
    return w


def _one_pass(name, worker, sentences):
    """(seconds, tokens) of one pass over the sentences."""
    if name != "train":
        worker.proc.stdin.write('{"cmd": "pass"}\n')
        reply = worker._receive()
        return reply["seconds"], reply["tokens"]
    seconds, tokens, samples = 0.0, 0, 0
    while samples < sentences:
        reply = worker.window(TRAIN_WINDOW)
        seconds += reply["seconds"]
        tokens += reply["tokens"]
        samples += reply["samples"]
    return seconds, tokens


def run(args, log=print):
    """Measure every H; returns {H: {worker: [tokens/s per pass]}}."""
    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    import synthetic
    corpus = synthetic.zipf_corpus(args.sentences, args.vocab_size,
                                   args.seed)
    fd, data = tempfile.mkstemp(prefix="score-speed-", suffix=".npz")
    os.close(fd)
    from lstm_accum.evaluation.sentences import length_batches
    batches = length_batches(corpus.lengths, args.batch_size, padded=True)
    np.savez(data, ids=np.asarray(corpus.ids, np.int32),
             offsets=np.asarray(corpus.offsets, np.int64),
             batch_order=np.concatenate(batches),
             batch_bounds=np.cumsum([len(b) for b in batches])[:-1])
    log("# %d sentences, %d target tokens (median length %d words)"
        % (len(corpus), corpus.num_targets,
           int(np.median(corpus.lengths))))
    results = {}
    try:
        for H in args.units:
            workers = {}
            try:
                for name in WORKERS:
                    workers[name] = _start(name, H, args, data)
                    log("# H=%d %s ready in %.1f s (%s)" % (
                        H, name, workers[name].info["compile_s"],
                        workers[name].info.get("describe", "")))
                for name in WORKERS:                 # warm-up pass
                    _one_pass(name, workers[name], args.sentences)
                rates = {name: [] for name in WORKERS}
                for k in range(args.passes):
                    log("# H=%d pass %d of %d" % (H, k + 1, args.passes))
                    order = WORKERS[k % 3:] + WORKERS[:k % 3]
                    for name in order:
                        time.sleep(args.gap)   # the others' threads park
                        seconds, tokens = _one_pass(name, workers[name],
                                                    args.sentences)
                        rates[name].append(tokens / seconds)
                results[H] = rates
            finally:
                for w in workers.values():
                    w.close()
    finally:
        os.unlink(data)
    return results


def format_table(results):
    lines = ["%6s  %-28s %-28s %-28s %9s %9s" % (
        "H", "score: tokens/s", "train (bucket-ids): tokens/s",
        "torch no_grad: tokens/s", "score/trn", "score/trc")]
    for H, rates in results.items():
        med = {k: float(np.median(v)) for k, v in rates.items()}
        cells = ["%9.0f (%.0f..%.0f)" % (med[k], min(rates[k]),
                                          max(rates[k])) for k in WORKERS]
        lines.append("%6d  %-28s %-28s %-28s %8.2fx %8.2fx" % (
            H, cells[0], cells[1], cells[2], med["score"] / med["train"],
            med["score"] / med["torch"]))
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--torch-python", metavar="PYTHON",
                   help="the Python of an environment with torch and numpy")
    p.add_argument("--units", type=lambda s: [int(x) for x in s.split(",")],
                   default=list(UNITS))
    p.add_argument("--vocab-size", type=int, default=VOCAB)
    p.add_argument("--sentences", type=int, default=SENTENCES)
    p.add_argument("--passes", type=int, default=PASSES)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--gap", type=float, default=0.3,
                   help="seconds of pause before each timed pass "
                        "(default 0.3)")
    p.add_argument("--omp-passive", action="store_true",
                   help="OMP_WAIT_POLICY=PASSIVE in every process (not "
                        "how PyTorch users run it; see the docstring)")
    p.add_argument("--worker", choices=("score", "torch"),
                   help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is None and not args.torch_python:
        p.error("--torch-python is required (PyTorch lives in its own "
                "environment, never in .venv)")
    if args.worker is not None:
        args.units = args.units[0]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker == "score":
        return _score_worker(args)
    if args.worker == "torch":
        return _torch_worker(args)
    results = run(args)
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
