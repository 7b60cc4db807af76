"""The fixes of Theano's gpuarray backend for contexts that are not CUDA
(``lstm_accum.backend.opencl``): each against Theano's own behaviour."""
import os
import subprocess
import sys
import types

import numpy as np

from conftest import ROOT
from lstm_accum.backend import T, theano
from lstm_accum.backend import opencl


def fake_node(kind, dtype="float32"):
    context = types.SimpleNamespace(kind=kind)
    var = types.SimpleNamespace(dtype=dtype,
                                type=types.SimpleNamespace(context=context))
    index = types.SimpleNamespace(dtype="int32", type=var.type)
    return types.SimpleNamespace(inputs=[var, var, index])


def test_the_softmax_kernel_is_fixed_on_opencl_only():
    from theano.gpuarray import nnet
    op = nnet.GpuCrossentropySoftmaxArgmax1HotWithBias()
    theirs = op.theano_gpu_kernels
    # CUDA: Theano's kernel as it is (declarations inside the row loop)
    cuda = op.gpu_kernels(fake_node(b"cuda"), "n")[0].code
    assert cuda == theirs(fake_node(b"cuda"), "n")[0].code
    head, loop = cuda.split(opencl._ROW_LOOP)
    assert "LOCAL_MEM" in loop.replace("LOCAL_MEM_ARG", "")
    # OpenCL: Theano's lines, the two local declarations before the loop
    original = theirs(fake_node(b"opencl"), "n")[0].code
    fixed = op.gpu_kernels(fake_node(b"opencl"), "n")[0].code
    head, loop = fixed.split(opencl._ROW_LOOP)
    assert "LOCAL_MEM" not in loop.replace("LOCAL_MEM_ARG", "")
    assert head.count("LOCAL_MEM ") == 2
    assert sorted(line.strip() for line in original.splitlines()) == sorted(
        line.strip() for line in fixed.splitlines())
    # and the compiled module is not the one built from the unfixed kernel
    version = op.c_code_cache_version_apply
    assert version(fake_node(b"opencl")) != version(fake_node(b"cuda"))


def test_the_fused_softmax_loss_runs_on_the_device():
    """Theano's fused softmax cross-entropy with bias, and its gradient, on
    the device, against numpy."""
    rng = np.random.RandomState(0)
    x = theano.shared(rng.randn(5, 7).astype("float32"), name="x")
    b = theano.shared(rng.randn(7).astype("float32"), name="b")
    y = T.ivector("y")
    nll = T.nnet.crossentropy_softmax_argmax_1hot_with_bias(x, b, y)[0]
    f = theano.function([y], [nll, T.grad(nll.sum(), x)])
    names = [type(n.op).__name__ for n in f.maker.fgraph.toposort()]
    assert "GpuCrossentropySoftmaxArgmax1HotWithBias" in names, names
    targets = np.array([0, 3, 6, 2, 2], dtype="int32")
    got_nll, got_grad = f(targets)
    z = x.get_value().astype(np.float64) + b.get_value()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(got_nll, -np.log(p[range(5), targets]),
                               rtol=1e-5)
    p[range(5), targets] -= 1
    np.testing.assert_allclose(got_grad, p, rtol=1e-4, atol=1e-6)


def test_buffer_key():
    class Cuda(object):
        gpudata = 1234

    class Other(object):
        base_data, offset = 99, 8

        @property
        def gpudata(self):
            raise TypeError("This is for CUDA arrays.")

    assert opencl.buffer_key(Cuda()) == 1234
    assert opencl.buffer_key(Other()) == (99, 8)


SCAN = """
import numpy as np
from lstm_accum.backend import T, theano, scan_loop
h0 = theano.shared(np.zeros(3, dtype="float32"))
xs = T.fmatrix("xs")
W = theano.shared(np.eye(3, dtype="float32") * 0.5)
hs, _ = theano.scan(lambda x, h: T.tanh(x + T.dot(h, W)), sequences=xs,
                    outputs_info=h0)
cost = hs.sum()
f = theano.function([xs], [hs, T.grad(cost, W)])
assert any("gpu" in str(n.op) for n in f.maker.fgraph.toposort())
x = np.arange(12, dtype="float32").reshape(4, 3) / 10
out, g = f(x)
h, ref = np.zeros(3), []
for row in x:
    h = np.tanh(row + h.dot(np.eye(3) * 0.5))
    ref.append(h)
assert np.allclose(out, ref, atol=1e-6), (out, ref)
print(scan_loop.status(), float(np.asarray(g).sum()))
"""


def test_scan_runs_on_the_device_with_either_loop():
    """Scan's buffer-reuse check on the device, in the compiled loop and in
    Theano's Python loop (LSTM_ACCUM_SCAN=python): the same results."""
    outputs = {}
    for loop in ("compiled", "python"):
        env = dict(os.environ, LSTM_ACCUM_SCAN=loop)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        done = subprocess.run([sys.executable, "-c", SCAN], env=env,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        status, total = done.stdout.split()
        assert status == loop
        outputs[loop] = float(total)
    assert outputs["compiled"] == outputs["python"]


def test_minimum_and_maximum_on_the_device():
    """Theano's minimum/maximum kernels (``nan("")`` in Theano's C, ``NAN``
    on OpenCL): numpy's results, NaN propagated as numpy does."""
    x = T.fvector("x")
    y = T.fvector("y")
    f = theano.function([x, y], [T.minimum(x, y) * 2, T.maximum(x, y) + 1])
    names = [type(n.op).__name__ for n in f.maker.fgraph.toposort()]
    assert "GpuElemwise" in names, names
    a = np.array([1, -2, np.nan, 3, 0], dtype="float32")
    b = np.array([0, 5, 1, np.nan, -0.5], dtype="float32")
    low, high = f(a, b)
    np.testing.assert_array_equal(low, np.minimum(a, b) * 2)
    np.testing.assert_array_equal(high, np.maximum(a, b) + 1)
