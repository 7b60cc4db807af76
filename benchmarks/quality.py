"""Model quality: lstm-accum's defaults against a PyTorch LSTM LM (issue 13).

For each corpus and hidden size H, this script trains

* **lstm-accum** through its real command line, ``lstm-accum train
  TRAINFILE --out DIR --units H --epochs E --vocab-size V`` and nothing
  else unless ``--lstm-accum-args`` says so (the defaults are what is
  measured), then scores the held-out text with the run's ``best.npz``
  through the library (:func:`lstm_accum.load_model`,
  :func:`lstm_accum.data.encode_file` with the run's vocabulary and reader
  settings from the checkpoint's metadata,
  :func:`lstm_accum.evaluation.score_corpus`);
* **PyTorch**, ``nn.Embedding(V, H) -> nn.LSTM(H, H) -> nn.Linear(H, V)``
  with Adam (lr 1e-3), minibatches of 32 sentences, gradient-norm clipping
  at 5, as its users write it (:mod:`torch_quality_worker`), for the same
  number of epochs, on the same tokens;

and prints one Markdown row per (corpus, H): both held-out perplexities,
the add-one unigram baseline, the ratio lstm-accum / PyTorch and the wall
time of each, followed by the exact command.

The same tokens
---------------
The held-out text is the **last** ``--heldout-lines`` lines of the corpus
file (default: the last 10%); it is never trained on. The lines before it
are the training text, written to a file that ``lstm-accum train`` reads
and from which it draws its own validation split as usual (its
``--valid-fraction``, its seed). This script then encodes the training
text with the run's saved vocabulary, draws the same split again
(:func:`lstm_accum.split_corpus` with the run's ``valid_fraction`` and
``seed``) and checks it against the run's own record: the target counts of
the split must equal the checkpoint's ``data/train_target_counts``. The
ids of that training split and of the held-out text go to an ``.npz`` that
the PyTorch worker reads, so both models train on exactly the same
sentences and are scored on exactly the same targets: the same vocabulary
(``<unk>`` kept as a word), input ``<s> w1 .. wn``, targets ``w1 .. wn
</s>``, ``</s>`` counted. Perplexity on both sides is ``exp(summed NLL /
target tokens)``. The unigram baseline is
:func:`lstm_accum.evaluation.unigram_perplexity_from_counts` of the
training split's saved counts on the held-out text (add-one, as ``lstm-accum
eval`` prints it).

Wall time is each side's training process, start to exit, with the same
number of BLAS/OpenMP threads (``--threads``, default 1:
``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
``torch.set_num_threads``). For lstm-accum it includes Theano's start-up,
the compile (a few seconds with a warm cache, about 30 s cold) and its
validations; for PyTorch, importing torch, training and scoring the
held-out text. Scoring lstm-accum's held-out text afterwards is not
counted.

Corpora (``--corpus``)
----------------------
``lee``   The bundled example's corpus: the Lee background corpus, 300
          Australian Broadcasting Corporation news articles (~2,700
          sentences, ~70,000 tokens), read from the gensim 4.3.3 wheel on
          PyPI (``gensim/test/test_data/lee_background.cor``; gensim is
          LGPL-2.1, the articles' own licence is not stated) by
          ``examples/lee_corpus.py``, which caches one tokenized sentence a
          line in ``data/lee_background.txt``.
``kjv``   The King James Bible (public domain) from Debian's ``bible-kjv``
          package (``apt-get update && apt-get install -y bible-kjv``):
          ``bible -l100000 "gen1:1-rev22:21"`` prints it; the lines that
          start with spaces and a verse number are kept, the number
          stripped, and each verse tokenized as the Lee corpus is
          (lowercase, punctuation split from words:
          ``examples/lee_corpus.py``'s ``tokenize_sentence``): 31,102
          verses, one a line, cached in ``data/kjv.txt``.
``PATH``  Any UTF-8 text file, one sentence per line.

``data/`` is ignored by git: no corpus text is committed.

PyTorch
-------
PyTorch is *not* a dependency of lstm_accum: never install it into
``.venv`` (nor in CI). Make a separate environment from the wheel on disk,
as for ``torch_reference.py``::

    python3.11 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install \\
        /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl \\
        'numpy<2'

Usage, from the repository root with the project's environment::

    # lee, H=128, 3 epochs (the defaults)
    .venv/bin/python benchmarks/quality.py \\
        --torch-python /tmp/torchvenv/bin/python
    # the issue's sweep: both corpora, H=128 and 256
    .venv/bin/python benchmarks/quality.py \\
        --torch-python /tmp/torchvenv/bin/python \\
        --corpus lee,kjv --units 128,256 --epochs 3
    # a smoke run (under a minute with a warm Theano cache; not a result)
    .venv/bin/python benchmarks/quality.py \\
        --torch-python /tmp/torchvenv/bin/python \\
        --corpus lee,kjv --units 64 --epochs 1 --max-sentences 2000
"""
import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, os.path.join(ROOT, "examples")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from lee_corpus import lee_corpus, tokenize_sentence  # noqa: E402
from lstm_accum import load_model, split_corpus  # noqa: E402
from lstm_accum.data import BOS_ID, EOS_ID, encode_file  # noqa: E402
from lstm_accum.evaluation import (score_corpus, target_counts,  # noqa: E402
                                   unigram_perplexity_from_counts)
