#!/usr/bin/env python
"""Train a word-level LSTM language model on real English news text.

This is what ``./run.sh train`` runs. It

1. obtains the corpus: the Lee background corpus (300 ABC news articles,
   about 2,700 sentences / 67,000 tokens) from the gensim wheel on PyPI,
   downloaded once into ``data/`` with ``pip download`` and never committed
   (see :mod:`lee_corpus` for the source and licence);
2. builds a vocabulary, the model and the GradientAccumulator (Theano
   compiles the training functions: about 30 s the first time, a few
   seconds once Theano's compile cache is warm);
3. trains with gradient accumulation and the library's defaults -- windows
   of 32 sentences fed as equal-length minibatches, one averaged Adam update
   per window -- printing the falling loss and the validation perplexity;
4. prints the validation perplexity next to the unigram baseline and a few
   sentences sampled from the model.

Everything lands in ``runs/example`` (checkpoints, ``metrics.jsonl``,
``curves.png``). The same run from the command line::

    lstm-accum train data/lee_background.txt --out runs/example \\
        --units 192 --epochs 6

Usage: ``python examples/train_lm.py [--epochs N] [--out DIR] [--quick]``.
"""
import argparse
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)       # lee_corpus.py, the corpus downloader beside it

# ------------------------------------------------------------------------------
# What this example chooses; every other setting is the library's default
# (lstm_accum.training.settings: Adam 0.015, windows of 32 sentences, ...),
# which is what a user who gives only a size and a budget gets. Sized to
# finish in a few minutes on 2 CPU cores, compile included.
VOCAB_SIZE = 2000       # most frequent words kept; V = 2003 with specials
NUM_UNITS = 192         # LSTM hidden units H
NUM_EPOCHS = 6          # passes over the ~2,550 training sentences
SEED = 1                # weights, split and minibatch order
NUM_SAMPLES = 5         # sentences sampled at the end
TEMPERATURE = 0.8       # sampling temperature (< 1: more conservative)
OUT = os.path.join(ROOT, "runs", "example")
DATA_DIR = os.path.join(ROOT, "data")
# ------------------------------------------------------------------------------

RUN_FILES = ("checkpoint.npz", "best.npz", "metrics.jsonl", "curves.png")


def phase(number, text):
    print("\n[%d/4] %s" % (number, text), flush=True)


def _fresh(out):
    """Remove a previous example run (only files the trainer writes)."""
    if os.path.isdir(out):
        names = os.listdir(out)
        if all(n in RUN_FILES or n.startswith(".tmp-") for n in names):
            shutil.rmtree(out)
        else:
            sys.exit("%s holds other files; choose another --out" % out)


def main(num_epochs=NUM_EPOCHS, max_updates=0, corpus=None, out=OUT,
         vocab_size=VOCAB_SIZE, num_units=NUM_UNITS, max_sentences=None,
         resume=False, num_samples=NUM_SAMPLES, seed=SEED, **settings):
    """Run the example; returns a dict of the final figures.

    Parameters
    ----------
    num_epochs, max_updates : int
        Training budget (``max_updates=0``: no limit).
    corpus : str, optional
        A sentence file to use instead of the Lee corpus (tests use a tiny
        one).
    out : str
        Run directory; a previous example run there is replaced unless
        ``resume``.
    vocab_size, num_units, seed
        See the block at the top of this file.
    max_sentences : int, optional
        Use only the first sentences of the corpus (a quick smoke run).
    resume : bool
        Continue the run in ``out`` from its checkpoint.
    num_samples : int
        Sentences sampled at the end.
    **settings
        Further :class:`~lstm_accum.training.TrainConfig` settings
        (``accumulate=8``, ``lr=0.1``...; tests use them); by default the
        library's.

    Returns
    -------
    dict
        ``perplexity``, ``best_perplexity``, ``unigram_perplexity``,
        ``updates``, ``samples`` (list of str), ``seconds``.
    """
    from lee_corpus import SOURCE, lee_corpus
    from lstm_accum.evaluation.sampling import sample_sentences
    from lstm_accum.training import TrainConfig, Trainer

    start = time.time()
    phase(1, "corpus")
    if corpus is None:
        corpus = lee_corpus(DATA_DIR, log=print)
        print("text: %s" % SOURCE)
    if max_sentences:
        with open(corpus, encoding="utf-8") as f:
            lines = [next(f) for _ in range(max_sentences)]
        small = os.path.join(os.path.dirname(os.path.abspath(out)),
                             "first-%d-sentences.txt" % max_sentences)
        os.makedirs(os.path.dirname(small), exist_ok=True)
        with open(small, "w", encoding="utf-8") as f:
            f.writelines(lines)
        corpus = small
    print("corpus file: %s" % corpus)
    if not resume:
        _fresh(out)

    phase(2, "vocabulary, model and compiled training functions")
    config = TrainConfig(
        corpus=corpus, out=out, vocab_size=vocab_size, units=num_units,
        epochs=num_epochs, max_updates=max_updates, seed=seed, resume=resume,
        progress="off", log_every=10, **settings)
    t0 = time.time()
    trainer = Trainer(config)
    print("built and compiled in %.0f s" % (time.time() - t0))

    phase(3, "training (one averaged update per window of %d sentences)"
          % config.accumulate)
    result = trainer.run()
    if result.status == "interrupted":
        return None

    phase(4, "evaluation and samples")
    print("validation perplexity %.1f (best %.1f) -- unigram baseline %.1f"
          % (result.last_perplexity, result.best_perplexity,
             result.unigram_perplexity))
    print("the model's perplexity is %.0f%% of the unigram baseline's"
          % (100.0 * result.best_perplexity / result.unigram_perplexity))
    samples = sample_sentences(trainer.model, trainer.vocab, n=num_samples,
                               temperature=TEMPERATURE, seed=seed,
                               max_length=30)
    print("sampled sentences (temperature %.1f):" % TEMPERATURE)
    texts = [" ".join(words) for words in samples]
    for text in texts:
        print("  " + text)
    seconds = time.time() - start
    print("\nfinished in %.0f s; run directory %s (curves.png, "
          "metrics.jsonl, checkpoint.npz)" % (seconds, out))
    return {"perplexity": result.last_perplexity,
            "best_perplexity": result.best_perplexity,
            "unigram_perplexity": result.unigram_perplexity,
            "updates": result.updates, "samples": texts,
            "seconds": seconds}


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=NUM_EPOCHS)
    parser.add_argument("--max-updates", type=int, default=0)
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--corpus", default=None,
                        help="another sentence file instead of the Lee "
                             "corpus")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a one-minute smoke run: 400 sentences, "
                             "small model")
    return parser.parse_args(argv)


if __name__ == "__main__":
    from lstm_accum.backend.openblas import coretype_hint, select_kernels
    from lstm_accum.exceptions import LstmAccumError
    try:
        # First thing (before any change of directory): may start this
        # script again with faster OpenBLAS kernels, and checks them there.
        select_kernels(prog="train_lm.py")
    except LstmAccumError as err:
        sys.exit("error: %s" % err)
    hint = coretype_hint()      # when it did not (e.g. opted out)
    if hint:
        print("train_lm.py: note: " + hint, file=sys.stderr)
    args = _parse(sys.argv[1:])
    kwargs = dict(num_epochs=args.epochs, max_updates=args.max_updates,
                  out=args.out, corpus=args.corpus, resume=args.resume)
    if args.quick:
        kwargs.update(max_sentences=400, num_units=32, vocab_size=300)
    try:
        main(**kwargs)
    except LstmAccumError as err:
        sys.exit("error: %s" % err)
