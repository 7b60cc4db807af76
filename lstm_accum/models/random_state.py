"""The states of a network's dropout random streams, as named arrays.

The one codec of random-stream state: :meth:`LanguageModel.rng_state
<lstm_accum.models.LanguageModel.rng_state>` and the training checkpoints
use it, so a resumed run draws the same dropout masks as one never stopped.
Every layer with a Theano MRG random stream (Lasagne keeps it as the layer's
``_srng``), in ``lasagne.layers.get_all_layers`` order, is stream ``i`` and
gives the arrays::

    rng/<i>.<name>/rstate   the stream's host seed (int32, 6 values): the
                            start of the next random draw built into a graph
    rng/<i>.<name>/<j>      the state of its j-th draw in the graphs built
                            so far (a shared int32 matrix)

``<name>`` is the layer's name, or its class name when it has none. This is
the key format of every checkpoint written so far; keep it.
"""
from collections import OrderedDict

import numpy as np

from ..backend import lasagne
from ..exceptions import IncompatibleStateError

__all__ = ["random_streams", "rng_state", "set_rng_state", "RNG_PREFIX"]

#: Every key of the codec starts with this.
RNG_PREFIX = "rng/"


def random_streams(output_layer):
    """``(key prefix, stream)`` of every random stream below a layer.

    Parameters
    ----------
    output_layer : lasagne.layers.Layer
        The top of the network.

    Returns
    -------
    list of (str, MRG_RandomStreams)
        ``'rng/<i>.<name>'`` and the stream, in layer order.
    """
    streams = []
    for layer in lasagne.layers.get_all_layers(output_layer):
        srng = getattr(layer, "_srng", None)
        if srng is not None:
            name = layer.name or type(layer).__name__
            streams.append(("%s%d.%s" % (RNG_PREFIX, len(streams), name),
                            srng))
    return streams


def _draw_states(srng):
    # MRG streams record (state, new state, size, streams) per draw.
    return [update[0] for update in srng.state_updates]


def rng_state(output_layer):
    """The arrays of every random stream below a layer (see the module).

    Parameters
    ----------
    output_layer : lasagne.layers.Layer

    Returns
    -------
    OrderedDict of str -> numpy.ndarray
        Copies; empty without random layers.
    """
    arrays = OrderedDict()
    for prefix, srng in random_streams(output_layer):
        arrays[prefix + "/rstate"] = np.array(srng.rstate)
        for j, var in enumerate(_draw_states(srng)):
            arrays["%s/%d" % (prefix, j)] = np.array(var.get_value())
    return arrays


def set_rng_state(output_layer, arrays):
    """Restore what :func:`rng_state` returned.

    Parameters
    ----------
    output_layer : lasagne.layers.Layer
        The same network, with the same graphs built (in the same order),
        so that the same draws exist.
    arrays : mapping of str -> array
        May hold other keys too (a whole checkpoint): only those starting
        with ``'rng/'`` are read.

    Raises
    ------
    IncompatibleStateError
        When the names or shapes of the streams differ.
    """
    wanted = rng_state(output_layer)
    given = sorted(k for k in arrays if k.startswith(RNG_PREFIX))
    if sorted(wanted) != given:
        raise IncompatibleStateError(
            "random-stream states do not match the model: it has %s, the "
            "state has %s; build the training graphs (with dropout, in the "
            "same order) before restoring" % (sorted(wanted), given))
    for key, current in wanted.items():
        if np.shape(arrays[key]) != current.shape:
            raise IncompatibleStateError(
                "random stream %s has shape %r, the state %r"
                % (key, current.shape, np.shape(arrays[key])))
    for prefix, srng in random_streams(output_layer):
        srng.rstate = np.array(arrays[prefix + "/rstate"])
        for j, var in enumerate(_draw_states(srng)):
            value = np.asarray(arrays["%s/%d" % (prefix, j)])
            var.set_value(value.astype(var.dtype))
