"""Data-parallel accumulation over MPI.

The equivalence tests run ``tests/mpi_worker.py`` twice on the same fixed
windows (float64): once as one process without MPI, once under
``mpirun -n 2 --oversubscribe`` with every window split across the ranks.
The distributed parameters must equal the single-process ones (rel. < 1e-10)
and be bit-identical on both ranks.  Open MPI and mpi4py are required: when
they are missing these tests fail and say how to install them.

The other tests need no MPI and check sharding, the single-process fallback
and the error messages.
"""
import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lstm_accum.accumulation import comm, mpi
from lstm_accum.accumulation.distributed import (Distributed, WindowSums,
                                                 check_resume)
from lstm_accum.accumulation.mpi import (local_mpirun_command, mpi_available,
                                         mpirun_world_size)
from lstm_accum.accumulation.sharding import shard_indices, shard_owner
from lstm_accum.exceptions import IncompatibleStateError, InputError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "mpi_worker.py")
INSTALL = ("apt-get install -y openmpi-bin libopenmpi-dev && "
           ".venv/bin/pip install mpi4py")
TIMEOUT = 900  # seconds; a cold Theano cache compiles the LSTM first


def _require_mpi_tools():
    missing = []
    if shutil.which("mpirun") is None:
        missing.append("mpirun (Open MPI)")
    if importlib.util.find_spec("mpi4py") is None:
        missing.append("mpi4py")
    if missing:
        pytest.fail("the distributed tests need %s, which %s not installed: "
                    "run '%s'" % (" and ".join(missing),
                                  "is" if len(missing) == 1 else "are",
                                  INSTALL), pytrace=False)


