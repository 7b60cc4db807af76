"""GradientAccumulator against the original question's approach, side by side.

Run from the repository root::

    .venv/bin/python benchmarks/accumulator_vs_question.py
    .venv/bin/python benchmarks/accumulator_vs_question.py --units 256 --window 16
    .venv/bin/python benchmarks/accumulator_vs_question.py --variants

The question's network (float32): one-hot input ``(1, T, V)`` ->
``LSTMLayer(H, grad_clipping=5)`` -> ``SliceLayer(l, 0, 0)`` -> softmax
``DenseLayer(V)``, summed cross-entropy of the next-word targets.

Two ways to average the gradients of a window of N sentences and apply one
Adagrad update (learning rate 0.005), on the same sentences, from the same
initial weights, interleaved window by window in one run:

question
    a compiled function returns every gradient to numpy, where they are
    summed; a second compiled function takes the averaged gradients as
    inputs and applies Adagrad;
accumulator
    ``GradientAccumulator.accumulate`` sums on the device and ``apply``
    divides, updates and resets there.

Reported: time per ``accumulate``-equivalent call and per ``apply``-equivalent
call (median over all calls, min..max, and the median of paired ratios:
calls are interleaved sentence by sentence; plus the median CPU time of the
main thread, less sensitive to other load on a shared machine), compile time (excluded from the
timings), that both give the same parameters after the first window, and the
memory the question's approach needs to keep N=1024 gradients in a list at
the question's size (V=2000, H=4096), from the parameter count, next to the
accumulator's (accumulators + Adagrad state).
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Defaults: the size issue 3 names.
VOCAB = 2000      # vocabulary size V
UNITS = 256       # LSTM units H
WINDOW = 16       # sentences per window N (timed calls per window)
REPEATS = 5       # timed windows per approach; medians over these
SEED = 0          # corpus and weights
LR = 0.005        # Adagrad learning rate (the question's)
MEMORY_SIZE = dict(vocab=2000, units=4096, window=1024)  # the question's


def lstm_dense_param_count(vocab, units):
    """Trainable parameters of the question's network (Lasagne 0.1 defaults).

    LSTMLayer: 4 gates x (input-to-hidden V*H + hidden-to-hidden H*H + bias
    H) and 3 peephole vectors H (hid_init/cell_init are not trainable);
    DenseLayer: H*V + V.
    """
    return 4 * (vocab * units + units * units + units) + 3 * units + \
        units * vocab + vocab


def build_network(vocab, units):
    from lstm_accum.backend import T, lasagne
    L = lasagne.layers
    X = T.tensor3("X")
    y = T.ivector("y")
    l_in = L.InputLayer((None, None, vocab), input_var=X)
    l_lstm = L.LSTMLayer(l_in, units, grad_clipping=5)
    l_slice = L.SliceLayer(l_lstm, 0, 0)
    l_out = L.DenseLayer(l_slice, vocab,
                         nonlinearity=lasagne.nonlinearities.softmax)
    params = L.get_all_params(l_out, trainable=True)
    loss = T.nnet.categorical_crossentropy(L.get_output(l_out), y).sum()
    return X, y, params, loss


def make_sentences(n, vocab, seed):
    """Zipf word ids, English-like lengths (median ~20, 2..80 tokens)."""
    rng = np.random.RandomState(seed)
    lengths = np.clip(np.round(rng.lognormal(np.log(20), 0.5, n)), 2, 80)
    ranks = np.arange(1, vocab + 1)
    p = 1.0 / ranks
    p /= p.sum()
    return [rng.choice(vocab, size=int(t) + 1, p=p).astype("int32")
            for t in lengths]


def one_hot(ids, vocab, dtype):
    x = np.zeros((1, len(ids) - 1, vocab), dtype=dtype)
    x[0, np.arange(len(ids) - 1), ids[:-1]] = 1
    return x, ids[1:]


class Question(object):
    """The original question's approach: gradients to numpy, summed there."""

    def __init__(self, X, y, params, loss, lr):
        from lstm_accum.backend import theano, T, lasagne
        self.params = params
        self.grad_fn = theano.function([X, y], theano.grad(loss, params))
        grads_in = [T.TensorType(p.dtype, p.broadcastable)() for p in params]
        self.apply_fn = theano.function(
            grads_in, [], updates=lasagne.updates.adagrad(grads_in, params,
                                                          lr))
        self.sums = None
        self.count = 0

    def accumulate(self, X, y):
        grads = self.grad_fn(X, y)
        if self.sums is None:
            self.sums = [np.array(g) for g in grads]
        else:
            for s, g in zip(self.sums, grads):
                s += g
        self.count += 1

    def apply(self):
        self.apply_fn(*[s / s.dtype.type(self.count) for s in self.sums])
        self.sums, self.count = None, 0


def median_range(xs):
    xs = np.asarray(xs) * 1e3
    return "%8.2f ms (%.1f..%.1f)" % (np.median(xs), xs.min(), xs.max())


