"""The accumulate step's C code (``AccumulateIfFinite``) and the total
squared norm of ``apply`` (``SquaredNorm``) against numpy.

References: numpy's in-place add of the same parts of the same arrays
(the accumulators must equal it bit for bit: one addition per element),
numpy's float64 sum of squares (the norm, to float rounding), and the
ops' own Python code under Theano's Python linker (the same answers).
Sizes are large enough for the team of threads to share the work out;
``team_worker.py --accumulate`` runs the same ops in processes with one,
two and three threads, whose results must be identical.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from lstm_accum.backend import theano, T
from lstm_accum.ops.accumulate import AccumulateIfFinite, SquaredNorm

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = theano.compile.Mode(linker="py", optimizer="fast_run")

#: accumulators: a (300, 1001) and a (1001, 300) matrix that are parts of
#: one joined gradient (columns) and of another (rows), rows of a (97,
#: 258) matrix that go to given rows of a (2000, 129) one, and a vector
#: taken whole.
SPEC = ((0, 1, 1, 0), (0, 1, 1, 1), (2, 0, 1, 1), (2, 0, 1, 0),
        (3, 1, 4, 1, 5), (3, 1, 4, 0, 5), (6, -1, -1, -1))


def sources(dtype, seed=0):
    """The sources of SPEC: joined gradients, their cut sizes, row sums
    with their distinct rows, and a vector."""
    rng = np.random.RandomState(seed)
    cols = rng.normal(size=(300, 2002)).astype(dtype)
    rows = rng.normal(size=(2002, 300)).astype(dtype)
    sums = rng.normal(size=(97, 258)).astype(dtype)
    words = rng.permutation(2000)[:97].astype("int64")
    vec = rng.normal(size=70001).astype(dtype)
    return [cols, np.array([1001, 1001]), rows, sums, np.array([129, 129]),
            words, vec]


def accumulators(dtype, seed=1):
    rng = np.random.RandomState(seed)
    shapes = [(300, 1001), (300, 1001), (1001, 300), (1001, 300),
              (2000, 129), (2000, 129), (70001,)]
    return [rng.normal(size=s).astype(dtype) for s in shapes]


def numpy_accumulate(accs, src):
    """What the op must leave in the accumulators: numpy's adds."""
    out = [a.copy() for a in accs]
    cols, _, rows, sums, _, words, vec = src
    out[0] += cols[:, :1001]
    out[1] += cols[:, 1001:]
    out[2] += rows[1001:]
    out[3] += rows[:1001]
    out[4][words] = out[4][words] + sums[:, 129:]
    out[5][words] = out[5][words] + sums[:, :129]
    out[6] += vec
    return out


def compiled(dtype, inplace_values=None, mode=None):
    """``(fn, shared)``: the op updating shared accumulators in place (the
    optimizer's in-place version), as the accumulate step runs it."""
    shared = [theano.shared(a) for a in (inplace_values or
                                         accumulators(dtype))]
    inputs = [T.scalar(dtype=dtype), T.matrix(dtype=dtype), T.lvector(),
              T.matrix(dtype=dtype), T.matrix(dtype=dtype), T.lvector(),
              T.lvector(), T.vector(dtype=dtype)]
    outs = AccumulateIfFinite(SPEC)(inputs[0], *(shared + inputs[1:]))
    fn = theano.function(inputs, outs[0], mode=mode,
                         updates=list(zip(shared, outs[1:])))
    return fn, shared


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("linker", ["c", "py"])
def test_accumulate_adds_as_numpy_in_place(dtype, linker):
    fn, shared = compiled(dtype, mode=PY if linker == "py" else None)
    op = [n.op for n in fn.maker.fgraph.toposort()
          if isinstance(n.op, AccumulateIfFinite)]
    assert len(op) == 1 and op[0].inplace
    buffers = [s.get_value(borrow=True, return_internal_type=True)
               for s in shared]
    want = accumulators(dtype)
    for seed in range(3):
        src = sources(dtype, seed)
        want = numpy_accumulate(want, src)
        assert fn(1.5, *src)
    for s, w, b in zip(shared, want, buffers):
        got = s.get_value(borrow=True, return_internal_type=True)
        assert got is b                     # updated in its own buffer
        assert got.dtype == dtype and np.array_equal(got, w)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_not_in_place_leaves_the_inputs(dtype):
    accs = [T.matrix(dtype=dtype) for _ in range(6)] + [T.vector(dtype=dtype)]
    src = [T.matrix(dtype=dtype), T.lvector(), T.matrix(dtype=dtype),
           T.matrix(dtype=dtype), T.lvector(), T.lvector(),
           T.vector(dtype=dtype)]
    loss = T.scalar(dtype=dtype)
    outs = AccumulateIfFinite(SPEC)(loss, *(accs + src))
    fn = theano.function([loss] + accs + src, outs)
    a, s = accumulators(dtype), sources(dtype)
    keep = [x.copy() for x in a]
    ok, *new = fn(0.5, *(a + s))
    assert ok
    for got, w in zip(new, numpy_accumulate(keep, s)):
        assert np.array_equal(got, w)
    for x, k in zip(a, keep):
        assert np.array_equal(x, k)


