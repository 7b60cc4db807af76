"""Build the word-level language models: the original question's network and
its faster variants.

The variants (:func:`build_model`):

``batching='sample'`` (the question's network)
    ``InputLayer((None, None, V))`` -> ``LSTMLayer(H, grad_clipping=5)`` ->
    ``SliceLayer(lstm, 0, 0)`` -> ``DenseLayer(V)``; batch of one sentence,
    target an int32 vector ``(T,)``.
``batching='bucket'`` / ``'mask'``
    The recurrent output ``(B, T, H)`` is reshaped to ``(B*T, H)`` before the
    output layer; targets are an int32 matrix ``(B, T)``.  ``'mask'`` adds a
    mask input ``(B, T)`` given to every recurrent layer as ``mask_input``,
    and the loss is summed over unmasked tokens only.
``input='ids'``
    Word ids ``(B, T)`` int32 instead of one-hot vectors; the first
    recurrent layer (:class:`~lstm_accum.models.IdLSTMLayer` /
    :class:`~lstm_accum.models.IdGRULayer`) looks rows of its input weights
    up instead of multiplying, with the same parameters as the one-hot
    layer.

The network's output is a linear ``DenseLayer`` named ``'softmax'`` under a
softmax; the loss and the rest are :class:`~lstm_accum.models.LanguageModel`'s.
"""
from collections import OrderedDict

import numpy as np

from ..backend import T, lasagne
from ..checks import check_choice
from ..data import BATCHINGS, INPUT_KINDS
from ..exceptions import InputError
from .language_model import LanguageModel
from .layers import (IMPLS, FusedLSTMLayer, IdGRULayer, IdLSTMLayer,
                     IdsToOneHotLayer)

__all__ = ["build_model", "CELLS"]

L = lasagne.layers

#: The built-in recurrent cells (a factory callable is the other choice).
CELLS = ("lstm", "gru")


def build_model(vocab_size, num_units, num_layers=1, input="onehot",
                batching="sample", cell="lstm", dropout=0.0,
                grad_clipping=5.0, seed=None, recurrent_kwargs=None,
                impl="auto"):
    """Build a word-level recurrent language model.

    Parameters
    ----------
    vocab_size : int
        V, the number of words including the special tokens.
    num_units : int
        H, units of every recurrent layer.
    num_layers : int
        Number of stacked recurrent layers, named ``'lstm1'``, ``'lstm2'``...
        (``'gru1'``... for GRU, ``'rnn1'``... for a factory).
    input : {'onehot', 'ids'}
        One-hot float input ``(B, T, V)`` as in the question, or int32 ids
        ``(B, T)`` with a row lookup instead of the input product.
    batching : {'sample', 'bucket', 'mask'}
        ``'sample'``: the question's network, one sentence per call, target
        ``(T,)``.  ``'bucket'``: equal-length minibatches ``(B, T)``.
        ``'mask'``: padded minibatches with a mask input.
    cell : 'lstm', 'gru' or callable
        The recurrent layer.  A callable is a factory
        ``factory(incoming, num_units, mask_input=None, grad_clipping=...,
        name=...) -> Layer`` whose layer maps ``(B, T, F)`` to
        ``(B, T, num_units)``; with ``input='ids'`` the first one receives
        one-hot vectors (see :class:`IdsToOneHotLayer`).
    dropout : float
        Dropout probability in ``[0, 1)`` on the output of every recurrent
        layer (i.e. between stacked layers and before the output layer);
        0 disables it.  Off when ``deterministic=True``.
    grad_clipping : float or False
        Gradient clipping of the recurrent layers (Lasagne's meaning).
    seed : int or None
        Seeds the weight initialisation and dropout streams; the same seed
        gives the same weights for one-hot and id input.  None uses
        Lasagne's global random generator.
    recurrent_kwargs : dict, optional
        Extra keyword arguments for the built-in recurrent layers (e.g.
        ``{'precompute_input': False}``).
    impl : {'auto', 'fused', 'scan'}
        How the built-in LSTM layers run: ``'auto'`` (default) as one fused
        C operation per layer (:mod:`lstm_accum.ops.fused_lstm`) when the
        configuration allows it -- CPU device, no mask, Lasagne's default
        nonlinearities -- and Lasagne's ``theano.scan`` otherwise;
        ``'fused'`` requires the fused operation; ``'scan'`` always uses
        scan (exactly Lasagne's graph).  Parameters and numbers are the same
        either way; only the speed differs.  Ignored for GRU and factories.

    Returns
    -------
    LanguageModel

    Raises
    ------
    InputError
        For any argument outside the values above.

    Examples
    --------
    >>> model = build_model(12, 5, seed=0)   # doctest: +SKIP
    >>> loss = model.loss()                   # doctest: +SKIP
    """
    config = OrderedDict([
        ("vocab_size", vocab_size), ("num_units", num_units),
        ("num_layers", num_layers), ("input", input), ("batching", batching),
        ("cell", cell if isinstance(cell, str) else
         getattr(cell, "__name__", repr(cell))),
        ("dropout", dropout), ("grad_clipping", grad_clipping),
        ("seed", seed)])
    for name in ("vocab_size", "num_units", "num_layers"):
        value = config[name]
        if isinstance(value, bool) or not isinstance(
                value, (int, np.integer)) or value < 1:
            raise InputError("%s must be a positive integer, got %r"
                             % (name, value))
    vocab_size, num_units, num_layers = (int(vocab_size), int(num_units),
                                         int(num_layers))
    config.update(vocab_size=vocab_size, num_units=num_units,
                  num_layers=num_layers)
    check_choice("input", input, INPUT_KINDS)
    check_choice("batching", batching, BATCHINGS)
    check_choice("impl", impl, IMPLS)
    if impl == "fused" and batching == "mask":
        raise InputError("impl='fused' does not take masks "
                         "(batching='mask'); use impl='auto' or 'scan'")
    if not callable(cell):
        check_choice("cell", cell, CELLS)
    try:
        dropout = float(dropout)
    except (TypeError, ValueError):
        raise InputError("dropout must be a number in [0, 1), got %r"
                         % (dropout,))
    if not 0.0 <= dropout < 1.0:
        raise InputError("dropout must be in [0, 1), got %r" % dropout)
    if grad_clipping is not False:
        if not np.isfinite(grad_clipping) or grad_clipping <= 0:
            raise InputError("grad_clipping must be a positive number or "
                             "False, got %r" % (grad_clipping,))
        grad_clipping = float(grad_clipping)
    if seed is not None and (isinstance(seed, bool) or not isinstance(
            seed, (int, np.integer))):
        raise InputError("seed must be an integer or None, got %r" % (seed,))
    recurrent_kwargs = dict(recurrent_kwargs or {})

    saved_rng = lasagne.random.get_rng()
    if seed is not None:
        lasagne.random.set_rng(np.random.RandomState(seed))
    try:
        return _build(config, vocab_size, num_units, num_layers, input,
                      batching, cell, dropout, grad_clipping,
                      recurrent_kwargs, impl)
    finally:
        lasagne.random.set_rng(saved_rng)


