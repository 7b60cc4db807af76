"""JoinedRows: the rewrite's one-pass copy of a Join of row lookups equals
numpy's fancy indexing and concatenation, and raises as Theano's lookup."""
import numpy as np
import pytest

from lstm_accum.backend import theano, T
from lstm_accum.ops import JoinedRows
from lstm_accum.models import build_model

PY_MODE = theano.Mode(linker="py", optimizer="fast_run")


def _fn(parts, index, mode=None):
    ids = T.vector("ids", dtype=index)
    f = theano.function([ids], T.concatenate([W[ids] for W in parts],
                                             axis=1), mode=mode)
    return f, [type(n.op) for n in f.maker.fgraph.toposort()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("index", ["int32", "int64"])
@pytest.mark.parametrize("mode", [None, PY_MODE], ids=["c", "py"])
def test_equals_numpy(dtype, index, mode):
    rng = np.random.RandomState(3)
    values = [rng.randn(50, d).astype(dtype) for d in (3, 16, 7, 1)]
    f, ops = _fn([theano.shared(v) for v in values], index, mode)
    assert ops == [JoinedRows]
    # 3000 rows of 27: over 2^16 values, shared out to the team
    for ids in ([0, 49, -1, -50, 7, 7], list(rng.randint(-50, 50, 300)),
                list(rng.randint(-50, 50, 3000)), []):
        ids = np.array(ids, index)
        want = np.concatenate([v[ids] for v in values], axis=1)
        got = f(ids)
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", [None, PY_MODE], ids=["c", "py"])
@pytest.mark.parametrize("bad", [50, -51])
def test_index_out_of_bounds_raises(mode, bad):
    f, _ = _fn([theano.shared(np.ones((50, 2))),
                theano.shared(np.ones((60, 3)))], "int64", mode)
    with pytest.raises(IndexError, match="index %d .position 1. is out of "
                                         "bounds for part 0 of 50 rows"
                       % bad):
        f(np.array([1, bad], "int64"))


def test_not_rewritten_when_not_one_lookup_along_columns():
    W = theano.shared(np.ones((5, 2)))
    a, b = T.lvector("a"), T.lvector("b")
    for out in (T.concatenate([W[a], W[b]], axis=1),      # two index vectors
                T.concatenate([W[a], W[a]], axis=0),      # along the rows
                T.concatenate([W[a], W[a][::-1]], axis=1)):
        f = theano.function([a, b], out, on_unused_input="ignore")
        assert JoinedRows not in {type(n.op)
                                  for n in f.maker.fgraph.toposort()}


def test_the_id_models_forward_uses_it():
    model = build_model(30, 8, input="ids", batching="bucket", seed=1)
    f = theano.function(model.inputs, model.token_nll())
    ops = {type(n.op) for n in f.maker.fgraph.toposort()}
    assert JoinedRows in ops
    assert T.subtensor.AdvancedSubtensor1 not in ops


def test_build_time_type_errors():
    ids = T.lvector()
    with pytest.raises(TypeError, match="ids must be an int32 or int64"):
        JoinedRows()(T.dvector(), T.dmatrix())
    with pytest.raises(TypeError, match="of one float dtype"):
        JoinedRows()(ids, T.dmatrix(), T.fmatrix())
    with pytest.raises(TypeError, match="1 to 8 matrices"):
        JoinedRows()(ids)