from lstm_accum.exceptions import InputError  # noqa: E402

__all__ = ["kjv_corpus", "corpus_file", "split_lines", "train_lstm_accum",
           "score_lstm_accum", "export_ids", "run_torch", "measure",
           "format_table", "main"]

# Defaults (issue 13: vocabulary 2000, H=128 and 256, 3 epochs).
CORPORA = ("lee",)       # --corpus: lee, kjv or a path; comma-separated
UNITS = (128,)           # H values (the issue also asks 256)
EPOCHS = 3               # passes over the training text, both sides
VOCAB_SIZE = 2000        # words kept besides <unk> <s> </s>
HELDOUT_SHARE = 0.10     # held-out = the last 10% of lines, unless given
THREADS = 1              # BLAS/OpenMP/torch threads of both sides
SEED = 1                 # PyTorch's weights and batch order
DATA_DIR = os.path.join(ROOT, "data")
KJV_FILE = "kjv.txt"
KJV_COMMAND = ("bible", "-l100000", "gen1:1-rev22:21")
_VERSE = re.compile(r"^\s+\d+\s+(.*\S)\s*$")


# ---------------------------------------------------------------------------
# corpora
def kjv_corpus(data_dir=DATA_DIR, log=None):
    """Path of the King James Bible, one tokenized verse a line, made once.

    Parameters
    ----------
    data_dir : str
        Cache directory; the text goes to ``data_dir/kjv.txt``.
    log : callable, optional
        Receives one line when the file is written.

    Returns
    -------
    str

    Raises
    ------
    InputError
        When Debian's ``bible`` program is missing or prints no verse.
    """
    path = os.path.join(data_dir, KJV_FILE)
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        return path
    if shutil.which(KJV_COMMAND[0]) is None:
        raise InputError("the kjv corpus needs Debian's bible-kjv package "
                         "(the program 'bible'); install it with 'apt-get "
                         "update && apt-get install -y bible-kjv', or give "
                         "--corpus lee or a file")
    proc = subprocess.run(KJV_COMMAND, capture_output=True, text=True)
    verses = [m.group(1) for m in map(_VERSE.match, proc.stdout.splitlines())
              if m]
    if proc.returncode != 0 or not verses:
        raise InputError("'%s' failed or printed no verse (exit %d: %s); "
                         "reinstall bible-kjv" % (" ".join(KJV_COMMAND),
                                                  proc.returncode,
                                                  proc.stderr.strip()[-200:]))
    os.makedirs(data_dir, exist_ok=True)
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        for verse in verses:
            f.write(" ".join(tokenize_sentence(verse)) + "\n")
    os.replace(tmp, path)
    if log:
        log("wrote %d verses of the King James Bible (Debian bible-kjv, "
            "public domain) to %s" % (len(verses), path))
    return path


def corpus_file(name, data_dir=DATA_DIR, log=None):
    """The text file of ``--corpus`` `name`: ``lee``, ``kjv`` or a path."""
    if name == "lee":
        return lee_corpus(data_dir, log=log)
    if name == "kjv":
        return kjv_corpus(data_dir, log=log)
    if not os.path.isfile(name):
        raise InputError("--corpus %r is neither lee, kjv nor a file" % name)
    return name