def main(vocab=VOCAB, units=UNITS, window=WINDOW, repeats=REPEATS,
         seed=SEED, variants=False):
    from lstm_accum.backend import theano, lasagne, describe
    from lstm_accum.accumulation import GradientAccumulator
    dtype = theano.config.floatX
    print("# %s" % describe())
    print("# V=%d H=%d window N=%d, %d timed windows per approach, %s"
          % (vocab, units, window, repeats, dtype))

    X, y, params, loss = build_network(vocab, units)
    n_params = sum(p.get_value().size for p in params)
    assert n_params == lstm_dense_param_count(vocab, units), n_params
    init = [p.get_value().copy() for p in params]

    t0 = time.time()
    question = Question(X, y, params, loss, LR)
    t_q = time.time() - t0
    t0 = time.time()
    acc = GradientAccumulator(loss, params, [X, y], normalize="samples",
                              update=lasagne.updates.adagrad,
                              learning_rate=LR, vocab_size=vocab)
    t_a = time.time() - t0
    extra = []
    if variants:
        # The accumulator as it was before AccumulateIfFinite: a
        # switch(ok, acc + g, acc) graph per parameter, buffers freed.
        old = (GradientAccumulator.cpu_inplace_add,
               GradientAccumulator.keep_buffers)
        GradientAccumulator.cpu_inplace_add = False
        GradientAccumulator.keep_buffers = False
        try:
            extra.append(("acc-switch", GradientAccumulator(
                loss, params, [X, y], normalize="samples",
                update=lasagne.updates.adagrad, learning_rate=LR,
                vocab_size=vocab)))
        finally:
            (GradientAccumulator.cpu_inplace_add,
             GradientAccumulator.keep_buffers) = old
    print("# compile: question %.1f s, accumulator %.1f s (Theano cache "
          "state decides; excluded below)" % (t_q, t_a))

    sentences = make_sentences(window * (repeats + 1), vocab, seed)
    batches = [one_hot(s, vocab, dtype) for s in sentences]
    tokens = sum(len(b[1]) for b in batches)
    print("# %d sentences, %d target tokens, median length %d" %
          (len(batches), tokens, np.median([len(b[1]) for b in batches])))

    # Same answer: one window from the same weights, both ways.
    first = batches[:window]
    for p, v in zip(params, init):
        p.set_value(v.copy())
    for b in first:
        question.accumulate(*b)
    question.apply()
    after_q = [p.get_value().copy() for p in params]
    for p, v in zip(params, init):
        p.set_value(v.copy())
    for b in first:
        acc.accumulate(*b)
    acc.apply()
    after_a = [p.get_value() for p in params]
    num = np.sqrt(sum(np.sum((a.astype(np.float64) - q) ** 2)
                      for a, q in zip(after_a, after_q)))
    den = np.sqrt(sum(np.sum((q.astype(np.float64) - v) ** 2)
                      for q, v in zip(after_q, init)))
    print("# same update: |accumulator - question| / |question step| = %.1e"
          % (num / den))

    # Interleaved call by call (order alternating), so that both approaches
    # see the same load on a shared machine; the paired ratios (question
    # time / accumulator time of the same sentence) are the robust figure.
    approaches = [("question", question), ("accumulator", acc)] + extra
    timings = {name: ([], []) for name, _ in approaches}
    cpu = {name: ([], []) for name, _ in approaches}
    for r in range(repeats):
        win = batches[(r + 1) * window:(r + 2) * window]
        for i, b in enumerate(win):
            for name, method in approaches[::1 if (r + i) % 2 else -1]:
                t0, c0 = time.perf_counter(), time.thread_time()
                method.accumulate(*b)
                timings[name][0].append(time.perf_counter() - t0)
                cpu[name][0].append(time.thread_time() - c0)
        for name, method in approaches[::1 if r % 2 else -1]:
            t0, c0 = time.perf_counter(), time.thread_time()
            method.apply()
            timings[name][1].append(time.perf_counter() - t0)
            cpu[name][1].append(time.thread_time() - c0)

    print()
    print("%-18s %-30s %-30s" % ("approach", "per accumulate call",
                                 "per apply"))
    for name, _ in approaches:
        acc_t, app_t = timings[name]
        print("%-18s %-30s %-30s" % (name + " wall", median_range(acc_t),
                                     median_range(app_t)))
        print("%-18s %-30s %-30s" % (
            name + " cpu", "%8.2f ms" % (np.median(cpu[name][0]) * 1e3),
            "%8.2f ms" % (np.median(cpu[name][1]) * 1e3)))
    for name, _ in approaches[1:]:
        ratios = [np.median(np.asarray(timings["question"][k]) /
                            np.asarray(timings[name][k]))
                  for k in (0, 1)]
        label = "question/acc" if name == "accumulator" else \
            "question/" + name
        print("%-18s %-30s %-30s" % (label + " wall", "%.2fx (paired "
                                     "ratios)" % ratios[0],
                                     "%.2fx" % ratios[1]))
    qa, aa = (np.median(timings[n][0]) for n in ("question", "accumulator"))
    qp, ap = (np.median(timings[n][1]) for n in ("question", "accumulator"))
    window_q = qa * window + qp
    window_a = aa * window + ap
    print("# window of N=%d from the medians: question %.3f s, accumulator "
          "%.3f s (%.2fx)" % (window, window_q, window_a,
                              window_q / window_a))

    size = MEMORY_SIZE
    n = lstm_dense_param_count(size["vocab"], size["units"])
    itemsize = np.dtype(dtype).itemsize
    grad_bytes = n * itemsize
    print()
    print("# memory at V=%d, H=%d (%d trainable parameters, %s), N=%d:"
          % (size["vocab"], size["units"], n, dtype, size["window"]))
    print("%-44s %10.1f GB" % ("question: N gradients kept in a list",
                              size["window"] * grad_bytes / 1e9))
    print("%-44s %10.3f GB" % ("accumulator: accumulators + Adagrad state",
                              2 * grad_bytes / 1e9))
    print("%-44s %10.3f GB" % ("(both also hold the parameters)",
                              grad_bytes / 1e9))
    return timings


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=VOCAB)
    parser.add_argument("--units", type=int, default=UNITS)
    parser.add_argument("--window", type=int, default=WINDOW)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--variants", action="store_true",
                        help="also time the accumulator with the switch "
                        "graph it used before AccumulateIfFinite")
    args = parser.parse_args()
    main(args.vocab, args.units, args.window, args.repeats, args.seed,
         args.variants)