@pytest.mark.parametrize("where", ["loss", 0, 3, 6])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e20])
def test_non_finite_adds_nothing(where, bad):
    """NaN or Inf in the loss or anywhere in a source (here near the end,
    in the last thread's share) leaves every accumulator as it was; so
    does a finite float32 value whose square overflows, as a float32 BLAS
    squared norm does."""
    fn, shared = compiled("float32")
    before = [s.get_value() for s in shared]
    src = sources("float32")
    loss = np.float32(1.0)
    if where == "loss":
        if bad == 1e20:
            return              # a finite loss is a good loss
        loss = np.float32(bad)
    else:
        src[where].flat[-20] = bad
    assert not fn(loss, *src)
    for s, b in zip(shared, before):
        assert np.array_equal(s.get_value(), b)


@pytest.mark.parametrize("linker", ["c", "py"])
@pytest.mark.parametrize("case", ["cut", "rows", "whole", "word"])
def test_a_gradient_that_does_not_fit_raises_and_adds_nothing(linker, case):
    fn, shared = compiled("float64", mode=PY if linker == "py" else None)
    before = [s.get_value() for s in shared]
    src = sources("float64")
    if case == "cut":                 # the cuts do not give (300, 1001)
        src[1] = np.array([1000, 1002])
        error, match = ValueError, "shape"
    elif case == "rows":
        src[3] = src[3][:, :250]
        error, match = ValueError, "shape"
    elif case == "whole":
        src[6] = src[6][:-1]
        error, match = ValueError, "shape"
    else:
        src[5][7] = 2000
        error, match = IndexError, "2000"
    with pytest.raises(error, match=match):
        fn(1.0, *src)
    for s, b in zip(shared, before):
        assert np.array_equal(s.get_value(), b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_squared_norm_is_the_sum_of_squares(dtype):
    rng = np.random.RandomState(4)
    arrays = [rng.normal(size=s).astype(dtype)
              for s in [(300, 1001), (70001,), (3, 5), (0, 4), (8193,)]]
    xs = [T.TensorType(dtype, (False,) * a.ndim)() for a in arrays]
    c = theano.function(xs, SquaredNorm()(*xs))
    py = theano.function(xs, SquaredNorm()(*xs), mode=PY)
    want = sum(float(np.sum(a.astype("float64") ** 2)) for a in arrays)
    tol = 1e-6 if dtype == "float32" else 1e-12
    for fn in (c, py):
        got = fn(*arrays)
        assert got.dtype == "float64" and abs(got - want) <= tol * want
    # a transposed view is read as its values, in their order
    assert c(*[a.T for a in arrays]) == \
        c(*[np.ascontiguousarray(a.T) for a in arrays])
    for bad in (np.nan, np.inf):
        arrays[1][-3] = bad
        assert not np.isfinite(c(*arrays))
    arrays[1][-3] = 0
    if dtype == "float32":
        arrays[0][-1, -1] = 1e20      # its float32 square overflows
        assert c(*arrays) == np.inf
    with pytest.raises(TypeError, match="float32 or float64"):
        SquaredNorm()(T.lvector())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_divided_squared_norm_divides_each_element_first(dtype):
    # apply's norm of the averaged gradient, read from the accumulators:
    # numpy's division in the arrays' dtype, then the squares summed in
    # float64; an integer divisor arrives cast to float64.
    rng = np.random.RandomState(8)
    arrays = [(rng.normal(size=s) * 30).astype(dtype)
              for s in [(300, 1001), (70001,), (3, 5), (0, 4)]]
    xs = [T.TensorType(dtype, (False,) * a.ndim)() for a in arrays]
    count = T.lscalar()
    norm = SquaredNorm(divided=True)(T.cast(count, "float64"), *xs)
    tol = 1e-6 if dtype == "float32" else 1e-12
    for mode in (None, PY):
        fn = theano.function([count] + xs, norm, mode=mode)
        for n in (1, 3, 7):
            got = fn(n, *arrays)
            want = sum(float(np.sum((a / a.dtype.type(n)).astype(
                "float64") ** 2)) for a in arrays)
            assert got.dtype == "float64" and abs(got - want) <= tol * want
    fn = theano.function([count] + xs, norm)
    arrays[1][5] = np.nan
    assert not np.isfinite(fn(3, *arrays))
    arrays[1][5] = 0
    if dtype == "float32":
        arrays[0][0, 0] = 3e20      # (3e20 / 3)^2 overflows float32
        assert fn(3, *arrays) == np.inf
    with pytest.raises(TypeError, match="float64 scalar divisor"):
        SquaredNorm(divided=True)(T.lscalar(), T.fvector())


def test_results_do_not_depend_on_the_number_of_threads(tmp_path):
    runs = []
    for threads in (1, 2, 3):
        out = str(tmp_path / ("accumulate-%d.npz" % threads))
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads),
                   PYTHONPATH=os.pathsep.join([ROOT, HERE]))
        env.pop("OMP_NUM_THREADS", None)
        env.pop("GOTO_NUM_THREADS", None)
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, "team_worker.py"),
             "--accumulate", out], env=env, capture_output=True, text=True,
            timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with np.load(out) as f:
            runs.append({k: f[k] for k in f.files})
    assert len(runs[0]) == 10
    src = sources("float32")
    want = numpy_accumulate(accumulators("float32"), src)
    for k, w in enumerate(want):
        assert np.array_equal(runs[0]["acc/%d" % k], w)
    for run in runs[1:]:
        for k in runs[0]:
            assert np.array_equal(run[k], runs[0][k]), k
