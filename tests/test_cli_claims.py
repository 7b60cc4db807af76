"""Claims of the README about the command line and MPI, checked end to end.

* Exit status 3 after ``--max-bad-windows`` consecutive non-finite windows
  (a learning rate of 1e30 makes the parameters overflow after a few
  updates), with a one-line ``stopped:`` message; the skip count is shown in
  the progress bar.
* Under ``mpirun -n 2``: ``--partial-window carry`` is refused (one line,
  non-zero status, no rank left behind); an uncaught error on one rank ends
  the job (``MPI_Abort``) within a bounded time while the other waits in a
  collective; and the number of ``MPI_Allreduce`` calls per update, counted
  by a small PMPI library preloaded into both ranks (it logs the size of
  every call, then calls ``PMPI_Allreduce``).

Training runs are float64 in Theano's FAST_COMPILE mode (no C compilation);
the tiny corpus is ``tests/test_train.py``'s.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from test_train import write_corpus

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FLAGS = "floatX=float64,mode=FAST_COMPILE"
#: A bound on any MPI job here: a rank left waiting would hang far longer.
MPI_TIMEOUT = 240
#: The job whose rank 1 raises ends in about a second; a hang would not.
ABORT_TIMEOUT = 60


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "tiny.txt")


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["THEANO_FLAGS"] = FLAGS
    for key in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"):
        env.pop(key, None)
    env.update(extra)
    return env


def _train_args(corpus, out, *extra):
    return ["-m", "lstm_accum.cli", "train", corpus, "--out", str(out),
            "--vocab-size", "40", "--units", "8", "--batch-size", "4",
            "--accumulate", "8", "--seed", "3"] + list(extra)


def _mpirun(n=2, *options):
    if shutil.which("mpirun") is None:
        pytest.fail("these tests need Open MPI's mpirun: apt-get install -y "
                    "openmpi-bin libopenmpi-dev", pytrace=False)
    command = ["mpirun", "-n", str(n), "--oversubscribe", "--mca", "btl",
               "self,vader", "--bind-to", "none"]
    if os.geteuid() == 0:
        command.append("--allow-run-as-root")
    return command + list(options)


def _run(command, env, timeout):
    """(CompletedProcess, seconds); on timeout the whole process group (the
    MPI ranks too) is killed and TimeoutExpired raised."""
    start = time.time()
    proc = subprocess.Popen(command, env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return (subprocess.CompletedProcess(command, proc.returncode, stdout,
                                        stderr), time.time() - start)


def _records(out):
    with open(str(out / "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


# -- non-finite windows ------------------------------------------------------

@pytest.mark.slow
def test_exit_status_3_after_max_bad_windows_and_skips_in_progress_bar(
        corpus, tmp_path):
    out = tmp_path / "diverged"
    proc, _ = _run([sys.executable] + _train_args(
        corpus, out, "--optimizer", "sgd", "--lr", "1e30",
        "--max-bad-windows", "2", "--max-updates", "30", "--valid-every",
        "0", "--progress", "on"), _env(), 600)
    assert proc.returncode == 3, proc.stderr[-3000:]
    # one line for the stop, no traceback
    assert "Traceback" not in proc.stderr
    stopped = [l for l in proc.stderr.splitlines()
               if l.startswith("lstm-accum train: stopped: ")]
    assert len(stopped) == 1, proc.stderr[-3000:]
    assert "2 consecutive windows" in stopped[0]
    assert "max_bad_windows=2" in stopped[0]
    records = [r for r in _records(out) if r["kind"] == "update"]
    bad = [r for r in records if not r["applied"]]
    assert len(bad) == 1                 # the 2nd bad window raised
    assert records[-1] is bad[-1] and bad[0]["skipped"] == 8
    assert all(r["applied"] for r in records[:-1])
    # the bar (tqdm, on stderr) shows the skip count of the bad window
    assert "skipped=8" in proc.stderr, proc.stderr[-3000:]
    assert "non-finite window, 8 samples skipped" in proc.stdout


@pytest.mark.slow
def test_validation_of_a_diverged_model_does_not_crash(corpus, tmp_path):
    proc, _ = _run([sys.executable] + _train_args(
        corpus, tmp_path / "diverged", "--optimizer", "sgd", "--lr", "1e30",
        "--max-bad-windows", "2", "--max-updates", "30", "--valid-every",
        "5", "--progress", "off"), _env(), 600)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode in (0, 3)


# -- MPI ---------------------------------------------------------------------

@pytest.mark.slow
def test_partial_window_carry_is_refused_under_mpi(corpus, tmp_path):
    proc, seconds = _run(_mpirun(2, sys.executable) + _train_args(
        corpus, tmp_path / "carry", "--partial-window", "carry",
        "--progress", "off"), _env(), MPI_TIMEOUT)
    assert proc.returncode != 0
    assert "partial_window='carry'" in proc.stderr
    assert "use 'apply' or 'drop'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "carry" / "checkpoint.npz").exists()
    assert seconds < MPI_TIMEOUT


ABORT_WORKER = r"""
import sys
from lstm_accum.accumulation import Distributed
dist = Distributed(enabled=True)
assert dist.size == 2
if dist.rank == 1:
    raise RuntimeError("planted error on rank 1")
