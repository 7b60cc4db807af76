"""One training run of a tiny fixed problem, single-process or under mpirun.

Run by ``tests/test_distributed.py`` (not collected by pytest itself)::

    python tests/mpi_worker.py OUT_PREFIX --mode single --normalize samples
    mpirun -n 2 ... python tests/mpi_worker.py OUT_PREFIX --mode dist ...

with ``THEANO_FLAGS=floatX=float64``.  Both modes go through
:class:`lstm_accum.accumulation.distributed.Distributed` exactly as a
training loop does (``broadcast_parameters``, ``shard``,
``allreduce_window`` then ``apply``), on the same windows of the same
sentences; ``single`` never imports mpi4py.  Each rank writes
``OUT_PREFIX.rank<r>.npz`` with its final parameters, the per-window apply
results and this rank's share of each window, how often its ``check=`` ran,
and the outcome of checks that need MPI (allreduce against a numpy sum of
every rank's local accumulators, the parameter broadcast,
``broadcast_arrays`` of mixed dtypes through a communicator that records
its calls, with mpi4py's pickling counted, resuming through the checkpoint
store with another number of ranks).
"""
import argparse
import os
import pickle
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lstm_accum.backend import theano, lasagne  # noqa: E402
from lstm_accum.accumulation import (Distributed, GradientAccumulator,  # noqa: E402
                                     SIZE_KEY)
from lstm_accum.training.store import (accumulator_arrays,  # noqa: E402
                                       load_accumulator_arrays)
from lstm_accum.checks import check_arrays  # noqa: E402
from lstm_accum.exceptions import IncompatibleStateError  # noqa: E402
from lstm_accum.models import build_model  # noqa: E402

V, H = 11, 4
#: Sentences per window: odd and unequal, so the shares of 2 ranks differ.
WINDOWS = (5, 4, 3)
#: (window, position) of a sentence whose input holds a NaN: the guard must
#: skip it on whichever rank holds it, and the skip count must be summed.
NAN_SENTENCE = (1, 2)


def corpus():
    """The fixed windows: lists of (X one-hot (1, T, V), y int32 (T,))."""
    rng = np.random.RandomState(1234)
    windows = []
    for w, n in enumerate(WINDOWS):
        window = []
        for i in range(n):
            words = rng.randint(3, V, size=rng.randint(1, 6))
            ids = np.concatenate([[1], words])            # <s> w1 .. wn
            y = np.concatenate([words, [2]]).astype(np.int32)  # w1 .. </s>
            X = np.zeros((1, len(ids), V), dtype=theano.config.floatX)
            X[0, np.arange(len(ids)), ids] = 1
            if (w, i) == NAN_SENTENCE:
                X[0, 0, 0] = np.nan
            window.append((X, y))
        windows.append(window)
    return windows


class RecordingComm(object):
    """A communicator that forwards every call and records its name, and
    whether each ``Bcast`` buffer was a numpy array."""

    def __init__(self, comm):
        self._comm = comm
        self.calls = []
        self.numpy_buffers = True

    def __getattr__(self, name):
        method = getattr(self._comm, name)

        def call(*args, **kwargs):
            self.calls.append(name)
            if name == "Bcast":
                buf = args[0] if args else kwargs.get("buf")
                array = buf[0] if isinstance(buf, (list, tuple)) else buf
                self.numpy_buffers &= isinstance(array, np.ndarray)
            return method(*args, **kwargs)
        return call


class CountingPickle(object):
    """Counts the pickling mpi4py does (its lowercase methods use
    ``MPI.pickle``) while installed."""

    def __init__(self, mpi):
        self.mpi, self.calls = mpi, 0

    def dumps(self, *args, **kwargs):
        self.calls += 1
        return pickle.dumps(*args, **kwargs)

    def loads(self, *args, **kwargs):
        self.calls += 1
        return pickle.loads(*args, **kwargs)

    def __enter__(self):
        self.mpi.pickle.__init__(self.dumps, self.loads)
        return self

    def __exit__(self, *exc):
        self.mpi.pickle.__init__(pickle.dumps, pickle.loads)


def check_broadcast_arrays(dist, record):
    """broadcast_arrays of mixed dtypes and shapes equals the root's dict;
    records the communicator calls and the pickling it made."""
    expected = {
        "text": np.array("h\u00e9llo"),
        "count": np.array(7, dtype=np.int64),
        "matrix": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "empty": np.zeros((0, 3)),
        "bools": np.array([True, False, True]),
    }
    sent = expected if dist.is_root else {"junk": np.ones(2)}
    from mpi4py import MPI      # dist mode only: 'single' never imports it
    comm = dist.comm.mpi_comm
    dist.comm.mpi_comm = RecordingComm(comm)
    try:
        with CountingPickle(MPI) as counting:
            got = dist.broadcast_arrays(sent)
    finally:
        recorder, dist.comm.mpi_comm = dist.comm.mpi_comm, comm
    record["broadcast_calls"] = np.array(recorder.calls)
    record["broadcast_numpy_buffers"] = np.array(recorder.numpy_buffers)
    record["broadcast_pickle_calls"] = np.array(counting.calls)
    return (list(got) == list(expected) and all(
        got[k].dtype == v.dtype and got[k].shape == v.shape and
        np.array_equal(got[k], v) for k, v in expected.items()))


