#!/usr/bin/env python
"""The original question's network, trained with accumulate-N-then-average.

The question: an LSTM language model in Lasagne, fed one sentence at a time
as a one-hot matrix ``(1, T, V)`` with int32 next-word targets ``(T,)``;
how can the gradients of N sentences be averaged and applied as one update
without moving them through numpy? Answer: ``GradientAccumulator``. The
network below is the question's, layer for layer; the training loop is the
few lines marked "the answer".

Run: ``python examples/seed_question.py`` (Lee corpus from ``data/``, see
``examples/train_lm.py``), or ``main(corpus=..., ...)`` with any file of one
sentence per line.
"""
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)       # lee_corpus.py, the corpus downloader beside it

# ------------------------------------------------------------------------------
VOCAB_SIZE = 500        # words kept (V = 503 with <unk>, <s>, </s>)
NUM_UNITS = 64          # LSTM hidden units H
N = 32                  # sentences whose gradients are averaged per update
LEARNING_RATE = 0.05    # Adagrad step size
NUM_EPOCHS = 1          # passes over the training sentences
MAX_SENTENCES = 1200    # sentences used (the question's loop is per sentence)
SEED = 1
# ------------------------------------------------------------------------------


def build_question_network(V, H):
    """The network of the question: one-hot in, LSTM, slice, softmax out."""
    from lstm_accum.backend import T, lasagne
    L = lasagne.layers
    l_in = L.InputLayer((None, None, V))
    l_lstm = L.LSTMLayer(l_in, H, grad_clipping=5)
    l_slice = L.SliceLayer(l_lstm, 0, 0)           # (1, T, H) -> (T, H)
    l_out = L.DenseLayer(l_slice, V,
                         nonlinearity=lasagne.nonlinearities.softmax)
    target = T.ivector("target")
    # The *summed* loss of one sentence: the accumulator divides once.
    loss = lasagne.objectives.categorical_crossentropy(
        L.get_output(l_out), target).sum()
    return l_in, l_out, target, loss


def main(corpus=None, num_epochs=NUM_EPOCHS, max_sentences=MAX_SENTENCES,
         vocab_size=VOCAB_SIZE, num_units=NUM_UNITS, n=N,
         learning_rate=LEARNING_RATE, seed=SEED):
    """Train the question's network; returns the per-update mean losses."""
    from lstm_accum.backend import lasagne
    from lstm_accum.accumulation.accumulator import GradientAccumulator
    from lstm_accum.data.corpus import prepare_corpus
    from lstm_accum.data.batches import iterate_sentences

    print("[1/3] corpus")
    if corpus is None:
        from lee_corpus import lee_corpus
        corpus = lee_corpus(os.path.join(ROOT, "data"), log=print)
    vocab, sentences, _ = prepare_corpus(corpus, vocab_size, lowercase=True)
    if max_sentences and len(sentences) > max_sentences:
        sentences = sentences.subset(np.arange(max_sentences))
    V = len(vocab)
    print("%d sentences, V=%d" % (len(sentences), V))

    print("[2/3] the question's network and the accumulator (compiling)")
    lasagne.random.set_rng(np.random.RandomState(seed))
    l_in, l_out, target, loss = build_question_network(V, num_units)
    params = lasagne.layers.get_all_params(l_out, trainable=True)

    # ---- the answer -------------------------------------------------------
    acc = GradientAccumulator(loss, params, inputs=[l_in.input_var, target],
                              update=lasagne.updates.adagrad,
                              learning_rate=learning_rate,
                              normalize="samples")
    print("[3/3] training: one Adagrad update per %d sentences" % n)
    losses = []
    start = time.time()
    for epoch in range(num_epochs):
        for X, y in iterate_sentences(sentences, vocab_size=V,
                                      input_kind="onehot", seed=seed,
                                      epoch=epoch):
            acc.accumulate(X, y)          # gradient summed on the device
            if acc.samples >= n:
                result = acc.apply()      # divide by N, Adagrad, reset
                losses.append(result.loss * result.samples / result.tokens)
                if len(losses) % 5 == 0 or len(losses) == 1:
                    print("update %3d: loss %.3f nats/token"
                          % (len(losses), losses[-1]), flush=True)
        if acc.samples:                   # the last, partial window
            result = acc.apply()
            losses.append(result.loss * result.samples / result.tokens)
    # -----------------------------------------------------------------------
    print("%d updates in %.0f s; loss %.3f -> %.3f nats/token"
          % (len(losses), time.time() - start, losses[0], losses[-1]))
    return losses


if __name__ == "__main__":
    main()