def _run_in_turn(commands, env, out):
    """Run the commands one after the other; fail with the output of the
    first that fails.

    Not side by side: the first run (one process) fills Theano's compile
    cache, so that the ranks of the next only load from it.  Processes that
    compile into one cold cache at once can fail in Theano 1.0
    (``ModuleNotFoundError: No module named 'tmp...'``): a process's cache
    refresh removes module directories it finds empty or incomplete, which
    another process may be writing or about to load.  Output goes to files
    (a full pipe would block a process that logs a lot)."""
    for i, command in enumerate(commands):
        with open(str(out / ("run%d.log" % i)), "w+") as log:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
            try:
                proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail("%s did not finish in %d s" % (" ".join(command),
                                                           TIMEOUT))
            log.seek(0)
            text = log.read()
        if proc.returncode != 0:
            pytest.fail("%s exited with %d:\n%s" % (
                " ".join(command), proc.returncode, text[-3000:]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(single rank-0 record, [dist rank-0 record, dist rank-1 record])."""
    _require_mpi_tools()
    out = tmp_path_factory.mktemp("mpi")
    env = dict(os.environ)
    env["THEANO_FLAGS"] = "floatX=float64"
    for key in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"):
        env.pop(key, None)
    common = ["--normalize", "tokens"]
    _run_in_turn([
        [sys.executable, WORKER, str(out / "single"), "--mode", "single"]
        + common,
        local_mpirun_command(2) + [sys.executable, WORKER, str(out / "dist"),
                                   "--mode", "dist"] + common], env, out)

    def load(name):
        with np.load(str(out / name), allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    return (load("single.rank0.npz"),
            [load("dist.rank0.npz"), load("dist.rank1.npz")])


def _params(record):
    return {k: v for k, v in record.items() if k.startswith("param/")}


def test_two_ranks_equal_one_process(runs):
    single, (rank0, _) = runs
    assert rank0["size"] == 2
    params = _params(single)
    assert params and set(params) == set(_params(rank0))
    for name, want in params.items():
        got = rank0[name]
        rel = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert rel < 1e-10, (name, rel)


def test_training_changed_the_parameters(runs):
    single, _ = runs
    # init_after_broadcast is the first parameter before training.
    trained = single["param/" + str(single["first_param"])]
    assert np.max(np.abs(trained - single["init_after_broadcast"])) > 1e-3


def test_window_results_summed_over_ranks(runs):
    single, ranks = runs
    want = single["results"]   # applied, samples, tokens, loss, norm, skipped
    assert want.shape == (3, 6)
    # Hand-counted: windows of 5, 4, 3 sentences, one NaN sentence in the
    # second window.
    assert want[:, 1].tolist() == [5, 3, 3]
    assert want[:, 5].tolist() == [0, 1, 0]
    for record in ranks:
        got = record["results"]
        np.testing.assert_array_equal(got[:, [0, 1, 2, 5]],
                                      want[:, [0, 1, 2, 5]])
        np.testing.assert_allclose(got[:, [3, 4]], want[:, [3, 4]],
                                   rtol=1e-10, atol=0)


def test_rank_share_and_window_sums_are_apart(runs):
    """acc.samples/tokens/skipped count this rank's share until the
    all-reduce; allreduce_window returns the window's sums, which apply
    then reports."""
    single, (rank0, rank1) = runs
    # Hand-counted: windows of 5, 4, 3 sentences; rank 0 takes sentences
    # 0, 2, 4 of a window, rank 1 sentences 1, 3; sentence 2 of the second
    # window (rank 0's) holds the NaN.
    assert rank0["shares"][:, 0].tolist() == [3, 1, 2]
    assert rank0["shares"][:, 2].tolist() == [0, 1, 0]
    assert rank1["shares"][:, 0].tolist() == [2, 2, 1]
    assert rank1["shares"][:, 2].tolist() == [0, 0, 0]
    # One process: its share is the window.
    np.testing.assert_array_equal(single["shares"], single["sums"][:, :3])
    for record in (single, rank0, rank1):
        sums = record["sums"]     # samples, tokens, skipped, summed loss
        np.testing.assert_array_equal(
            sums[:, :3], rank0["shares"] + rank1["shares"])
        np.testing.assert_array_equal(sums[:, [0, 1, 2]],
                                      record["results"][:, [1, 2, 5]])
        np.testing.assert_allclose(sums[:, 3], single["sums"][:, 3],
                                   rtol=1e-10, atol=0)


def test_ranks_stay_identical_and_start_from_rank0(runs):
    _, (rank0, rank1) = runs
    # Built with different seeds, so they differed before the broadcast...
    assert not np.allclose(rank0["init_before_broadcast"],
                           rank1["init_before_broadcast"])
    # ...and after it both hold rank 0's weights.
    np.testing.assert_array_equal(rank1["init_after_broadcast"],
                                  rank0["init_before_broadcast"])
    np.testing.assert_array_equal(rank0["init_after_broadcast"],
                                  rank0["init_before_broadcast"])
    for name, value in _params(rank0).items():
        np.testing.assert_array_equal(rank1[name], value)


def test_allreduce_is_the_numpy_sum_in_one_buffer(runs):
    _, ranks = runs
    for record in ranks:
        # Compared with a numpy sum of every rank's local accumulators and
        # counters, gathered with plain mpi4py.
        assert record["allreduce_max_rel"] < 1e-15
        # One buffer: every parameter plus 4 counters, 8 bytes each.
        assert record["allreduce_bytes"] == record["expected_bytes"]


def test_broadcast_arrays_without_pickle(runs):
    _, ranks = runs
    assert all(bool(r["broadcast_arrays_ok"]) for r in ranks)
    for record in ranks:
        # What makes it pickle-free: the worker hands broadcast_arrays a
        # communicator that records every call. Only the buffer-based Bcast
        # (numpy buffers, never the lowercase pickle-based bcast) was used,
        # and pickle.dumps/loads were never called.
        calls = [str(c) for c in record["broadcast_calls"]]
        assert set(calls) <= {"Get_rank", "Bcast"}, calls
        # length, header, then the 4 non-empty arrays
        assert calls.count("Bcast") == 6, calls
        assert bool(record["broadcast_numpy_buffers"])
        assert int(record["broadcast_pickle_calls"]) == 0


def test_each_array_is_checked_once_per_call(runs):
    """check= replaces the generic check, also when the window is summed
    over ranks: one check per accumulate call."""
    single, ranks = runs
    # Windows of 5, 4, 3 sentences: rank 0 takes 3 + 2 + 2, rank 1 2 + 2 + 1.
    for record, calls in zip([single] + ranks, [12, 7, 5]):
        assert int(record["accumulate_calls"]) == calls
        assert int(record["check_calls"]) == calls


def test_resume_with_another_number_of_ranks_is_refused(runs):
    _, ranks = runs
    for record in ranks:
        assert record["state_size"] == 2
        message = str(record["wrong_size_error"])
        assert "3 process(es)" in message and "has 2" in message, message
        assert "mpirun -n 3" in message


def test_single_process_never_imports_mpi(runs):
    single, (rank0, _) = runs
    assert not bool(single["mpi_imported"])
    assert bool(rank0["mpi_imported"])


# -- no MPI needed -------------------------------------------------------

def test_shard_indices_hand_values():
    assert shard_indices(7, 0, 3).tolist() == [0, 3, 6]
    assert shard_indices(7, 1, 3).tolist() == [1, 4]
    assert shard_indices(7, 2, 3).tolist() == [2, 5]
    assert shard_indices(2, 2, 3).tolist() == []
    assert shard_indices(5, 0, 1).tolist() == [0, 1, 2, 3, 4]
    assert shard_indices(5, 0, 1).dtype == np.int64


def test_shard_indices_partition():
    for n in range(0, 12):
        for size in range(1, 5):
            parts = [shard_indices(n, r, size) for r in range(size)]
            assert sorted(np.concatenate(parts).tolist()) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shard_owner_is_the_rule_of_shard_indices_and_owns():
    """Minibatch b belongs to rank b % size: shard_owner, shard_indices and
    Distributed.owns are one rule (the trainer numbers minibatches in the
    epoch's plan and asks owns(b))."""
    assert [shard_owner(b, 3) for b in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    for n in range(0, 12):
        for size in range(1, 5):
            for rank in range(size):
                assert [b for b in range(n) if shard_owner(b, size) == rank] \
                    == shard_indices(n, rank, size).tolist()
                dist = Distributed(enabled=False)
                dist.rank, dist.size = rank, size   # as if under mpirun
                assert [b for b in range(n) if dist.owns(b)] == \
                    shard_indices(n, rank, size).tolist()
                window = list(range(100, 100 + n))
                assert dist.shard(window) == [window[b] for b in range(n)
                                              if dist.owns(b)]
    single = Distributed(enabled=False)
    assert all(single.owns(b) for b in range(5))
    for bad in [(-1, 2), (3, 0), (2.0, 2), (True, 2)]:
        with pytest.raises(InputError):
            shard_owner(*bad)


@pytest.mark.parametrize("args", [(-1, 0, 2), (4, 2, 2), (4, -1, 2),
                                  (4, 0, 0), (4.0, 0, 1), (4, True, 2)])
def test_shard_indices_refuses_bad_arguments(args):
    with pytest.raises(InputError):
        shard_indices(*args)


def test_single_process_hooks_are_noops():
    dist = Distributed(enabled=False)
    assert dist.is_root and dist.rank == 0 and dist.size == 1
    window = [("a", 1), ("b", 2), ("c", 3)]
    assert dist.shard(window) is window
    assert isinstance(dist.comm, comm.OneProcess)
    check_resume(None, dist.size)
    check_resume(1, dist.size)
    arrays = {"x": np.arange(3)}
    assert dist.broadcast_arrays(arrays)["x"] is arrays["x"]
    assert dist.all_agree(True) and not dist.all_agree(False)
    assert dist.any_true(True) and not dist.any_true(False)
    assert dist.sum([1.5, 2]).tolist() == [1.5, 2.0]
    dist.barrier()
    with pytest.raises(SystemExit) as info:
        dist.abort(3)
    assert info.value.code == 3


def test_one_process_runs_the_same_calls_and_moves_nothing():
    """Without MPI a loop makes the same calls: broadcast_parameters leaves
    the state as it is, allreduce_window leaves the window as it is and
    returns its counts and summed loss, and apply reports them."""
    from lstm_accum.backend import theano
    from lstm_accum.accumulation import GradientAccumulator
    floatX = theano.config.floatX
    w = theano.shared(np.array([1.0, -2.0, 3.0], dtype=floatX), name="w")
    x = theano.tensor.matrix("x")
    acc = GradientAccumulator(((x * w) ** 2).sum(), [w], [x],
                              normalize="samples", num_tokens=2 * x.shape[0])
    dist = Distributed(enabled=False)
    before = acc.state()
    dist.broadcast_parameters(acc)
    after = acc.state()
    assert sorted(before) == sorted(after)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    acc.accumulate(np.ones((2, 3), dtype=floatX))
    acc.accumulate(np.full((1, 3), 2.0, dtype=floatX))
    grads = acc.accumulators[0].get_value().copy()
    sums = dist.allreduce_window(acc)
    assert isinstance(sums, WindowSums)
    # Each row of ones costs |w|^2 = 14, the row of twos 4 * 14.
    assert (sums.samples, sums.tokens, sums.skipped) == (3, 6, 0)
    assert sums.loss == pytest.approx(2 * 14 + 56, rel=1e-6)
    assert sums.bytes == 0 and sums.wait_seconds == 0.0
    assert (acc.samples, acc.tokens, acc.skipped) == (3, 6, 0)
    np.testing.assert_array_equal(acc.accumulators[0].get_value(), grads)
    result = acc.apply()
    assert (result.samples, result.tokens, result.skipped) == (3, 6, 0)
    assert result.loss == pytest.approx(sums.loss / 3, rel=1e-6)


def test_exit_all_without_mpi_is_sys_exit(monkeypatch):
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    with pytest.raises(SystemExit) as info:
        mpi.exit_all(2)
    assert info.value.code == 2
    assert "mpi4py.MPI" not in sys.modules


def test_check_resume_names_both_sizes():
    with pytest.raises(IncompatibleStateError, match=r"2 process.*has 1"):
        check_resume(2, 1)
    with pytest.raises(IncompatibleStateError, match=r"1 process.*has 4"):
        check_resume(None, 4)
    check_resume(4, 4)


def test_mpirun_world_size_from_environment():
    assert mpirun_world_size({}) is None
    assert mpirun_world_size({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert mpirun_world_size({"PMI_SIZE": "3"}) == 3
    assert Distributed(enabled=None).enabled is (
        (mpirun_world_size() or 1) > 1)


def test_missing_mpi4py_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    assert mpi_available() is False
    with pytest.raises(InputError) as info:
        Distributed(enabled=True)
    message = str(info.value)
    assert "apt-get install openmpi-bin libopenmpi-dev" in message
    assert "pip install mpi4py" in message
    # Started by mpirun with 2 ranks: enabled automatically, same message.
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    with pytest.raises(InputError, match="pip install mpi4py"):
        Distributed(enabled=None)
    with pytest.raises(InputError, match="pip install mpi4py"):
        comm.MPICommunicator()


def test_local_mpirun_command():
    command = local_mpirun_command(3)
    assert command[:3] == ["mpirun", "-n", "3"]
    assert "--oversubscribe" in command
    assert command[command.index("--mca") + 1:][:2] == ["btl", "self,vader"]
    assert ("--allow-run-as-root" in command) == (os.geteuid() == 0)


def test_cli_under_mpirun_equals_one_process(tmp_path):
    """`mpirun -n 2 lstm-accum train ...` just works, and its checkpoint holds
    the parameters of the same run on one process (float64)."""
    _require_mpi_tools()
    rng = np.random.RandomState(3)
    words = ["the", "cat", "dog", "sat", "on", "a", "mat", "ran", "big"]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(
        " ".join(rng.choice(words, size=rng.randint(2, 7)))
        for _ in range(120)) + "\n")
    env = dict(os.environ)
    env["THEANO_FLAGS"] = "floatX=float64"
    env["PYTHONPATH"] = ROOT
    for key in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"):
        env.pop(key, None)
    args = [str(corpus), "--units", "6", "--vocab-size", "12",
            "--batch-size", "3", "--accumulate", "12", "--max-updates", "5",
            "--valid-every", "5", "--normalize", "tokens", "--progress",
            "off", "--seed", "4"]
    cli = [sys.executable, "-m", "lstm_accum.cli", "train"]
    _run_in_turn([cli + args + ["--out", str(tmp_path / "one"),
                                "--distributed", "off"],
                  local_mpirun_command(2) + cli + args
                  + ["--out", str(tmp_path / "two")]], env, tmp_path)
    log = (tmp_path / "run1.log").read_text()
    assert "distributed: 2 MPI ranks" in log
    assert log.count("done (") == 1          # only rank 0 reports

    def params(run):
        with np.load(str(tmp_path / run / "checkpoint.npz"),
                     allow_pickle=False) as f:
            return {k: f[k] for k in f.files if k.startswith("model/")}
    one, two = params("one"), params("two")
    assert one and sorted(one) == sorted(two)
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-10, atol=0,
                                   err_msg=key)
