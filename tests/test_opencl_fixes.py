"""The fixes of Theano's GPU backend for non-CUDA contexts, as far as they
can be checked without a device (the device tests run them for real):
they touch nothing on the CPU, and each rewrite does exactly its job."""
import os
import types

import numpy as np
import pytest

from lstm_accum.backend import T, opencl, scan_loop, theano
from lstm_accum.backend.transfers import transfers

# Theano 1.0.5's softmax cross-entropy kernel, abridged: what
# fix_local_memory must find and move.
KERNEL = """KERNEL void k(const ga_size M, const ga_size N)
{
  for (ga_int row = GID_0; row < M; row += GDIM_0){
    GA_DECL_SHARED_BODY(float, per_thread_values);
    LOCAL_MEM float row_max, sum, sum_inv;
    LOCAL_MEM ga_int row_max_threadIdx;
    float per_thread_row_max, per_thread_sum;
    row_max = 0;
  }
}
"""


def test_local_memory_moves_to_the_outermost_scope():
    fixed = opencl.fix_local_memory(KERNEL)
    head, loop = fixed.split(opencl._ROW_LOOP)
    assert "LOCAL_MEM" not in loop
    assert head.endswith("{\n  LOCAL_MEM float row_max, sum, sum_inv;\n"
                         "  LOCAL_MEM ga_int row_max_threadIdx;\n  ")
    assert sorted(l.strip() for l in fixed.splitlines()) == sorted(
        l.strip() for l in KERNEL.splitlines())


def test_an_unknown_kernel_is_refused():
    with pytest.raises(RuntimeError, match="reinstall Theano==1.0.5"):
        opencl.fix_local_memory(KERNEL.replace("GDIM_0", "GDIM_1"))
    with pytest.raises(RuntimeError, match="expected 2"):
        opencl.fix_local_memory(KERNEL.replace("    LOCAL_MEM ga_int "
                                               "row_max_threadIdx;\n", ""))


def test_scalar_nan_becomes_opencl_nan():
    code = 'z = ((y)<(x)? (y): ((x)<=(y)? (x): nan("")));'
    assert opencl.fix_scalar_code(code) == \
        'z = ((y)<(x)? (y): ((x)<=(y)? (x): NAN));'


def test_buffer_key_is_gpudata_where_pygpu_gives_it():
    cuda = types.SimpleNamespace(gpudata=1234, base_data=1, offset=2)

    class Other(object):
        base_data, offset = 99, 8

        @property
        def gpudata(self):
            raise TypeError("This is for CUDA arrays.")

    assert opencl.buffer_key(cuda) == 1234
    assert opencl.buffer_key(Other()) == (99, 8)


def test_scan_loop_source_reads_buffers_through_the_key():
    path = os.path.join(os.path.dirname(theano.__file__), "scan_module",
                        "c_code", "scan_perform.c")
    with open(path) as f:
        code = scan_loop.patch_source(f.read())
    assert code.count("lstm_accum_buffer_key(") == 6   # 5 calls + definition
    assert code.count("lstm_accum_separate(") == 2     # 1 call + definition
    assert "__Pyx_PyObject_GetAttrStr(__pyx_v_var, __pyx_n_s_gpudata)" \
        not in code


def test_separate_copies_only_arrays_of_other_contexts():
    array = np.arange(6.0)
    assert opencl.separate(array) is array

    class Part(object):
        def __init__(self, kind):
            self.context = types.SimpleNamespace(kind=kind)

        def copy(self):
            return "copy"

    cuda = Part(b"cuda")
    assert opencl.separate(cuda) is cuda
    assert opencl.separate(Part(b"opencl")) == "copy"


def test_nothing_is_installed_on_the_cpu():
    assert opencl.gpu_contexts(theano) == set()
    from theano.scan_module import scan_op
    assert not getattr(scan_op.Scan.execute, "_lstm_accum_fixed", False)


def test_a_cpu_function_moves_nothing():
    x = T.fmatrix("x")
    w = theano.shared(np.ones((2, 2), dtype="float32"), name="w")
    f = theano.function([x], T.dot(x, w).sum(), updates={w: w * 2})
    assert transfers(f) == []
