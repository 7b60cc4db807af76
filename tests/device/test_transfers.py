"""Nothing parameter-sized crosses between the host and the device.

For the question's own network and every ``input`` x ``batching`` mode of
``build_model``, with Adagrad and with Adam: the compiled ``accumulate``
takes the input batch in and gives scalars out (loss, counts), and
``apply`` moves scalars only; no parameter, gradient, accumulator,
optimizer state or per-call activation crosses.  Shape vectors (a
``MakeVector`` of a batch's dimensions, for a reshape on the device) are
allowed: they hold one integer per dimension.
"""
import numpy as np
import pytest

import scenarios
from lstm_accum import GradientAccumulator
from lstm_accum.backend import T, lasagne, theano
from lstm_accum.backend.transfers import (Transfer, transfers,
                                          unexpected_transfers)

#: The one per-call crossing, by mode: with id input and
#: ``deterministic=more`` (the device tests' flags, for bit-identical runs),
#: the gradient of the row lookup is Theano's GpuAdvancedIncSubtensor1,
#: which loops over the rows from the host and so reads the batch's ids
#: there: B*T int32 per call, derived from the input alone.  Without the
#: flag, on CUDA, the atomic-add kernel takes them on the device (and runs
#: are no longer bit-identical).  A Theano op without a kernel for the
#: device would show up here too.
IDS_BACK = [Transfer("to host", "GpuReshape{1}", 1, "int32", "input")]
EXPECTED = {mode: IDS_BACK for mode in scenarios.all_modes()
            if mode != "question" and mode[0] == "ids"
            and theano.config.deterministic == "more"}


def offending(fn):
    return [t for t in unexpected_transfers(fn)
            if not (t.direction == "to device" and t.ndim == 1
                    and t.dtype.startswith("int")
                    and t.name.startswith("MakeVector"))]


@pytest.mark.parametrize("mode", scenarios.all_modes(), ids=str)
def test_only_the_batch_goes_in_and_scalars_come_out(compiled, mode):
    scenario = compiled(mode)
    acc = scenario.acc
    found = offending(acc.accumulate_fn)
    assert found == EXPECTED.get(mode, []), found
    assert offending(acc.apply_fn) == []           # Adagrad
    assert offending(scenario.adam_apply_fn) == []
    moved = transfers(acc.accumulate_fn)
    # the batch does go in: the walk sees crossings at all
    assert any(t.kind == "input" and t.direction == "to device"
               and t.ndim > 0 for t in moved), moved
    # and state lives on the device as GPU shared variables
    for var in (acc.params + acc.accumulators + acc.optimizer_state
                + scenario.adam_state):
        if var.ndim > 0:
            assert type(var).__name__ == "GpuArraySharedVariable", var


def test_the_walk_catches_a_host_only_op():
    """An op with no device implementation (a Python op over a matrix) in
    the loss makes its input and gradient cross: the walk names them."""
    @theano.compile.ops.as_op(itypes=[T.fmatrix], otypes=[T.fmatrix])
    def host_only(x):
        return np.tanh(x)

    host_only.grad = lambda inputs, grads: [
        grads[0] * (1 - T.tanh(inputs[0]) ** 2)]
    x = T.fmatrix("x")
    W = theano.shared(np.ones((3, 3), dtype="float32"), name="W")
    loss = host_only(T.dot(x, W)).sum()
    acc = GradientAccumulator(loss, [W], [x], normalize="sum",
                              update=lasagne.updates.sgd)
    found = offending(acc.accumulate_fn)
    assert any(t.ndim == 2 and t.direction == "to host" for t in found), \
        transfers(acc.accumulate_fn)
