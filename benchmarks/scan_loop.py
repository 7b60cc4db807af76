"""Per-step cost of theano.scan's loop: compiled (lstm_accum.backend.scan_loop) vs Python.

Run from the repository root::

    .venv/bin/python benchmarks/scan_loop.py            # defaults below
    .venv/bin/python benchmarks/scan_loop.py --units 256 --vocab 2000 --length 20

The original question's network (one-hot input (1, T, V) -> LSTMLayer(H,
grad_clipping=5) -> SliceLayer -> softmax DenseLayer), float32, one
forward+backward pass per sentence (a compiled function returning the summed
loss and every gradient), is compiled twice in this process: once with the
compiled scan loop, once with scan's Python loop (the compiled module hidden
from Theano while that function is built).  Calls of the two alternate, so
the load of other processes on the machine affects both alike.  Two
measurements:

* ``model``: time per sentence at the given size (median of repeats);
* ``per token``: the same network at H=1, V=2, where the arithmetic is
  negligible, at two lengths; the slope is the loop's own cost per token
  (one forward and one backward scan step).

Compile time is excluded (it depends on Theano's cache).
"""
import argparse
import contextlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lstm_accum.backend import T, floatX, lasagne, theano
from lstm_accum.backend import scan_loop as scan_ext
# Defaults: the size the issue names (V=2000, H=256, T=20 ~ median sentence).
VOCAB = 2000     # vocabulary size V
UNITS = 256      # LSTM units H
LENGTH = 20      # sentence length T (time steps)
REPEATS = 21     # timed calls per measurement and loop; the median is kept
SHORT, LONG = 10, 80   # lengths for the per-token slope

_EXT = "theano.scan_module.scan_perform_ext"


@contextlib.contextmanager
def _python_loop():
    """Hide the compiled loop from Theano while a function is compiled."""
    package = sys.modules["theano.scan_module"]
    saved_module = sys.modules.get(_EXT)
    saved_attr = package.__dict__.pop("scan_perform_ext", None)
    sys.modules[_EXT] = None
    try:
        yield
    finally:
        sys.modules[_EXT] = saved_module
        if saved_attr is not None:
            package.scan_perform_ext = saved_attr


def _loops(fn):
    """'python' or 'compiled' for each scan node of a compiled function."""
    from theano.scan_module.scan_op import Scan
    return {("python" if getattr(thunk.perform, "__func__", None)
             is Scan.execute else "compiled")
            for node, thunk in zip(fn.maker.fgraph.toposort(), fn.fn.thunks)
            if isinstance(node.op, Scan)}


def question_network(vocab, units):
    """The question's network, symbolic.

    Returns
    -------
    tuple
        ``(inputs, loss, params, grads)``: ``[X (1, T, V) one-hot, y (T,)
        int32]``, the summed NLL, the trainable parameters and their
        gradients.
    """
    X = T.tensor3("X")
    y = T.ivector("y")
    l_in = lasagne.layers.InputLayer((None, None, vocab), X)
    l_lstm = lasagne.layers.LSTMLayer(l_in, units, grad_clipping=5)
    l_slice = lasagne.layers.SliceLayer(l_lstm, 0, 0)
    l_out = lasagne.layers.DenseLayer(
        l_slice, vocab, nonlinearity=lasagne.nonlinearities.softmax)
    prob = lasagne.layers.get_output(l_out)
    loss = T.nnet.categorical_crossentropy(prob, y).sum()
    params = lasagne.layers.get_all_params(l_out, trainable=True)
    return [X, y], loss, params, theano.grad(loss, params)


def _network(vocab, units):
    """Two compiled forward+backward functions: compiled and Python loop."""
    inputs, loss, params, grads = question_network(vocab, units)
    outputs = [loss] + grads
    compiled = theano.function(inputs, outputs)
    with _python_loop():
        python = theano.function(inputs, outputs)
    assert _loops(compiled) == {"compiled"}, _loops(compiled)
    assert _loops(python) == {"python"}, _loops(python)
    return compiled, python


def sentence(rng, vocab, length):
    """A random one-hot sentence ``(X (1, T, V), y (T,))``."""
    ids = rng.randint(0, vocab, size=length)
    x = np.zeros((1, length, vocab), dtype=floatX)
    x[0, np.arange(length), ids] = 1
    y = rng.randint(0, vocab, size=length).astype("int32")
    return x, y


def _median_times(fns, args, repeats):
    """Median, min and max seconds per call of each function, interleaved."""
    times = [[] for _ in fns]
    for fn in fns:
        fn(*args)  # warm up (allocations)
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            start = time.perf_counter()
            fn(*args)
            out.append(time.perf_counter() - start)
    return [(float(np.median(t)), float(min(t)), float(max(t)))
            for t in times]


def measure(vocab, units, length, repeats, seed=0):
    """Both loops side by side.

    Returns
    -------
    dict
        ``{'compiled': {...}, 'python': {...}}``, each with ``model_s``
        (median, min, max seconds per sentence) and ``token_s`` (the loop's
        own seconds per token, forward and backward step).
    """
    lasagne.random.set_rng(np.random.RandomState(seed))
    rng = np.random.RandomState(seed + 1)
    if scan_ext.status() != "compiled":
        sys.exit("the compiled scan loop is not in use (%s)"
                 % scan_ext.build_error())
    fns = _network(vocab, units)
    model = _median_times(fns, sentence(rng, vocab, length), repeats)
    tiny = _network(2, 1)
    short = _median_times(tiny, sentence(rng, 2, SHORT), repeats)
    long_ = _median_times(tiny, sentence(rng, 2, LONG), repeats)
    return {name: {"model_s": model[i],
                   "token_s": (long_[i][0] - short[i][0]) / (LONG - SHORT)}
            for i, name in enumerate(("compiled", "python"))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=VOCAB)
    parser.add_argument("--units", type=int, default=UNITS)
    parser.add_argument("--length", type=int, default=LENGTH)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    res = measure(args.vocab, args.units, args.length, args.repeats)
    c, p = res["compiled"], res["python"]
    print("scan loop, V=%d H=%d T=%d %s, forward+backward per sentence, "
          "median (min..max) of %d" % (args.vocab, args.units, args.length,
                                       floatX, args.repeats))
    print("%-9s %26s %22s" % ("loop", "ms/sentence", "loop us/token"))
    for name, r in (("compiled", c), ("python", p)):
        print("%-9s %8.2f (%6.2f..%6.2f) %22.1f" % (
            name, 1e3 * r["model_s"][0], 1e3 * r["model_s"][1],
            1e3 * r["model_s"][2], 1e6 * r["token_s"]))
    saved = p["model_s"][0] - c["model_s"][0]
    print("compiled loop: %.2f ms/sentence less (%.1f%%), loop cost "
          "%.1f us/token less" % (1e3 * saved, 100 * saved / p["model_s"][0],
                                  1e6 * (p["token_s"] - c["token_s"])))


if __name__ == "__main__":
    main()
