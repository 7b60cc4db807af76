"""The Theano/Lasagne environment on Python 3.11 and 3.12: defaults that never
override the user, a quiet import, the downsample shim, pkg_resources
immunity, and the stand-ins for what Python 3.12 and numpy 1.24+ removed."""
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from lstm_accum import backend
from lstm_accum.backend import T, lasagne, patches, theano

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, env_update=None, home=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("THEANO_FLAGS", "THEANORC")}
    env["PYTHONPATH"] = ROOT
    if home is not None:
        env["HOME"] = str(home)
        # Keep the shared compile cache: HOME moved, the cache must not.
        env["THEANO_FLAGS"] = "base_compiledir=" + theano.config.base_compiledir
    env.update(env_update or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          env=env, capture_output=True, text=True,
                          timeout=300)
    return proc


PRINT_CONFIG = """
    import lstm_accum
    from lstm_accum.backend import theano
    print(theano.config.floatX, repr(theano.config.blas.ldflags))
"""


def test_import_is_silent_and_lasagne_imports():
    proc = run_python("import lstm_accum, lasagne, lasagne.layers.pool")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == ""


def test_default_floatx_is_float32():
    proc = run_python(PRINT_CONFIG)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "float32"


def test_theano_flags_floatx_float64_is_respected():
    proc = run_python(PRINT_CONFIG, {"THEANO_FLAGS": "floatX=float64"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "float64"


def test_theanorc_is_respected_and_user_env_left_alone(tmp_path):
    (tmp_path / ".theanorc").write_text("[global]\nfloatX = float64\n")
    code = (textwrap.dedent(PRINT_CONFIG)
            + "import os; print(repr(os.environ.get('THEANO_FLAGS')))\n")
    proc = run_python(code, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[0] == "float64"
    # the environment the user gave us is unchanged after import
    assert lines[1] == repr("base_compiledir=" + theano.config.base_compiledir)


def test_user_blas_ldflags_is_respected():
    # A user-set value must reach Theano verbatim; '-lblas_that_is_mine'
    # need not exist, since Theano only links against it when compiling Gemm.
    proc = run_python(PRINT_CONFIG,
                      {"THEANO_FLAGS": "blas.ldflags=-lblas_that_is_mine"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[1] == repr("-lblas_that_is_mine")


def test_user_config_keys_reads_flags_and_rc(tmp_path):
    rc = tmp_path / "rc"
    rc.write_text("[blas]\nldflags = -lopenblas\n[gpuarray]\npreallocate=0.5\n")
    keys = backend.user_config_keys({"THEANO_FLAGS": "floatX=float64,device=cpu",
                                     "THEANORC": str(rc)})
    assert {"floatx", "device", "blas.ldflags", "gpuarray.preallocate"} <= keys
    assert backend.user_config_keys({"THEANORC": str(tmp_path / "none")}) == set()


def test_import_works_without_pkg_resources():
    # setuptools>=70 no longer ships pkg_resources: simulate its absence.
    code = """
        import sys
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name == 'pkg_resources' or name.startswith('pkg_resources.'):
                    raise ImportError('hidden by the test')
        sys.meta_path.insert(0, Hide())
        import lstm_accum, lasagne
        print(lasagne.__version__)
    """
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0.1"


def test_python_313_is_refused_with_a_clear_message():
    code = """
        import sys
        sys.version_info = (3, 13, 0, 'final', 0)
        try:
            import lstm_accum
        except ImportError as err:
            print(err)
    """
    proc = run_python(code)
    assert "no wheels for Python 3.13" in proc.stdout, proc.stdout + proc.stderr
    assert "(this is 3.13)" in proc.stdout
    assert len(proc.stdout.strip().splitlines()) == 1


def test_numpy_aliases_are_added_only_where_missing():
    fake = types.ModuleType("fake_numpy")
    fake.int = "NumPy's own"
    added = patches.install_numpy_aliases(fake)
    assert sorted(added) == ["bool", "complex", "float", "object"]
    assert fake.int == "NumPy's own"
    assert (fake.bool, fake.float, fake.complex, fake.object) == \
        (bool, float, complex, object)
    # Theano's own use of them works on every NumPy we support
    assert theano.scalar.basic.complex_from_polar.impl(2.0, 0.0) == 2.0
    assert np.complex is complex


def test_numpy_include_dirs_as_theano_asks_for_them():
    import numpy.distutils.misc_util
    assert numpy.distutils.misc_util.get_numpy_include_dirs() == \
        [np.get_include()]
    stand_in = getattr(numpy.distutils, "__lstm_accum_fallback__", False)
    assert stand_in == (sys.version_info >= (3, 12))


def test_imp_is_provided_only_inside_the_block(monkeypatch):
    import importlib.util
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a:
                        None if name == "imp" else real_find_spec(name, *a))
    saved = sys.modules.pop("imp", None)
    try:
        with patches.providing_imp():
            import imp
            assert imp.find_module("numpy")[1] == real_find_spec("numpy").origin
            with pytest.raises(ImportError, match="no_such_module"):
                imp.find_module("no_such_module")
        assert "imp" not in sys.modules
    finally:
        if saved is not None:
            sys.modules["imp"] = saved


def numpy_max_pool(x, ds, st, ignore_border):
    n, c, h, w = x.shape
    if ignore_border:
        oh = (h - ds[0]) // st[0] + 1
        ow = (w - ds[1]) // st[1] + 1
    else:
        oh = max(0, (h - ds[0] + st[0] - 1) // st[0]) + 1
        ow = max(0, (w - ds[1] + st[1] - 1) // st[1]) + 1
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * st[0]:i * st[0] + ds[0],
                      j * st[1]:j * st[1] + ds[1]]
            out[:, :, i, j] = patch.max(axis=(2, 3))
    return out


@pytest.mark.parametrize("ds,st,ignore_border",
                         [((2, 2), (2, 2), True), ((3, 2), (2, 1), False),
                          ((2, 2), (2, 2), False)])
def test_lasagne_maxpool_layer_matches_numpy(ds, st, ignore_border):
    x = np.random.RandomState(0).randn(2, 3, 7, 6).astype(theano.config.floatX)
    l_in = lasagne.layers.InputLayer((None, 3, 7, 6))
    l_pool = lasagne.layers.MaxPool2DLayer(l_in, pool_size=ds, stride=st,
                                           ignore_border=ignore_border)
    f = theano.function([l_in.input_var], lasagne.layers.get_output(l_pool))
    got = f(x)
    want = numpy_max_pool(x, ds, st, ignore_border)
    assert got.shape == want.shape
    assert got.shape[1:] == tuple(l_pool.output_shape[1:])
    np.testing.assert_array_equal(got, want)


def test_downsample_module_is_the_shim():
    from theano.tensor.signal import downsample
    x = T.tensor4()
    y = downsample.max_pool_2d(x, ds=(2, 2), ignore_border=True)
    data = np.arange(16, dtype=theano.config.floatX).reshape(1, 1, 4, 4)
    got = theano.function([x], y)(data)
    np.testing.assert_array_equal(got[0, 0], [[5, 7], [13, 15]])


def test_import_does_not_initialise_mpi():
    # theano.tensor.io imports mpi4py.MPI at import time, which starts MPI
    # (and an Open MPI daemon) in every process; the backend hides it.
    code = """
        import sys
        import lstm_accum, lasagne
        print('mpi4py.MPI' in sys.modules)
    """
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_graphs_with_propertyless_ops_are_cached_across_processes():
    # Theano 1.0.5 marked every module holding an op with empty __props__
    # (Softmax, Alloc, ...) "unversioned": recompiled in each process.
    x = T.matrix("x")
    y = T.nnet.softmax(x * 3) + T.zeros((x.shape[0], x.shape[1]))
    f = theano.function([x], y)
    data = np.arange(6, dtype=theano.config.floatX).reshape(2, 3)
    expected = np.exp(3 * data) / np.exp(3 * data).sum(1, keepdims=True)
    np.testing.assert_allclose(f(data), expected, rtol=1e-5)
    cache = theano.gof.cc.get_module_cache()
    unversioned = [k for k in cache.entry_from_key if not k[0]]
    assert unversioned == []
    # and op equality is untouched by the fix
    assert T.nnet.Softmax() == T.nnet.Softmax()
    assert hash(T.nnet.Softmax()) == hash(T.nnet.Softmax())


def test_theano_modules_that_import_imp_import():
    # theano.gpuarray (imported by theano.scan) imports this module, which
    # does `import imp`: removed in Python 3.12.
    code = """
        import sys
        import lstm_accum
        from theano.tests.breakpoint import PdbBreakpoint
        print(PdbBreakpoint.__name__, 'imp' in sys.modules)
    """
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == \
        ["PdbBreakpoint", str(sys.version_info < (3, 12))]
