"""The benchmark's ratios hold (never absolute times): a reduced
``benchmarks/paths.py`` run, in a subprocess, as CI runs it.

Four paths at a small size (V=2000, H=64, windows of N=32 sentences,
float32), in their own worker processes, timed round-robin in one run
(medians of ``REPEATS`` windows each), and every ratio taken from that one
run:

* **accumulation**, like with like: ``sample-onehot-scan`` (our on-device
  accumulation, one sentence per call, on exactly the question's network:
  Lasagne's scan ``LSTMLayer``) against ``question`` (the same network, its
  gradients returned to numpy and summed there): at least
  ``ACCUM_RATIO``;
* **fused against scan**, a separate line: ``sample-onehot`` (the same
  accumulation with our fused LSTM operation) against
  ``sample-onehot-scan``: at least ``FUSED_RATIO``;
* **our fastest path**: ``bucket-ids`` (equal-length minibatches of 32, id
  input, fused) against ``question``: at least ``BUCKET_RATIO``.

The thresholds (``ACCUM_RATIO`` 0.7, ``FUSED_RATIO`` 1.2,
``BUCKET_RATIO`` 4.0) sit below the lowest ratio this command measures on
a shared 2-core machine by about the spread between runs or more, so they
guard against getting worse, not against noise. At this size our
accumulation on the question's network is about as fast as the
question's approach (0.78-1.06x, ``benchmarks/README.md`` has the table):
the per-sentence speed-up of the benchmark's row (b) is the fused LSTM's,
not the accumulator's. A run takes about 25 s.

A ratio that falls short is measured once more in a new run, and then
*all* ratios come from that run (never the best of two runs per ratio),
so a slow path cannot pass on one run's luck for one ratio and another
run's for the next.  Both tables are printed.

It also checks that the table and the JSON results are complete and
consistent (ratio column, token counts, a bucket call holding many
sentences), so a benchmark that silently measures nothing fails.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ACCUM_RATIO = 0.7    # sample-onehot-scan / question (measured 0.78-1.06)
FUSED_RATIO = 1.2    # sample-onehot / sample-onehot-scan (1.43-1.94)
BUCKET_RATIO = 4.0   # bucket-ids / question (5.50-8.69)
REPEATS = 9          # timed windows per path (medians)
PATHS = ("question", "sample-onehot-scan", "sample-onehot", "bucket-ids")
#: name -> (numerator path, denominator path, threshold)
RATIOS = {
    "accumulation": ("sample-onehot-scan", "question", ACCUM_RATIO),
    "fused": ("sample-onehot", "sample-onehot-scan", FUSED_RATIO),
    "bucket": ("bucket-ids", "question", BUCKET_RATIO),
}


def measure(repo_root, tmp_path):
    """One reduced paths.py run: ({ratio name: value}, table)."""
    out = tmp_path / "paths.json"
    cmd = [sys.executable, os.path.join(repo_root, "benchmarks", "paths.py"),
           "--units", "64", "--windows", "32", "--paths", ",".join(PATHS),
           "--repeats", str(REPEATS), "--min-repeats", str(REPEATS),
           "--cold", "none", "--sentences", "3000", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    runs = {r["path"]: r for r in results["runs"]}
    assert sorted(runs) == sorted(PATHS)
    rate = {}
    for path, r in runs.items():
        w = r["windows"]["32"]
        assert w["repeats"] == REPEATS
        assert w["min"] <= w["median"] <= w["max"] and w["min"] > 0
        assert w["samples"] >= 32
        # real target tokens: words + </s>, about 23 per sentence here
        assert 15 < w["tokens"] / w["samples"] < 35
        assert r["rss_mb"] > 0 and r["compile_s"] > 0
        rate[path] = w["median"]
    # one sentence per call on the per-sentence paths, many per bucket call
    for path in ("question", "sample-onehot-scan", "sample-onehot"):
        w = runs[path]["windows"]["32"]
        assert w["calls"] == w["samples"]
    assert runs["bucket-ids"]["windows"]["32"]["calls"] < \
        runs["bucket-ids"]["windows"]["32"]["samples"] / 4
    assert results["gemm"]["peak"] > 0
    ratios = {name: rate[num] / rate[den]
              for name, (num, den, _) in RATIOS.items()}
    table = proc.stdout
    assert "| (a) question |" in table and "| (d) bucket-ids |" in table
    assert "| (b') sample-onehot-scan |" in table
    assert "442.8 GB" in table          # N=1024 gradients at H=4096
    print(table)
    print("ratios: " + ", ".join("%s %.2fx" % kv for kv in ratios.items()))
    assert np.isfinite(list(ratios.values())).all()
    return ratios, table


def shortfalls(ratios):
    """The ratios below their threshold, as messages."""
    return ["%s: %s only %.2fx %s (threshold %.2fx)" % (
        name, num, ratios[name], den, threshold)
        for name, (num, den, threshold) in RATIOS.items()
        if not ratios[name] >= threshold]


@pytest.mark.slow
def test_reduced_benchmark_ratios(repo_root, tmp_path):
    # These machines are shared: a burst of load on one path can sink one
    # run's median, so a run that falls short is repeated once and the
    # second run decides, every ratio from it (both tables are printed).
    ratios, _ = measure(repo_root, tmp_path)
    if shortfalls(ratios):
        print("first run short: %s; measuring again"
              % "; ".join(shortfalls(ratios)))
        ratios, _ = measure(repo_root, tmp_path)
    assert not shortfalls(ratios), "; ".join(shortfalls(ratios))
