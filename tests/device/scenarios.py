"""The runs the device tests compare: a model, an update rule and three
windows of fixed sentences, started from fixed weights.

Each scenario runs the same way on the device (in the test process) and on
the CPU (``reference.py``, in a subprocess with ``device=cpu``), so that the
two can be compared array by array.
"""
from collections import OrderedDict

import numpy as np

import lstm_accum
from lstm_accum import GradientAccumulator, apply_updates
from lstm_accum.backend import T, floatX, lasagne, theano
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


class Scenario(object):
    """One mode's model and accumulator, with an apply function per rule.

    The accumulate function does not depend on the update rule, so each
    mode compiles it once: Adagrad is the accumulator's own ``apply``
    (:class:`GradientAccumulator`), Adam a second apply over the same
    window, made with the functional form (:func:`apply_updates`), as a
    user composing their own functions would.
    """

    def __init__(self, mode):
        self.mode = mode
        update, rate, kwargs = RULES["adagrad"]
        if mode == "question":
            loss, params, inputs = question_network()
            extra = {"normalize": "samples"}
        else:
            model = lstm_accum.build_model(V, H, input=mode[0],
                                           batching=mode[1], seed=0)
            loss, params, inputs = model.loss(), model.params, model.inputs
            extra = {"normalize": "tokens", "num_tokens": model.num_tokens()}
        self.acc = GradientAccumulator(
            loss, params, inputs, update=update, learning_rate=rate,
            update_kwargs=kwargs, max_norm=MAX_NORM, **extra)
        update, rate, kwargs = RULES["adam"]
        graph = apply_updates(self.acc.params, self.acc.window,
                              extra["normalize"], update,
                              np.asarray(rate, dtype=floatX), kwargs,
                              MAX_NORM)
        self.adam_state = graph.optimizer_state
        self.adam_apply_fn = theano.function(
            [], graph.outputs, updates=graph.updates, name="adam/apply")
        self.start = self.acc.state()
        self.adam_start = [v.get_value() for v in self.adam_state]

    def functions(self):
        return [self.acc.accumulate_fn, self.acc.apply_fn,
                self.adam_apply_fn]

    def state(self, rule):
        """Every array of the run: the accumulator's state, and for Adam
        its own optimizer state."""
        state = self.acc.state()
        if rule == "adam":
            state = {k: v for k, v in state.items()
                     if not k.startswith("acc/optimizer/")}
            for var in self.adam_state:
                state["adam/" + var.name] = np.array(var.get_value())
        return state

    def reset(self):
        self.acc.load_state(self.start)
        for var, value in zip(self.adam_state, self.adam_start):
            var.set_value(value)

    def run(self, rule):
        """Three windows from the start. Returns ``(states, results)``:
        the state after each window's accumulation and after its apply,
        and every call's result."""
        self.reset()
        input_kind, batching = batching_of(self.mode)
        states, results = [], []
        for window in windows(batching, input_kind):
            for arrays in window:
                results.append(tuple(self.acc.accumulate(*arrays)))
            states.append(self.state(rule))
            if rule == "adagrad":
                results.append(tuple(self.acc.apply()))
            else:
                results.append(tuple(float(np.asarray(x))
                                     for x in self.adam_apply_fn()))
            states.append(self.state(rule))
        self.reset()
        return states, results


def batching_of(mode):
    return ("onehot", "sample") if mode == "question" else mode


def mode_name(mode):
    return mode if mode == "question" else "-".join(mode)


def key(mode, rule):
    return "%s-%s" % (mode_name(mode), rule)


def all_modes():
    return ["question"] + list(MODES)
