"""What a compiled Theano function moves between the host and the device.

On a GPU (Theano's gpuarray backend) every value that crosses between host
memory and the device is a ``GpuFromHost`` (host to device) or
``HostFromGpu`` (device to host) node of the compiled graph.
:func:`transfers` lists them, so a test -- or a user checking their own
training function -- can see that parameters, gradients, accumulators and
optimizer state stay on the device and only the input batch goes in and
scalars (loss, counts, norm) come out.
"""
import collections

__all__ = ["Transfer", "transfers", "unexpected_transfers"]

#: One crossing: ``direction`` is ``'to device'`` or ``'to host'``;
#: ``name`` the variable's name (or the op that made it); ``ndim`` and
#: ``dtype`` its type; ``kind`` one of ``'input'`` (an input of the
#: function, or a value computed from the inputs alone), ``'shared'`` (a
#: shared variable: a parameter, accumulator,
#: counter or optimizer state), ``'constant'`` or ``'computed'``.
Transfer = collections.namedtuple("Transfer",
                                  ["direction", "name", "ndim", "dtype",
                                   "kind"])


def _describe(variable, inputs):
    from theano.compile import SharedVariable
    from theano.gof import Constant, graph
    if variable in inputs or all(
            v in inputs or isinstance(v, Constant)
            for v in graph.inputs([variable])):
        # the call's arrays, or what the host made of them alone (e.g. a
        # batch of ids flattened for a row lookup)
        kind = "input"
    elif isinstance(variable, SharedVariable):
        kind = "shared"
    elif isinstance(variable, Constant):
        kind = "constant"
    else:
        kind = "computed"
    name = variable.name
    if name is None and variable.owner is not None:
        name = str(variable.owner.op)
    return name, kind


def transfers(function):
    """The host/device crossings of a compiled function, in execution order.

    Parameters
    ----------
    function : theano.compile.Function
        E.g. ``GradientAccumulator.accumulate_fn`` or ``apply_fn``.

    Returns
    -------
    list of Transfer
        Empty when Theano computes on the CPU (nothing crosses).
    """
    from theano.gpuarray.basic_ops import GpuFromHost, HostFromGpu
    fgraph = function.maker.fgraph
    # fgraph.inputs are the function's inputs followed by the shared
    # variables it reads (implicit inputs); only the first are what the
    # caller passes.
    originals = dict(zip(fgraph.inputs, function.maker.inputs))
    inputs = {v for v in fgraph.inputs if not originals[v].implicit}
    shared = {v: originals[v].variable for v in fgraph.inputs
              if originals[v].implicit}
    found = []
    for node in fgraph.toposort():
        if isinstance(node.op, GpuFromHost):
            direction, variable = "to device", node.inputs[0]
        elif isinstance(node.op, HostFromGpu):
            direction, variable = "to host", node.inputs[0]
        else:
            continue
        # a shared variable is described by the user's variable (its name)
        name, kind = _describe(shared.get(variable, variable), inputs)
        found.append(Transfer(direction, name, variable.ndim,
                              variable.dtype, kind))
    return found


def unexpected_transfers(function):
    """The crossings that move more than the input batch and scalars.

    Parameters
    ----------
    function : theano.compile.Function

    Returns
    -------
    list of Transfer
        Every crossing except inputs going to the device and scalars (0-d
        values: a loss, a count, a norm, a scalar counter) either way.
    """
    return [t for t in transfers(function)
            if t.ndim > 0 and not (t.kind == "input"
                                   and t.direction == "to device")]
