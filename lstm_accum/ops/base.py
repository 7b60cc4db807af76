"""Shared plumbing of our C operations (:mod:`fused_lstm`, :mod:`softmax_nll`).

:class:`CpuCOp` is a ``theano.Op`` base for operations whose C code is
support-code loops plus BLAS calls through Theano's own BLAS interface (so
``blas.ldflags`` applies as for Theano's ``Gemm``).  It takes care of three
things that are easy to get wrong:

* compile flags: the loops are compiled at ``-O3`` with
  ``-fno-trapping-math`` (without it GCC keeps the selects of the loops as
  branches and does not vectorise them), even under our default
  ``gcc.cxxflags=-O1 -g0``, but never against a level the user chose;
* the compile cache: Theano reuses a compiled module whose *source* is the
  same even when its flags or version differ, so both are stamped into the
  source;
* arrays: :data:`SUPPORT_CODE` has ``lstm_accum_prepare_output``, which
  reuses a C-contiguous output of the right shape and type, and
  ``lstm_accum_contiguous``/``lstm_accum_release`` for the inputs.

:data:`SUPPORT_CODE` also has branch-free, vectorisable ``lstm_accum_exp``
and ``lstm_accum_tanh`` for float (Cephes' polynomials, within 2 ulps of the
exact value over the whole float range, +-inf and NaN included, except that
``lstm_accum_exp`` gives +inf from x = 88.3763 on, where its scale 2**128
overflows the exponent bits, short of float32's own overflow at 88.7228:
our operations call it only on arguments <= 0 or where the result
saturates; ``tests/test_c_math_float32.py``) and the C library's for
double.  Loops meant to be vectorised go in
``__attribute__((noinline))`` functions: inlined into Theano's large
generated function, GCC stops vectorising them.
"""
import hashlib

from ..backend import DEFAULT_FLAGS, DEFAULTED, theano

__all__ = ["CpuCOp", "SUPPORT_CODE", "unavailable_reason", "FLOAT_DTYPES",
           "INDEX_DTYPES", "c_types", "loop_compile_args",
           "cxxflags_defaulted"]

#: The dtypes our C operations take for real values and for indices.
FLOAT_DTYPES = ("float32", "float64")
INDEX_DTYPES = ("int32", "int64")


def c_types(floats, indices):
    """C names of a node's float and index dtypes: ``(ctype, typenum,
    itype)``, e.g. ``('float', 'NPY_FLOAT32', 'npy_int32')``."""
    ctype = "float" if floats.dtype == "float32" else "double"
    typenum = "NPY_FLOAT32" if ctype == "float" else "NPY_FLOAT64"
    itype = "npy_int32" if indices.dtype == "int32" else "npy_int64"
    return ctype, typenum, itype


def unavailable_reason():
    """Why our C operations cannot run here, or None when they can.

    Returns
    -------
    str or None
        E.g. ``'device cuda (our C operations run on the CPU)'``.
    """
    if not theano.config.cxx:
        return "no C++ compiler (theano.config.cxx is empty)"
    if not theano.config.device.startswith("cpu"):
        return "device %s (our C operations run on the CPU)" % (
            theano.config.device,)
    return None


def loop_compile_args():
    """Compile flags of modules whose loops must vectorise."""
    return ["-ftree-vectorize", "-fno-trapping-math"]


def cxxflags_defaulted():
    """Whether ``gcc.cxxflags`` is our default (``-O1 -g0``,
    backend/flags.py), not a level the user chose: only then do our loops
    pick their own optimisation level."""
    return "gcc.cxxflags" in DEFAULTED


