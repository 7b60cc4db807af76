"""Generate sentences from a trained model: greedy or temperature sampling.

Generation starts from ``<s>`` and feeds each chosen word back in, one step
at a time, through a compiled one-step function of the recurrent layers
(state in, state and next-word logits out), built once per model and cached
on it (:meth:`~lstm_accum.models.LanguageModel.compiled`): a sentence of n
words costs n steps, not n prefixes.  All n sentences are generated together
as one batch.  Sampling draws from ``softmax(logits / temperature)`` with a
``numpy.random.RandomState(seed)``, so the same seed gives the same
sentences.

The step is known for every layer whose
:func:`~lstm_accum.models.step_kind` is ``'lstm'`` or ``'gru'``: Lasagne's
``LSTMLayer``/``GRULayer`` and all the layers :func:`~lstm_accum.models.
build_model` makes (fused, id-input, stacked).  Other recurrent layers, such
as a user's custom layer, have no step function we can know; for them the
model is re-run on the whole prefix at each step (correct, quadratic in the
length).
"""
import numpy as np

from ..backend import theano, T, lasagne
from ..checks import check_int
from ..data import BOS_ID, EOS_ID
from ..exceptions import InputError
from ..models import (gru_stacked_params, gru_step, lstm_stacked_params,
                      lstm_step, step_kind)

__all__ = ["sample_sentences", "sample_ids", "step_function"]

L = lasagne.layers


def _initial(init, n):
    if hasattr(init, "get_value"):
        return np.repeat(init.get_value(), n, axis=0)
    # A symbolic initial state supplied by the user: start from zeros.
    return None


class _StepSampler(object):
    """One compiled step: ``f(ids, h1, [c1,] h2, ...) -> (states, logits)``."""

    def __init__(self, model):
        self.model = model
        ids = T.ivector("ids")
        states_in, states_out = [], []
        below = None
        for i, layer in enumerate(model.recurrent_layers):
            is_lstm = step_kind(layer) == "lstm"
            stacked = (lstm_stacked_params if is_lstm
                       else gru_stacked_params)(layer)
            W_in, W_hid, b = stacked
            # onehot(ids) . W_in == W_in[ids]: true for the first layer of
            # one-hot and id models alike.
            x = W_in[ids] + b if i == 0 else T.dot(below, W_in) + b
            h = T.matrix("%s/hid" % layer.name)
            if is_lstm:
                c = T.matrix("%s/cell" % layer.name)
                peep = ((layer.W_cell_to_ingate, layer.W_cell_to_forgetgate,
                         layer.W_cell_to_outgate) if layer.peepholes
                        else (None, None, None))
                cell, hid = lstm_step(layer, x, c, h, W_hid, *peep)
                states_in += [h, c]
                states_out += [hid, cell]
            else:
                hid = gru_step(layer, x, h, W_hid)
                states_in.append(h)
                states_out.append(hid)
            below = hid
        dense = model.logits_layer
        logits = T.dot(below, dense.W)
        if dense.b is not None:
            logits = logits + dense.b
        self.fn = theano.function([ids] + states_in, states_out + [logits],
                                  name="sample_step")
        self.dtypes = [v.dtype for v in states_in]
        self.inits = []
        for layer in model.recurrent_layers:
            self.inits.append(layer.hid_init)
            if step_kind(layer) == "lstm":
                self.inits.append(layer.cell_init)

    def start(self, n):
        H = self.model.num_units
        self.states = []
        for init, dtype in zip(self.inits, self.dtypes):
            value = _initial(init, n)
            if value is None:
                value = np.zeros((n, H))
            self.states.append(value.astype(dtype))

    def step(self, ids):
        out = self.fn(np.asarray(ids, np.int32), *self.states)
        self.states = list(out[:-1])
        return out[-1]


class _PrefixSampler(object):
    """Fallback for unknown layers: re-run the network on the prefix."""

    def __init__(self, model):
        self.model = model
        top = model.recurrent_layers[-1]
        inputs = {model.input_layer: model.input_var}
        if model.mask_layer is not None:
            inputs[model.mask_layer] = T.ones_like(
                model.input_var[:, :, 0] if model.input_kind == "onehot"
                else model.input_var, dtype=model.mask_var.dtype)
        hid = L.get_output(top, inputs, deterministic=True)[:, -1, :]
        dense = model.logits_layer
        logits = T.dot(hid, dense.W)
        if dense.b is not None:
            logits = logits + dense.b
        self.fn = theano.function([model.input_var], logits,
                                  name="sample_prefix")

    def start(self, n):
        self.prefix = np.empty((n, 0), np.int32)

    def step(self, ids):
        self.prefix = np.concatenate(
            [self.prefix, np.asarray(ids, np.int32)[:, None]], axis=1)
        if self.model.input_kind == "onehot":
            X = np.eye(self.model.vocab_size,
                       dtype=self.model.input_var.dtype)[self.prefix]
        else:
            X = self.prefix
        return self.fn(X)