print("rank 0 waits in a collective", flush=True)
dist.sum([1.0])      # never completes: rank 1 is gone
print("rank 0 got past the collective", flush=True)
"""


@pytest.mark.slow
def test_an_error_on_one_rank_ends_the_job(tmp_path):
    """Without MPI_Abort rank 0 would wait in the collective forever (and
    rank 1 in MPI_Finalize); the job must end, non-zero, in bounded time."""
    worker = tmp_path / "abort_worker.py"
    worker.write_text(ABORT_WORKER)
    try:
        proc, seconds = _run(_mpirun(2, sys.executable, str(worker)),
                             _env(), ABORT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("the job was still running after %d s: a rank was left "
                    "waiting" % ABORT_TIMEOUT)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "planted error on rank 1" in text          # the traceback shown
    assert "got past the collective" not in text
    assert seconds < ABORT_TIMEOUT


COUNTER = r"""
/* PMPI interposer: logs the size in bytes of every MPI_Allreduce. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static FILE* log_file;

int MPI_Allreduce(const void* sendbuf, void* recvbuf, int count,
                  MPI_Datatype datatype, MPI_Op op, MPI_Comm comm)
{
    if (!log_file) {
        int rank;
        char path[4096];
        PMPI_Comm_rank(MPI_COMM_WORLD, &rank);
        snprintf(path, sizeof path, "%s.%d", getenv("ALLREDUCE_LOG"), rank);
        log_file = fopen(path, "w");
    }
    int size;
    PMPI_Type_size(datatype, &size);
    if (log_file) {
        fprintf(log_file, "%ld\n", (long)count * size);
        fflush(log_file);
    }
    return PMPI_Allreduce(sendbuf, recvbuf, count, datatype, op, comm);
}
"""

UPDATES = 5


@pytest.fixture(scope="module")
def allreduce_log(corpus, tmp_path_factory):
    """(sizes of rank 0's MPI_Allreduce calls, update records) of a run of
    UPDATES updates under mpirun -n 2 with the counter preloaded."""
    if shutil.which("mpicc") is None:
        pytest.fail("counting MPI calls needs mpicc: apt-get install -y "
                    "libopenmpi-dev", pytrace=False)
    tmp = tmp_path_factory.mktemp("allreduce")
    source = tmp / "count_allreduce.c"
    source.write_text(COUNTER)
    library = tmp / "libcount_allreduce.so"
    subprocess.run(["mpicc", "-shared", "-fPIC", "-O1", "-o", str(library),
                    str(source)], check=True, capture_output=True)
    log = tmp / "allreduce.log"
    out = tmp / "run"
    proc, _ = _run(_mpirun(2, "-x", "LD_PRELOAD=%s" % library,
                           "-x", "ALLREDUCE_LOG=%s" % log, sys.executable)
                   + _train_args(corpus, out, "--max-updates", str(UPDATES),
                                 "--valid-every", "0", "--progress", "off"),
                   _env(), MPI_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed: 2 MPI ranks" in proc.stdout
    sizes = []
    for rank in (0, 1):
        with open("%s.%d" % (log, rank)) as f:
            sizes.append([int(line) for line in f])
    assert sizes[0] == sizes[1]          # both ranks make the same calls
    updates = [r for r in _records(out) if r["kind"] == "update"]
    assert len(updates) == UPDATES
    return sizes[0]


@pytest.mark.slow
def test_one_allreduce_per_update_sums_every_accumulator(allreduce_log):
    """One call per update moves the buffer of all accumulators and counters
    (the largest call, the same size every time, far larger than any
    other)."""
    big = max(allreduce_log)
    assert sum(1 for s in allreduce_log if s == big) == UPDATES
    others = [s for s in allreduce_log if s != big]
    # 8 units, 28 words: the buffer holds thousands of float64 numbers
    assert big > 1000 * 8 and all(s <= 64 for s in others), allreduce_log


@pytest.mark.slow
def test_per_update_one_buffer_allreduce_and_one_interrupt_flag(
        allreduce_log):
    """What the README says, exactly: per update one MPI_Allreduce of the
    buffer and one of the 8-byte Ctrl-C flag (the ranks agree whether to
    stop), and nothing else between updates."""
    big = max(allreduce_log)
    where = [i for i, s in enumerate(allreduce_log) if s == big]
    assert len(where) == UPDATES
    for a, b in zip(where, where[1:]):
        assert allreduce_log[a + 1:b] == [8], allreduce_log