def split_lines(path, work, heldout_lines=None, max_sentences=0):
    """Write the training text and the held-out text of a corpus file.

    Parameters
    ----------
    path : str
        The corpus, one sentence per line.
    work : str
        Directory for ``train.txt`` and ``heldout.txt``.
    heldout_lines : int, optional
        Held-out = the last this many lines; default the last
        ``HELDOUT_SHARE`` of them.
    max_sentences : int
        If > 0, train on only the first this many lines before the
        held-out text (smoke runs); the held-out text stays the same.

    Returns
    -------
    train_path, heldout_path : str
    counts : dict
        ``lines``, ``train_lines``, ``heldout_lines``.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    n_held = (int(round(HELDOUT_SHARE * len(lines))) if heldout_lines is None
              else int(heldout_lines))
    if not 0 < n_held < len(lines):
        raise InputError("--heldout-lines %d leaves nothing to train on or "
                         "to score in %s (%d lines)" % (n_held, path,
                                                        len(lines)))
    train, heldout = lines[:-n_held], lines[-n_held:]
    if max_sentences > 0:
        train = train[:max_sentences]
    paths = []
    for name, part in (("train.txt", train), ("heldout.txt", heldout)):
        paths.append(os.path.join(work, name))
        with open(paths[-1], "w", encoding="utf-8") as f:
            f.write("\n".join(part) + "\n")
    return paths[0], paths[1], {"lines": len(lines),
                                "train_lines": len(train),
                                "heldout_lines": len(heldout)}


def _thread_env(threads):
    env = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    return env


# ---------------------------------------------------------------------------
# lstm-accum: the command line, then the library
def train_lstm_accum(train_path, out, units, epochs, vocab_size,
                     extra_args=(), threads=THREADS, log_path=None):
    """Run ``lstm-accum train`` as a user would; returns its wall time.

    Returns
    -------
    dict
        ``command`` (list of str), ``wall_s``.

    Raises
    ------
    RuntimeError
        When the command fails (the end of its output is in the message).
    """
    command = [sys.executable, "-m", "lstm_accum.cli", "train", train_path,
               "--out", out, "--units", str(units), "--epochs", str(epochs),
               "--vocab-size", str(vocab_size), "--progress", "off"]
    command += list(extra_args)
    t0 = time.perf_counter()
    with open(log_path or os.devnull, "w") as log:
        proc = subprocess.run(command, cwd=ROOT, env=_thread_env(threads),
                              stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = ""
        if log_path:
            with open(log_path) as f:
                tail = "".join(f.readlines()[-15:])
        raise RuntimeError("lstm-accum train failed (exit %d):\n%s\n%s"
                           % (proc.returncode, " ".join(command), tail))
    return {"command": command, "wall_s": wall}


def _run_summary(out):
    """Updates, epochs, validations and the training loop's elapsed time
    from the run's ``metrics.jsonl``."""
    records = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
    updates = [r for r in records if r.get("kind") == "update"]
    valid = [r for r in records if r.get("kind") == "validation"]
    last = (updates + valid)[-1] if updates or valid else {}
    return {"updates": len(updates),
            "epochs_run": max((r["epoch"] for r in updates), default=0),
            "validations": len(valid),
            "valid_best": min((r["perplexity"] for r in valid
                               if r.get("perplexity") is not None),
                              default=None),
            "elapsed_s": max((r.get("elapsed") or 0 for r in records),
                             default=0.0),
            "first_loss": updates[0]["loss"] if updates else None,
            "last_lr": last.get("lr")}


def score_lstm_accum(out, train_path, heldout_path):
    """Score the held-out text with the run's best checkpoint, and recover
    the run's training split.

    Returns
    -------
    result : dict
        ``perplexity``, ``nll``, ``tokens``, ``sentences``, ``unigram``,
        ``checkpoint``, ``coverage`` (of the held-out text).
    train_split, heldout : EncodedCorpus
    vocab : Vocabulary

    Raises
    ------
    RuntimeError
        When the split drawn again does not match the run's saved training
        counts (the trainer's split rule changed: follow it here).
    """
    best = os.path.join(out, "best.npz")
    path = best if os.path.isfile(best) else os.path.join(out,
                                                          "checkpoint.npz")
    # Equal-length minibatches score exactly what training batching would,
    # faster than one sentence per call (as 'lstm-accum eval' does).
    model, vocab, saved = load_model(path, batching="bucket")
    config = saved.metadata["config"]
    read = {"lowercase": config["lowercase"],
            "max_length": config["max_length"]}
    heldout, stats = encode_file(heldout_path, vocab, **read)
    score = score_corpus(model, heldout)
    saved_counts = saved.arrays["data/train_target_counts"]
    baseline = unigram_perplexity_from_counts(saved_counts, heldout)
    corpus, _ = encode_file(train_path, vocab, **read)
    train_split, _, _ = split_corpus(corpus, config["valid_fraction"], 0.0,
                                     config["seed"],
                                     valid_max=config.get("valid_max", 0))
    if not np.array_equal(target_counts(train_split, len(vocab)),
                          np.asarray(saved_counts, dtype=np.float64)):
        raise RuntimeError(
            "the training split drawn again (split_corpus(corpus, %r, 0, "
            "seed=%r)) does not match the run's data/train_target_counts: "
            "the trainer splits another way now; make score_lstm_accum "
            "follow it" % (config["valid_fraction"], config["seed"]))
    return ({"perplexity": score.perplexity, "nll": score.nll,
             "tokens": score.tokens, "sentences": score.sentences,
             "unigram": baseline, "checkpoint": path,
             "coverage": float(stats.coverage)},
            train_split, heldout, vocab)


