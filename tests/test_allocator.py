"""glibc's malloc keeps freed memory for the next call (backend/allocator).

Measured from the outside: page faults of a loop that allocates and frees
arrays of a few MB (of changing sizes, as a training step's intermediate
arrays), in a fresh process -- with lstm_accum imported, and with the
user's own malloc settings in the environment, which must win.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r"""
import json, resource, sys
import numpy as np
import lstm_accum.backend as backend
from lstm_accum.backend import allocator
sizes = json.loads(sys.argv[1])
for k in range(10):                       # warm up: the heap grows once
    a = [np.ones(n // 4, np.float32) for n in sizes]; del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for k in range(50):
    a = [np.ones(n // 4, np.float32) for n in sizes]; del a
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"faults_per_round": faults / 50.0,
                  "applied": allocator.keep_freed_memory()}))
"""

def _glibc():
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):
        return False


GLIBC = _glibc()


#: Bytes of the arrays of one round: a few MB each, as a small model's
#: step; and arrays above glibc's largest mmap threshold (32 MB), as a
#: large model's (H=4096: 268 MB).
SMALL = [3_000_000, 5_000_000, 2_000_000, 8_000_000, 4_000_000]
LARGE = [40_000_000, 120_000_000, 70_000_000]


def _probe(extra_env, sizes=SMALL):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.update(extra_env)
    env["PYTHONPATH"] = ROOT
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(sizes)],
                         env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_memory_is_reused_without_page_faults():
    """22 MB allocated and freed per round: with our thresholds no new
    pages (a round would otherwise touch ~5,400 fresh ones).  Another C
    library is left alone."""
    got = _probe({})
    assert got["applied"] is GLIBC
    if GLIBC:
        assert got["faults_per_round"] < 50, got


def test_large_arrays_are_reused_too():
    """230 MB in arrays of 40-120 MB per round: no new pages either (a
    round would otherwise map and fault each array afresh)."""
    got = _probe({}, LARGE)
    assert got["applied"] is GLIBC
    if GLIBC:
        assert got["faults_per_round"] < 50, got
    mapped = _probe({"MALLOC_MMAP_THRESHOLD_": "33554432"}, LARGE)
    if GLIBC:
        assert mapped["faults_per_round"] > 1000, mapped


@pytest.mark.parametrize("env", [
    {"MALLOC_TRIM_THRESHOLD_": "131072", "MALLOC_MMAP_THRESHOLD_": "131072"},
    {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072:"
                       "glibc.malloc.trim_threshold=131072"}])
def test_the_users_malloc_settings_win(env):
    """The user's thresholds stay: every round maps and faults its pages
    again (22 MB: 5,400 pages of 4 KB, fewer where the kernel maps some
    as huge pages)."""
    got = _probe(env)
    assert got["applied"] is False
    if GLIBC:
        assert got["faults_per_round"] > 1000, got
