"""Runs the fused LSTM's C operations in float32 on fixed random inputs and
saves every output to an ``.npz`` file: ``python fused_worker.py OUT
[--fork]``.  With ``--fork`` it runs them once, forks, and the child runs
them again (into ``OUT`` with ``.child`` before the suffix), so that a
child of a process whose threads already ran the operations is tested.

Used by ``test_fused_threads.py``, which runs it with different
``OPENBLAS_NUM_THREADS``."""
import os
import sys

import numpy as np

from lstm_accum.backend import theano, T
from lstm_accum.ops.fused_lstm import FusedLSTM, FusedLSTMGrad

# steps, batch, H: H a multiple of 32, of 8 only, and of neither; batches
# of 32 (four row blocks of 8), 13, 17, 9 and 1 (partial blocks).  The last
# two are large enough (batch H^2 >= 2^24) for the steps to be shared by
# threads; the others run on one.
SHAPES = [(6, 32, 96), (5, 13, 40), (4, 1, 37), (3, 9, 130), (2, 32, 1000),
          (2, 17, 1030)]
CLIP = 0.5


def inputs(rng):
    """[(shape, the 11 float32 inputs of build()'s function)] per shape."""
    cases = []
    for steps, batch, H in SHAPES:
        v = [rng.randn(steps, batch, 4 * H), rng.randn(4 * H) * .1,
             rng.randn(H, 4 * H) * .3, rng.randn(H) * .1, rng.randn(H) * .1,
             rng.randn(H) * .1, rng.randn(batch, H) * .5,
             rng.randn(batch, H) * .5, rng.randn(steps, batch, H) * 3,
             rng.randn(steps, batch, H), rng.randn(steps, batch, 4 * H)]
        cases.append(((steps, batch, H), [a.astype("float32") for a in v]))
    return cases


def outputs(fns, rng):
    """Every output of each function of build_all(), keyed
    ``[team_]steps_batch_H_index``."""
    res = {}
    for prefix, fn in fns.items():
        for shape, values in inputs(rng):
            for i, out in enumerate(fn(*values)):
                res[prefix + "%d_%d_%d_%d" % (shape + (i,))] = out
    return res


def gates(W):
    """The four gates' ``(H, H)`` recurrent weights of a stacked ``(H,
    4H)`` W, as the operations take them."""
    H = W.shape[0]
    return [W[:, g * H:(g + 1) * H] for g in range(4)]


def build(team=False):
    """The forward and both gradients as one function.  team: the
    operations as training compiles them, which share the steps from far
    smaller batches (batch H^2 >= 2^16: every shape here but the batches
    of 1 and 13)."""
    x, dh, dc, da = [T.tensor3(dtype="float32") for _ in range(4)]
    b, wci, wcf, wco = [T.vector(dtype="float32") for _ in range(4)]
    W, c0, h0 = [T.matrix(dtype="float32") for _ in range(3)]
    hid, cell, act = FusedLSTM(CLIP, team=team)(x, b, *gates(W), wci, wcf,
                                                wco, c0, h0)
    common = tuple(gates(W)) + (wci, wcf, wco, c0, h0, hid, cell, act, dh)
    plain = FusedLSTMGrad(CLIP, team=team)(*common)
    aux = FusedLSTMGrad(CLIP, aux=True, team=team)(*common + (dc, da))
    return theano.function([x, b, W, wci, wcf, wco, c0, h0, dh, dc, da],
                           [hid, cell, act] + list(plain) + list(aux))


def build_all():
    return {"": build(), "team_": build(team=True)}


def main(out, fork):
    fns = build_all()
    np.savez(out, **outputs(fns, np.random.RandomState(0)))
    if not fork:
        return 0
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            child = out[:-len(".npz")] + ".child.npz"
            np.savez(child, **outputs(fns, np.random.RandomState(0)))
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], "--fork" in sys.argv[2:]))