def _build(config, V, H, num_layers, input_kind, batching, cell, dropout,
           grad_clipping, recurrent_kwargs, impl):
    if input_kind == "onehot":
        l_in = L.InputLayer((None, None, V), name="input")
        l_in.input_var.name = "X"
    else:
        l_in = L.InputLayer((None, None), input_var=T.imatrix("X"),
                            name="input")
    l_mask = None
    if batching == "mask":
        l_mask = L.InputLayer((None, None), name="mask")
        l_mask.input_var.name = "mask"
    target_var = T.ivector("y") if batching == "sample" else T.imatrix("y")

    prefix = cell if isinstance(cell, str) else "rnn"
    layer = l_in
    recurrent = []
    for i in range(1, num_layers + 1):
        name = "%s%d" % (prefix, i)
        if i > 1 and dropout > 0:
            layer = L.DropoutLayer(layer, p=dropout,
                                   name="dropout%d" % (i - 1))
        first_ids = i == 1 and input_kind == "ids"
        if callable(cell):
            if first_ids:
                layer = IdsToOneHotLayer(layer, V, name="onehot")
            layer = cell(layer, H, mask_input=l_mask,
                         grad_clipping=grad_clipping, name=name)
            if not isinstance(layer, L.Layer):
                raise InputError("the cell factory must return a Lasagne "
                                 "Layer, got %r" % (layer,))
        else:
            kwargs = dict(recurrent_kwargs, mask_input=l_mask,
                          grad_clipping=grad_clipping, name=name)
            if first_ids:
                if cell == "lstm":
                    kwargs["impl"] = impl
                cls = IdLSTMLayer if cell == "lstm" else IdGRULayer
                layer = cls(layer, H, V, **kwargs)
            elif cell == "lstm" and impl != "scan":
                layer = FusedLSTMLayer(layer, H, impl=impl, **kwargs)
            else:
                # impl='scan': exactly Lasagne's layer (the question's).
                cls = L.LSTMLayer if cell == "lstm" else L.GRULayer
                layer = cls(layer, H, **kwargs)
        recurrent.append(layer)
    if dropout > 0:
        layer = L.DropoutLayer(layer, p=dropout,
                               name="dropout%d" % num_layers)
    if batching == "sample":
        # The question's network: batch of one, (1, T, H) -> (T, H).
        layer = L.SliceLayer(layer, 0, 0, name="slice")
    else:
        layer = L.ReshapeLayer(layer, (-1, H), name="flatten")
    l_logits = L.DenseLayer(layer, V, nonlinearity=None, name="softmax")
    l_out = L.NonlinearityLayer(l_logits, lasagne.nonlinearities.softmax,
                                name="probabilities")
    return LanguageModel(config, l_in, l_mask, recurrent, l_logits, l_out,
                         target_var)