# ---------------------------------------------------------------------------
# PyTorch, in its own environment
def export_ids(filename, train_split, heldout, vocab_size):
    """Write the ids both sides train and score on, for the torch worker
    (keys: see :mod:`torch_quality_worker`)."""
    np.savez(filename, train_ids=train_split.ids,
             train_offsets=train_split.offsets, heldout_ids=heldout.ids,
             heldout_offsets=heldout.offsets, vocab=np.int64(vocab_size),
             bos=np.int64(BOS_ID), eos=np.int64(EOS_ID))


def run_torch(torch_python, data, units, epochs, seed=SEED, threads=THREADS):
    """Train and score the PyTorch model on `data`; its JSON result, with
    ``process_s`` (the worker process, start to exit) added."""
    command = [torch_python, os.path.join(HERE, "torch_quality_worker.py"),
               data, "--units", str(units), "--epochs", str(epochs),
               "--seed", str(seed), "--threads", str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(command, env=_thread_env(threads),
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError("the torch worker failed (exit %d):\n%s\n%s"
                           % (proc.returncode, " ".join(command),
                              proc.stderr[-2000:]))
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


# ---------------------------------------------------------------------------
def measure(args, name, units, log=print):
    """One table row: train and score both sides on corpus `name` at H."""
    path = corpus_file(name, args.data_dir, log=log)
    work = tempfile.mkdtemp(prefix="quality-", dir=args.work)
    try:
        train_path, heldout_path, lines = split_lines(
            path, work, args.heldout_lines, args.max_sentences)
        out = os.path.join(work, "run")
        log("%s, H=%d: lstm-accum train on %d lines (held out: the last %d)"
            % (name, units, lines["train_lines"], lines["heldout_lines"]))
        ours = train_lstm_accum(train_path, out, units, args.epochs,
                                args.vocab_size, args.lstm_accum_args,
                                args.threads, os.path.join(work, "train.log"))
        ours.update(_run_summary(out))
        score, train_split, heldout, vocab = score_lstm_accum(
            out, train_path, heldout_path)
        ours.update(score)
        data = os.path.join(work, "ids.npz")
        export_ids(data, train_split, heldout, len(vocab))
        log("%s, H=%d: PyTorch on the same %d training sentences"
            % (name, units, len(train_split)))
        torch = run_torch(args.torch_python, data, units, args.epochs,
                          args.seed, args.threads)
        if torch["tokens"] != ours["tokens"]:
            raise RuntimeError("the two sides scored %d and %d target tokens"
                               % (ours["tokens"], torch["tokens"]))
    finally:
        if args.keep:
            log("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return {"corpus": name, "units": units, "lines": lines,
            "train_sentences": len(train_split),
            "train_tokens": int(train_split.num_tokens + len(train_split)),
            "lstm_accum": ours, "torch": torch}


def format_table(rows, command):
    """The Markdown table of the rows, a line per row of details, and the
    command."""
    out = ["| corpus | H | epochs | lstm-accum held-out ppl | PyTorch "
           "held-out ppl | unigram ppl | lstm-accum / PyTorch | lstm-accum "
           "wall s | PyTorch wall s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, t = r["lstm_accum"], r["torch"]
        out.append("| %s | %d | %d | %.1f | %.1f | %.1f | %.3f | %.0f | %.0f |"
                   % (r["corpus"], r["units"], r["epochs"], a["perplexity"],
                      t["perplexity"], a["unigram"],
                      a["perplexity"] / t["perplexity"], a["wall_s"],
                      t["process_s"]))
    out.append("")
    for r in rows:
        a, t = r["lstm_accum"], r["torch"]
        out.append(
            "* %s, H=%d: %d training sentences (%d target tokens), held-out "
            "%d sentences / %d target tokens (coverage %.1f%%); lstm-accum "
            "%d updates over %d epoch(s), %d validations (best validation "
            "ppl %s), %.0f s in its training loop, last lr %.3g; PyTorch %d "
            "updates, %.0f s training, %d parameters"
            % (r["corpus"], r["units"], r["train_sentences"],
               r["train_tokens"], a["sentences"], a["tokens"],
               100 * a["coverage"], a["updates"], a["epochs_run"],
               a["validations"],
               "%.1f" % a["valid_best"] if a["valid_best"] else "-",
               a["elapsed_s"], a["last_lr"], t["updates"], t["train_s"],
               t["parameters"]))
    out += ["", "```", command, "```"]
    return "\n".join(out)


def _list(kind):
    def parse(text):
        try:
            items = [kind(x) for x in text.split(",") if x]
        except ValueError:
            raise argparse.ArgumentTypeError("expected a comma-separated "
                                             "list, got %r" % text)
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        return items
    return parse


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="lstm-accum's defaults against a PyTorch LSTM language "
                    "model on held-out real text (issue 13); see the module "
                    "docstring.")
    p.add_argument("--corpus", type=_list(str), default=list(CORPORA),
                   help="comma-separated: lee, kjv or a text file (default "
                        "%s)" % ",".join(CORPORA))
    p.add_argument("--units", type=_list(int), default=list(UNITS),
                   help="comma-separated H values (default %s)"
                   % ",".join(map(str, UNITS)))
    p.add_argument("--epochs", type=int, default=EPOCHS,
                   help="epochs of both sides (default %d)" % EPOCHS)
    p.add_argument("--vocab-size", type=int, default=VOCAB_SIZE,
                   help="lstm-accum's --vocab-size (default %d)" % VOCAB_SIZE)
    p.add_argument("--heldout-lines", type=int, default=None, metavar="N",
                   help="held-out text = the last N lines of the corpus "
                        "file (default: the last %d%%%%)"
                        % round(100 * HELDOUT_SHARE))
    p.add_argument("--torch-python", metavar="PYTHON", required=True,
                   help="Python of a separate environment with torch and "
                        "numpy<2 (e.g. /tmp/torchvenv/bin/python; see the "
                        "docstring)")
    p.add_argument("--lstm-accum-args", default="", metavar="ARGS",
                   help="extra 'lstm-accum train' options, one string "
                        "(default none: the defaults are measured)")
    p.add_argument("--max-sentences", type=int, default=0, metavar="N",
                   help="train on only the first N lines of the training "
                        "text (smoke runs; 0: all)")
    p.add_argument("--threads", type=int, default=THREADS,
                   help="BLAS/OpenMP/torch threads of both sides (default "
                        "%d)" % THREADS)
    p.add_argument("--seed", type=int, default=SEED,
                   help="PyTorch's seed (lstm-accum keeps its default "
                        "--seed unless --lstm-accum-args sets it)")
    p.add_argument("--data-dir", default=DATA_DIR,
                   help="where lee and kjv are cached (default data/)")
    p.add_argument("--work", default=None,
                   help="parent of the temporary run directories")
    p.add_argument("--keep", action="store_true",
                   help="keep the run directories (printed)")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.vocab_size < 1 or args.threads < 1 or \
            args.max_sentences < 0 or min(args.units) < 1:
        p.error("--epochs, --vocab-size, --threads and --units must be >= 1 "
                "and --max-sentences >= 0")
    args.lstm_accum_args = shlex.split(args.lstm_accum_args)
    proc = subprocess.run([args.torch_python, "-c",
                           "import torch, numpy"], capture_output=True,
                          text=True) if os.path.isfile(
                              args.torch_python) else None
    if proc is None or proc.returncode != 0:
        p.error("--torch-python %s cannot import torch and numpy (%s); make "
                "the environment as the docstring says"
                % (args.torch_python, "no such file" if proc is None
                   else proc.stderr.strip().splitlines()[-1]))
    return args


def main(argv=None):
    args = parse_args(argv)
    command = " ".join(shlex.quote(x) for x in
                       [".venv/bin/python", "benchmarks/quality.py"] +
                       list(sys.argv[1:] if argv is None else argv))
    t0 = time.time()
    rows = []
    for name in args.corpus:
        for units in args.units:
            row = measure(args, name, units)
            row["epochs"] = args.epochs
            rows.append(row)
    table = format_table(rows, command)
    print("\n%s, %s, %d thread(s), %.0f s in all\n"
          % (platform.node(), time.strftime("%Y-%m-%d %H:%M"), args.threads,
             time.time() - t0))
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "command": command}, f, indent=1,
                      default=str)
    return rows


if __name__ == "__main__":
    main()