def step_function(model):
    """The model's cached one-step generator (built on first use).

    One compiled step per word when every recurrent layer has a known step
    (:func:`~lstm_accum.models.step_kind`), else the whole prefix per word.

    Parameters
    ----------
    model : LanguageModel

    Returns
    -------
    object
        With ``start(n)`` (reset n states to the layers' initial states) and
        ``step(ids) -> logits (n, V)`` (feed one word per sentence).
    """
    return model.compiled("sampler", lambda: _make_sampler(model))


def _make_sampler(model):
    if all(step_kind(layer) is not None for layer in model.recurrent_layers):
        return _StepSampler(model)
    return _PrefixSampler(model)


def _check_args(n, temperature, max_length, greedy):
    check_int("n", n, 1)
    check_int("max_length", max_length, 1)
    if not greedy:
        try:
            ok = float(temperature) > 0 and np.isfinite(float(temperature))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError("temperature must be a finite number > 0, got "
                             "%r (use greedy=True for the most likely word)"
                             % (temperature,))


def sample_ids(model, n=5, temperature=1.0, seed=0, max_length=50,
               greedy=False, bos_id=BOS_ID, eos_id=EOS_ID):
    """Generate word-id sequences (without ``<s>`` and ``</s>``).

    Parameters are those of :func:`sample_sentences`, plus the ids of the
    boundary tokens.

    Returns
    -------
    list of lists of int
    """
    _check_args(n, temperature, max_length, greedy)
    rng = np.random.RandomState(seed)
    sampler = step_function(model)
    sampler.start(n)
    tokens = np.full(n, bos_id, np.int32)
    done = np.zeros(n, bool)
    out = [[] for _ in range(n)]
    for _ in range(max_length + 1):
        logits = np.asarray(sampler.step(tokens), np.float64)
        # <s> is never a target, so its probability is whatever training
        # left; a sentence never continues with it.
        logits[:, bos_id] = -np.inf
        if greedy:
            tokens = np.argmax(logits, axis=1).astype(np.int32)
        else:
            z = logits / float(temperature)
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            cdf = np.cumsum(p, axis=1)
            # One uniform draw per sentence per step, finished or not, so
            # the stream (and the result) depends only on seed and n.
            u = rng.random_sample(n) * cdf[:, -1]
            tokens = np.minimum((cdf <= u[:, None]).sum(axis=1),
                                model.vocab_size - 1).astype(np.int32)
        for i in np.flatnonzero(~done):
            if tokens[i] == eos_id or len(out[i]) == max_length:
                done[i] = True
            else:
                out[i].append(int(tokens[i]))
        if done.all():
            break
    return out


def sample_sentences(model, vocab, n=5, temperature=1.0, seed=0,
                     max_length=50, greedy=False):
    """Sample sentences from a language model.

    Parameters
    ----------
    model : LanguageModel
        Any variant (one-hot or ids, any batching); dropout is off.
    vocab : Vocabulary or None
        Turns ids into words; None returns the ids.
    n : int
        Number of sentences.
    temperature : float
        > 0; divides the logits (< 1 sharper, > 1 flatter).  Ignored when
        `greedy`.
    seed : int
        Seed of the ``numpy.random.RandomState`` that draws the words.
    max_length : int
        Most words per sentence; a sentence stops at ``</s>`` or here.
    greedy : bool
        Take the most likely word at each step (all n sentences are then
        the same).

    Returns
    -------
    list of lists of str
        The words of each sentence, without ``<s>`` and ``</s>``.

    Raises
    ------
    InputError
        For n or max_length < 1, or a temperature that is not > 0.
    """
    ids = sample_ids(model, n, temperature, seed, max_length, greedy)
    if vocab is None:
        return ids
    return [list(vocab.decode(np.asarray(s, np.int32))) for s in ids]
