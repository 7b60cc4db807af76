#!/usr/bin/env python
"""A recurrent layer of your own inside the model, trained by the same
GradientAccumulator.

``LayerNormRNNLayer`` is an Elman RNN whose pre-activation is layer-normalised
at every step (Ba, Kiros & Hinton, 2016), a layer Lasagne does not ship::

    a_t = x_t W_in + h_{t-1} W_hid
    h_t = tanh(gain * (a_t - mean(a_t)) / sqrt(var(a_t) + eps) + b)

with masked steps keeping ``h_{t-1}``. It is an ordinary Lasagne
``MergeLayer`` with its own ``theano.scan``. ``build_model(cell=factory)``
drops it in where the LSTM would be (with id input the model feeds it
one-hot vectors); the accumulator does not care what the layer is.

Run: ``python examples/custom_layer.py`` (Lee corpus from ``data/``), or
``main(corpus=...)``.
"""
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)       # lee_corpus.py, the corpus downloader beside it

from lstm_accum.backend import T, lasagne, theano  # noqa: E402

# ------------------------------------------------------------------------------
VOCAB_SIZE = 500        # words kept (V = 503)
NUM_UNITS = 64          # recurrent units
BATCH_SIZE = 16         # equal-length minibatches (bucket batching)
ACCUMULATE = 32         # sentences per update
LEARNING_RATE = 0.05    # Adagrad
NUM_EPOCHS = 2
MAX_SENTENCES = 1200
SEED = 1
# ------------------------------------------------------------------------------


class LayerNormRNNLayer(lasagne.layers.MergeLayer):
    """Elman RNN with a layer-normalised pre-activation.

    Parameters
    ----------
    incoming : Layer or tuple
        Features ``(batch, time, num_inputs)``.
    num_units : int
    mask_input : Layer, optional
        ``(batch, time)``, 1 for real steps, 0 for padding.
    grad_clipping : float or False
        Clip the gradient flowing through the pre-activation (Lasagne's
        meaning).
    eps : float
        Added to the variance.
    """

    def __init__(self, incoming, num_units, mask_input=None,
                 grad_clipping=False, eps=1e-5, name=None):
        incomings = [incoming]
        if mask_input is not None:
            incomings.append(mask_input)
        super(LayerNormRNNLayer, self).__init__(incomings, name=name)
        init = lasagne.init
        self.num_units = num_units
        self.grad_clipping = grad_clipping
        self.eps = eps
        num_inputs = self.input_shapes[0][-1]
        self.W_in = self.add_param(init.Normal(0.1), (num_inputs, num_units),
                                   name="W_in")
        self.W_hid = self.add_param(init.Orthogonal(), (num_units, num_units),
                                    name="W_hid")
        self.gain = self.add_param(init.Constant(1.0), (num_units,),
                                   name="gain", regularizable=False)
        self.b = self.add_param(init.Constant(0.0), (num_units,), name="b",
                                regularizable=False)

    def get_output_shape_for(self, input_shapes):
        shape = input_shapes[0]
        return shape[0], shape[1], self.num_units

    def get_output_for(self, inputs, **kwargs):
        x = inputs[0]
        mask = inputs[1] if len(inputs) > 1 else None
        # The input product for all steps at once, outside the loop.
        x_proj = T.dot(x.dimshuffle(1, 0, 2), self.W_in)      # (T, B, H)
        sequences = [x_proj]
        if mask is not None:
            sequences.append(mask.dimshuffle(1, 0, "x"))

        def step(a_in, *rest):
            if mask is not None:
                m, h_prev, W_hid, gain, b = rest
            else:
                h_prev, W_hid, gain, b = rest
            a = a_in + T.dot(h_prev, W_hid)
            if self.grad_clipping:
                a = theano.gradient.grad_clip(a, -self.grad_clipping,
                                              self.grad_clipping)
            mean = a.mean(axis=1, keepdims=True)
            var = T.sqr(a - mean).mean(axis=1, keepdims=True)
            h = T.tanh(gain * (a - mean) / T.sqrt(var + self.eps) + b)
            if mask is not None:
                h = m * h + (1 - m) * h_prev
            return h

        h0 = T.zeros((x.shape[0], self.num_units), dtype=x_proj.dtype)
        hs, _ = theano.scan(step, sequences=sequences, outputs_info=[h0],
                            non_sequences=[self.W_hid, self.gain, self.b],
                            strict=True)
        return hs.dimshuffle(1, 0, 2)


def layer_norm_rnn(incoming, num_units, mask_input=None, grad_clipping=False,
                   name=None):
    """The factory ``build_model(cell=...)`` calls for each layer."""
    return LayerNormRNNLayer(incoming, num_units, mask_input=mask_input,
                             grad_clipping=grad_clipping, name=name)


def main(corpus=None, num_epochs=NUM_EPOCHS, max_sentences=MAX_SENTENCES,
         vocab_size=VOCAB_SIZE, num_units=NUM_UNITS, batch_size=BATCH_SIZE,
         accumulate=ACCUMULATE, learning_rate=LEARNING_RATE, seed=SEED):
    """Train the custom-layer model; returns a dict of figures."""
    from lstm_accum.accumulation.accumulator import GradientAccumulator
    from lstm_accum.data.corpus import prepare_corpus, split_corpus
    from lstm_accum.evaluation import perplexity, unigram_perplexity
    from lstm_accum.data.batches import make_batch, plan_epoch
    from lstm_accum.models import build_model

    print("[1/3] corpus")
    if corpus is None:
        from lee_corpus import lee_corpus
        corpus = lee_corpus(os.path.join(ROOT, "data"), log=print)
    vocab, sentences, _ = prepare_corpus(corpus, vocab_size, lowercase=True)
    if max_sentences and len(sentences) > max_sentences:
        sentences = sentences.subset(np.arange(max_sentences))
    train, valid, _ = split_corpus(sentences, 0.1, 0.0, seed)
    V = len(vocab)

    print("[2/3] model with LayerNormRNNLayer, and the accumulator")
    model = build_model(V, num_units, input="ids", batching="bucket",
                        cell=layer_norm_rnn, grad_clipping=5.0, seed=seed)
    print(model, [p.name for p in model.params])
    acc = GradientAccumulator(model.loss(), model.params, model.inputs,
                              normalize="tokens",
                              num_tokens=model.num_tokens(),
                              update=lasagne.updates.adagrad,
                              learning_rate=learning_rate)
    baseline = unigram_perplexity(train, valid, V)
    print("validation perplexity before training %.1f, unigram baseline %.1f"
          % (perplexity(model, valid), baseline))

    print("[3/3] training")
    start = time.time()
    seen = 0
    for epoch in range(num_epochs):
        for indices in plan_epoch(train, "bucket", batch_size, seed, epoch):
            acc.accumulate(*make_batch(train, indices, "bucket", "ids", V))
            seen += len(indices)
            if seen >= accumulate:
                acc.apply()
                seen = 0
        if seen:
            acc.apply()
            seen = 0
        ppl = perplexity(model, valid)
        print("epoch %d: validation perplexity %.1f (unigram %.1f)"
              % (epoch + 1, ppl, baseline), flush=True)
    print("trained in %.0f s" % (time.time() - start))
    return {"perplexity": ppl, "unigram_perplexity": baseline}


if __name__ == "__main__":
    main()
