"""The runs the device tests compare: a model, an update rule and three
windows of fixed sentences, started from fixed weights.

Each scenario runs the same way on the device (in the test process) and on
the CPU (``reference.py``, in a subprocess with ``device=cpu``), so that the
two can be compared array by array.
"""
from collections import OrderedDict

import numpy as np

import lstm_accum
from lstm_accum import GradientAccumulator
from lstm_accum.backend import T, lasagne
from lstm_accum.data import EncodedCorpus, make_batch, plan_epoch

V, H = 40, 12
WINDOWS = 3
#: (input, batching) of build_model, and the question's own network.
MODES = [("onehot", "sample"), ("ids", "sample"), ("onehot", "bucket"),
         ("ids", "bucket"), ("onehot", "mask"), ("ids", "mask")]
RULES = OrderedDict([
    ("adagrad", (lasagne.updates.adagrad, 0.1, {})),
    ("adam", (lasagne.updates.adam, 0.01, {"beta1": 0.8})),
])
MAX_NORM = 0.5   # small enough that clipping acts in every window


def corpus(seed=0, sentences=24):
    """24 sentences of 1-6 words, several of each length (buckets of 3)."""
    rng = np.random.RandomState(seed)
    lengths = rng.randint(1, 7, size=sentences)
    ids = rng.randint(3, V, size=lengths.sum())
    return EncodedCorpus(ids, np.concatenate([[0], np.cumsum(lengths)]))


def windows(batching, input_kind):
    """Three windows, each a list of the argument tuples of accumulate."""
    data = corpus()
    size = 1 if batching == "sample" else 3
    batches = [make_batch(data, idx, batching, input_kind, V)
               for idx in plan_epoch(data, batching, size, seed=1)]
    per = len(batches) // WINDOWS
    return [batches[i * per:(i + 1) * per] for i in range(WINDOWS)]


def question_network(seed=0):
    """The question's network, layer for layer, with its summed loss."""
    lasagne.random.set_rng(np.random.RandomState(seed))
    l_in = lasagne.layers.InputLayer((None, None, V))
    l_lstm = lasagne.layers.LSTMLayer(l_in, H, grad_clipping=5)
    l_out = lasagne.layers.DenseLayer(
        lasagne.layers.SliceLayer(l_lstm, 0, 0), V,
        nonlinearity=lasagne.nonlinearities.softmax)
    target = T.ivector("target")
    loss = lasagne.objectives.categorical_crossentropy(
        lasagne.layers.get_output(l_out), target).sum()
    params = lasagne.layers.get_all_params(l_out, trainable=True)
    return loss, params, [l_in.input_var, target]


def accumulators(mode):
    """``{rule: GradientAccumulator}`` for one mode (``'question'`` or an
    ``(input, batching)`` pair), each rule on its own copy of the model."""
    result = OrderedDict()
    for rule, (update, rate, kwargs) in RULES.items():
        if mode == "question":
            loss, params, inputs = question_network()
            extra = {"normalize": "samples"}
        else:
            model = lstm_accum.build_model(V, H, input=mode[0],
                                           batching=mode[1], seed=0)
            loss, params, inputs = model.loss(), model.params, model.inputs
            extra = {"normalize": "tokens", "num_tokens": model.num_tokens()}
        result[rule] = GradientAccumulator(
            loss, params, inputs, update=update, learning_rate=rate,
            update_kwargs=kwargs, max_norm=MAX_NORM, **extra)
    return result


def batching_of(mode):
    return ("onehot", "sample") if mode == "question" else mode


def run(acc, mode, start=None):
    """Three windows from ``start`` (a state; default: as built).

    Returns ``(states, results)``: the state after each window's
    accumulation (before apply) and after its apply, and every result.
    """
    if start is not None:
        acc.load_state(start)
    input_kind, batching = batching_of(mode)
    states, results = [], []
    for window in windows(batching, input_kind):
        for arrays in window:
            results.append(tuple(acc.accumulate(*arrays)))
        states.append(acc.state())
        results.append(tuple(acc.apply()))
        states.append(acc.state())
    return states, results


def key(mode, rule):
    name = mode if mode == "question" else "-".join(mode)
    return "%s-%s" % (name, rule)


def all_modes():
    return ["question"] + list(MODES)
