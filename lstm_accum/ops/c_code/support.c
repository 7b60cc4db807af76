#section support_code

/* Support code shared by every lstm_accum C operation (CpuCOp, base.py).

   - lstm_accum_exp, lstm_accum_tanh: for float, branch-free versions that
     vectorise (Cephes' expf and tanhf polynomials: within 2 ulps of the
     exact value, +-inf and NaN included; exp gives +inf from x = 88.3763
     on, where its scale 2**128 overflows the exponent bits, short of
     float's own overflow at 88.7228: our operations call it only on
     arguments <= 0 or where the result saturates;
     tests/test_c_math_float32.py).  For double, the C library's.
   - lstm_accum_prepare_output, lstm_accum_contiguous, lstm_accum_release:
     the outputs and inputs of the operations as C-contiguous arrays.

   Loops meant to be vectorised go in __attribute__((noinline)) functions:
   inlined into Theano's large generated function, GCC stops vectorising
   them. */

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