class CountingCheck(object):
    """The generic host check, counting the arrays it checks."""

    def __init__(self, inputs, vocab_size):
        self.inputs, self.vocab_size, self.calls = inputs, vocab_size, 0

    def __call__(self, *arrays):
        self.calls += 1
        return check_arrays(self.inputs, arrays, self.vocab_size)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--mode", choices=["single", "dist"], required=True)
    parser.add_argument("--normalize", default="samples")
    args = parser.parse_args()
    assert theano.config.floatX == "float64", "run with floatX=float64"

    dist = Distributed(enabled=args.mode == "dist")
    # Different initial weights on every rank: only the broadcast from rank
    # 0 can make them equal.
    model = build_model(V, H, seed=1 + dist.rank)
    # check=: each array is checked once per call, also with the window
    # summed over ranks (counted below).
    check = CountingCheck(model.inputs, V)
    acc = GradientAccumulator(model.loss(), model.params, model.inputs,
                              normalize=args.normalize,
                              num_tokens=model.num_tokens(),
                              update=lasagne.updates.adagrad,
                              learning_rate=0.1, check=check)
    record = {"rank": np.array(dist.rank), "size": np.array(dist.size)}
    record["first_param"] = np.array(model.params[0].name)
    record["init_before_broadcast"] = model.params[0].get_value().copy()
    dist.broadcast_parameters(acc)
    record["init_after_broadcast"] = model.params[0].get_value().copy()

    results, shares, sums = [], [], []
    calls = 0
    for w, window in enumerate(corpus()):
        for X, y in dist.shard(window):
            acc.accumulate(X, y)
            calls += 1
        # Before the all-reduce the accumulator counts this rank's share.
        shares.append([acc.samples, acc.tokens, acc.skipped])
        if w == 0 and dist.enabled:
            # Check the allreduce against numpy: gather every rank's local
            # accumulators and counters with plain mpi4py, sum them here.
            local = [v.get_value().copy() for v in acc.accumulators]
            local.append(np.array([acc.samples, acc.tokens, acc.skipped],
                                  dtype=np.float64))
            gathered = []
            for value in local:
                flat = np.ascontiguousarray(value, dtype=np.float64).ravel()
                out = np.empty((dist.size, flat.size))
                dist.comm.mpi_comm.Allgather(flat, out)
                gathered.append(out.sum(axis=0))
            window_sums = dist.allreduce_window(acc)
            reduced = [v.get_value().ravel() for v in acc.accumulators]
            reduced.append(np.array([acc.samples, acc.tokens, acc.skipped],
                                    dtype=np.float64))
            reduced.append(np.array([window_sums.samples, window_sums.tokens,
                                     window_sums.skipped], dtype=np.float64))
            gathered.append(gathered[-1])
            record["allreduce_max_rel"] = np.array(max(
                np.max(np.abs(r - g) / np.maximum(np.abs(g), 1e-300))
                for r, g in zip(reduced, gathered)))
            record["allreduce_bytes"] = np.array(window_sums.bytes)
            record["expected_bytes"] = np.array(
                8 * (sum(p.get_value().size for p in model.params) + 4))
        else:
            window_sums = dist.allreduce_window(acc)
        sums.append([window_sums.samples, window_sums.tokens,
                     window_sums.skipped, window_sums.loss])
        result = acc.apply()
        results.append([float(x) for x in result])
    record["results"] = np.array(results)
    record["shares"] = np.array(shares)
    record["sums"] = np.array(sums)
    record["accumulate_calls"] = np.array(calls)
    record["check_calls"] = np.array(check.calls)
    for p in model.params:
        record["param/" + p.name] = p.get_value()

    if dist.enabled:
        record["broadcast_arrays_ok"] = np.array(
            check_broadcast_arrays(dist, record))
        # What the trainer's checkpoint store saves and restores.
        state = accumulator_arrays(acc, dist)
        record["state_size"] = np.array(state["acc/" + SIZE_KEY])
        load_accumulator_arrays(state, acc, dist)   # same ranks: accepted
        wrong = dict(state)
        wrong["acc/" + SIZE_KEY] = np.array(dist.size + 1)
        try:
            load_accumulator_arrays(wrong, acc, dist)
            record["wrong_size_error"] = np.array("")
        except IncompatibleStateError as err:
            record["wrong_size_error"] = np.array(str(err))
    record["mpi_imported"] = np.array("mpi4py" in sys.modules)
    np.savez("%s.rank%d.npz" % (args.out, dist.rank), **record)


if __name__ == "__main__":
    main()