class CpuCOp(theano.Op):
    """Base class: C support code, BLAS flags, optimisation level, cache.

    Subclasses set ``c_loops`` (C source placed after :data:`SUPPORT_CODE`)
    and ``c_version`` (an int, bumped whenever the C code changes), and
    write ``c_code``.
    """

    c_loops = ""
    c_version = 0

    def _source_hash(self):
        return hashlib.sha256(
            (SUPPORT_CODE + self.c_loops).encode("utf-8")).hexdigest()[:16]

    def c_support_code(self):
        from theano.tensor.blas_headers import blas_header_text
        stamp = "/* %s v%d (%s), flags: %s */\n" % (
            type(self).__module__, self.c_version, self._source_hash(),
            " ".join(self.c_compile_args() + ["no:"]
                     + self.c_no_compile_args()))
        return stamp + blas_header_text() + SUPPORT_CODE + self.c_loops

    def c_headers(self):
        return ["<cmath>", "<cstring>", "<cstdlib>"]

    def c_libraries(self):
        from theano.tensor.blas import ldflags
        return ldflags()

    def c_compile_args(self):
        from theano.tensor.blas import ldflags
        return loop_compile_args() + ldflags(libs=False, flags=True)

    def c_no_compile_args(self):
        # Our default -O1 keeps Theano's small modules quick to compile;
        # these loops are much of the training time, so they keep Theano's
        # -O3, unless the user chose a level.
        if cxxflags_defaulted():
            return [f for f in DEFAULT_FLAGS["gcc.cxxflags"].split()
                    if f.startswith("-O")]
        return []

    def c_lib_dirs(self):
        from theano.tensor.blas import ldflags
        return ldflags(libs=False, libs_dir=True)

    def c_header_dirs(self):
        from theano.tensor.blas import ldflags
        return ldflags(libs=False, include_dir=True)

    def c_code_cache_version(self):
        from theano.tensor.blas_headers import blas_header_version
        # The hash of the loops: a change of the C code without a change of
        # c_version still gets a new module.
        return (self.c_version, self._source_hash()) + tuple(
            blas_header_version())


_MATH = r"""
/* float: branch-free exp and tanh that vectorise (Cephes' expf and tanhf
   polynomials: relative error ~1e-7, i.e. float rounding); double: the C
   library's. */
static inline float lstm_accum_exp(float x)
{
    x = x < -87.3365448f ? -87.3365448f : (x > 88.7228391f ? 88.7228391f : x);
    float fx = std::floor(x * 1.44269504088896341f + 0.5f);
    float r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
    float z = r * r;
    float y = 1.9875691500E-4f;
    y = y * r + 1.3981999507E-3f;
    y = y * r + 8.3334519073E-3f;
    y = y * r + 4.1665795894E-2f;
    y = y * r + 1.6666665459E-1f;
    y = y * r + 5.0000001201E-1f;
    y = y * z + r + 1.0f;
    int n = (int)fx + 127;
    unsigned int bits = (unsigned int)n << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

static inline float lstm_accum_tanh(float x)
{
    float ax = x < 0 ? -x : x;
    /* |x| >= 0.625: 1 - 2 / (exp(2|x|) + 1), with the sign of x */
    float big = 1.0f - 2.0f / (lstm_accum_exp(2.0f * ax) + 1.0f);
    big = x < 0 ? -big : big;
    /* |x| < 0.625: odd polynomial */
    float z = x * x;
    float p = -5.70498872745E-3f;
    p = p * z + 2.06390887954E-2f;
    p = p * z - 5.37397155531E-2f;
    p = p * z + 1.33314422036E-1f;
    p = p * z - 3.33332819422E-1f;
    float small = x + x * z * p;
    return ax < 0.625f ? small : big;
}

static inline double lstm_accum_exp(double x) { return std::exp(x); }
static inline double lstm_accum_tanh(double x) { return std::tanh(x); }
"""


SUPPORT_CODE = _MATH + r"""
/* Reuse *out when it is a C-contiguous array of the right shape and type,
   else replace it with a new one; returns nonzero (with an exception set)
   on failure. */
static int lstm_accum_prepare_output(PyArrayObject** out, int nd,
                                        npy_intp* dims, int typenum)
{
    PyArrayObject* o = *out;
    if (o && PyArray_NDIM(o) == nd && PyArray_TYPE(o) == typenum
            && PyArray_IS_C_CONTIGUOUS(o)) {
        int same = 1;
        for (int k = 0; k < nd; ++k)
            same = same && PyArray_DIMS(o)[k] == dims[k];
        if (same)
            return 0;
    }
    Py_XDECREF(o);
    *out = (PyArrayObject*)PyArray_EMPTY(nd, dims, typenum, 0);
    if (!*out) {
        PyErr_SetString(PyExc_MemoryError,
                        "could not allocate the output of an lstm_accum C "
                        "operation");
        return 1;
    }
    return 0;
}

/* C-contiguous versions (new references, or NULL) of n input arrays;
   nonzero (with an exception set) on failure.  Release them with
   lstm_accum_release in every case. */
static int lstm_accum_contiguous(int n, PyArrayObject** in,
                                 PyArrayObject** out)
{
    for (int k = 0; k < n; ++k)
        out[k] = NULL;
    for (int k = 0; k < n; ++k) {
        out[k] = in[k] ? PyArray_GETCONTIGUOUS(in[k]) : NULL;
        if (in[k] && !out[k])
            return 1;
    }
    return 0;
}

static void lstm_accum_release(int n, PyArrayObject** arrays)
{
    for (int k = 0; k < n; ++k)
        Py_XDECREF(arrays[k]);
}
"""
