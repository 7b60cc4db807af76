"""How fast a large text file becomes a cached EncodedCorpus, and in how much
memory.

Writes a synthetic corpus to a temporary directory -- 1,000,000 sentences by
default, word ids drawn from a Zipf law (exponent 1.05) over 100,000 random
lower-case words, sentence lengths log-normal with median 20, clipped to
2..80 (about 22M tokens, ~130 MB) -- and then measures, each in a fresh
process so that peak RSS belongs to that step alone:

* ``two-pass``  ``count_words`` + ``Vocabulary.build`` + ``encode_file``
  (no cache): the counting pass and the encoding pass;
* ``one-pass``  ``prepare_corpus`` (no cache): vocabulary and ids from a
  single read;
* ``cache-write`` ``prepare_corpus`` with a cache directory (includes the
  sha256 of the file and writing the ``.npz``);
* ``cache-read`` the same call again: loads from the cache.

CPU seconds (user + system of the child) are shown beside wall-clock
seconds: on a shared machine they are the fairer "one core" figure. Peak RSS
is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child,
which imports ``lstm_accum`` (and so Theano); the RSS right after the import
is shown as the baseline.

Usage::

    .venv/bin/python benchmarks/encode_corpus.py [--sentences 1000000]
        [--vocab-size 2000] [--keep DIR]
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Defaults -----------------------------------------------------------------
SENTENCES = 1000000     # lines in the synthetic corpus
TYPES = 100000          # distinct words
ZIPF = 1.05             # exponent of the word-frequency law
MEDIAN_LEN = 20         # median sentence length in tokens
VOCAB_SIZE = 2000       # K, words kept besides <unk>, <s>, </s>
SEED = 1234


def make_corpus(path, sentences=SENTENCES, seed=SEED):
    """Write the synthetic corpus; return (sentences, tokens)."""
    rng = np.random.RandomState(seed)
    words = set()
    while len(words) < TYPES:
        n = rng.poisson(4.0) + 1
        words.add("".join(chr(97 + c) for c in rng.randint(0, 26, size=n)))
    words = np.array(sorted(words), dtype=object)
    rng.shuffle(words)
    p = 1.0 / np.arange(1, TYPES + 1) ** ZIPF
    cdf = np.cumsum(p / p.sum())
    lengths = np.clip(np.round(rng.lognormal(np.log(MEDIAN_LEN), 0.5,
                                             size=sentences)), 2, 80)
    lengths = lengths.astype(np.int64)
    total = 0
    with open(path, "w", encoding="utf-8") as f:
        for a in range(0, sentences, 50000):
            lens = lengths[a:a + 50000]
            ids = np.searchsorted(cdf, rng.random_sample(int(lens.sum())))
            ids = np.minimum(ids, TYPES - 1)
            toks = words[ids].tolist()
            pos = 0
            lines = []
            for n in lens.tolist():
                lines.append(" ".join(toks[pos:pos + n]))
                pos += n
            f.write("\n".join(lines))
            f.write("\n")
            total += pos
    return sentences, total


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(mode, path, vocab_size, cache_dir):
    """Run one measured step in this (fresh) process; print a JSON line."""
    sys.path.insert(0, ROOT)
    from lstm_accum.data import corpus as C
    from lstm_accum.data.vocabulary import Vocabulary
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    if mode == "two-pass":
        counts, _ = C.count_words(path)
        t1 = time.perf_counter()
        vocab = Vocabulary.build(counts, vocab_size)
        corpus, stats = C.encode_file(path, vocab, use_cache=False)
        extra = {"count_pass_s": t1 - t0,
                 "encode_pass_s": time.perf_counter() - t1}
    elif mode == "one-pass":
        vocab, corpus, stats = C.prepare_corpus(path, vocab_size,
                                                use_cache=False)
        extra = {}
    else:
        vocab, corpus, stats = C.prepare_corpus(path, vocab_size,
                                                cache_dir=cache_dir)
        extra = {"from_cache": stats.from_cache}
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {"mode": mode, "seconds": seconds, "cpu_seconds": cpu,
           "peak_rss_mb": peak,
           "import_rss_mb": base, "sentences": len(corpus),
           "tokens": corpus.num_tokens, "coverage": stats.coverage,
           "V": len(vocab)}
    out.update(extra)
    print(json.dumps(out))


def run_child(mode, path, vocab_size, cache_dir):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode,
           "--file", path, "--vocab-size", str(vocab_size),
           "--cache-dir", cache_dir]
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE,
                         universal_newlines=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(sentences=SENTENCES, vocab_size=VOCAB_SIZE, keep=None):
    tmp = keep or tempfile.mkdtemp(prefix="encode_corpus_")
    path = os.path.join(tmp, "synthetic.txt")
    if not os.path.exists(path):
        print("writing %d synthetic sentences to %s ..." % (sentences, path))
        t0 = time.perf_counter()
        make_corpus(path, sentences)
        print("  %.1f s" % (time.perf_counter() - t0))
    size_mb = os.path.getsize(path) / 2.0 ** 20
    cache_dir = os.path.join(tmp, "cache")
    if os.path.isdir(cache_dir):          # cache-write must start cold
        import shutil
        shutil.rmtree(cache_dir)
    rows = [run_child(m, path, vocab_size, cache_dir)
            for m in ("two-pass", "one-pass", "cache-write", "cache-read")]
    print("\nfile: %.1f MB, %d sentences, %d tokens, V=%d, token coverage "
          "%.3f" % (size_mb, rows[0]["sentences"], rows[0]["tokens"],
                    rows[0]["V"], rows[0]["coverage"]))
    print("%-12s %9s %9s %14s %12s %12s"
          % ("step", "wall s", "CPU s", "Mtokens/CPU s", "peak RSS MB",
             "(import MB)"))
    for r in rows:
        print("%-12s %9.2f %9.2f %14.2f %12.0f %12.0f"
              % (r["mode"], r["seconds"], r["cpu_seconds"],
                 r["tokens"] / r["cpu_seconds"] / 1e6, r["peak_rss_mb"],
                 r["import_rss_mb"]))
    tp = rows[0]
    print("two-pass split: counting %.2f s, encoding %.2f s"
          % (tp["count_pass_s"], tp["encode_pass_s"]))
    assert rows[3]["from_cache"] and not rows[2]["from_cache"]
    if keep is None:
        import shutil
        shutil.rmtree(tmp)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sentences", type=int, default=SENTENCES)
    ap.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    ap.add_argument("--keep", help="directory to keep the corpus in "
                    "(reused when it exists)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.file, a.vocab_size, a.cache_dir)
    else:
        main(a.sentences, a.vocab_size, a.keep)
