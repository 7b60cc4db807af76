#section support_code

/* AccumulateIfFinite's pass (accumulate.py, after team.c and
   sum_squares.c): acc += g for every accumulator, where g is a part of a
   source array, as rows.  An accumulator's gradient is nrows rows of
   rowlen elements; row r is read at src + r * src_stride + src_off and
   added to row words[r] of the accumulator (row r when words is NULL).
   The elements of each accumulator are shared out to the team in blocks
   of 16; every element gets one addition, as numpy's in-place add. */
struct lstm_accum_add_entry {
    bool single;           /* float32; else float64 */
    char* dst;
    const char* src;
    long nrows, rowlen, src_stride, src_off;
    const npy_int64* words;
};

struct lstm_accum_add_job {
    int count;
    const lstm_accum_add_entry* entries;
};

template <typename T>
__attribute__((noinline)) static void lstm_accum_add_rows(
    const lstm_accum_add_entry* e, long i0, long i1)
{
    T* dst = (T*)e->dst;
    const T* src = (const T*)e->src;
    for (long i = i0; i < i1;) {
        const long r = i / e->rowlen, j = i - r * e->rowlen;
        long n = e->rowlen - j;
        if (n > i1 - i)
            n = i1 - i;
        T* __restrict__ d =
            dst + (e->words ? (long)e->words[r] : r) * e->rowlen + j;
        const T* __restrict__ s = src + r * e->src_stride + e->src_off + j;
        for (long t = 0; t < n; ++t)
            d[t] += s[t];
        i += n;
    }
}

static void lstm_accum_add_work(void* p, int rank, int size)
{
    const lstm_accum_add_job* j = (const lstm_accum_add_job*)p;
    for (int k = 0; k < j->count; ++k) {
        const lstm_accum_add_entry* e = j->entries + k;
        long i0, i1;
        lstm_accum_team_share(e->nrows * e->rowlen, rank, size, &i0, &i1);
        if (i0 >= i1)
            continue;
        if (e->single)
            lstm_accum_add_rows<float>(e, i0, i1);
        else
            lstm_accum_add_rows<double>(e, i0, i1);
    }
}

/* Element k of an integer vector (int8 to int64). */
static long lstm_accum_index_at(PyArrayObject* v, npy_intp k)
{
    const char* p = PyArray_BYTES(v) + k * PyArray_STRIDES(v)[0];
    switch (PyArray_TYPE(v)) {
    case NPY_INT8: return *(const npy_int8*)p;
    case NPY_INT16: return *(const npy_int16*)p;
    case NPY_INT32: return *(const npy_int32*)p;
    default: return (long)*(const npy_int64*)p;
    }
}

/* "(3, 2)": a shape as Python prints it, for the error messages. */
static void lstm_accum_shape_text(int nd, const npy_intp* dims, char* text,
                                  size_t cap)
{
    size_t used = (size_t)snprintf(text, cap, "(");
    for (int k = 0; k < nd && used < cap; ++k)
        used += (size_t)snprintf(text + used, cap - used,
                                 k ? ", %ld" : "%ld", (long)dims[k]);
    if (used < cap)
        snprintf(text + used, cap - used, nd == 1 ? ",)" : ")");
}

/* The entry of one accumulator (spec: source, axis, sizes, part, words),
   its source and index arrays given C-contiguous; false, with an
   exception set, for a gradient that does not fit the accumulator. */
static bool lstm_accum_add_entry_of(const int* spec, PyArrayObject* acc,
                                    PyArrayObject* const* sources,
                                    lstm_accum_add_entry* e)
{
    PyArrayObject* g = sources[spec[0]];
    const int axis = spec[1], part = spec[3], nd = PyArray_NDIM(g);
    npy_intp shape[NPY_MAXDIMS];
    char want[160], got[160];
    long outer = 1, length = 1, inner = 1, start = 0, take = 1;
    if ((PyArray_TYPE(acc) != NPY_FLOAT32 &&
         PyArray_TYPE(acc) != NPY_FLOAT64) ||
            PyArray_TYPE(g) != PyArray_TYPE(acc)) {
        PyErr_SetString(PyExc_TypeError, "AccumulateIfFinite: an "
                        "accumulator and its gradient must be float32 or "
                        "float64 arrays of one dtype");
        return false;
    }
    for (int k = 0; k < nd; ++k)
        shape[k] = PyArray_DIMS(g)[k];
    if (axis >= 0) {
        PyArrayObject* cuts = sources[spec[2]];
        if (axis >= nd || part >= PyArray_SIZE(cuts)) {
            PyErr_Format(PyExc_ValueError, "AccumulateIfFinite: no part "
                         "%d along axis %d of a source of %d dimensions",
                         part, axis, nd);
            return false;
        }
        for (int k = 0; k < part; ++k)
            start += lstm_accum_index_at(cuts, k);
        take = lstm_accum_index_at(cuts, part);
        length = (long)shape[axis];
        if (start < 0 || take < 0 || start + take > length) {
            PyErr_Format(PyExc_ValueError, "AccumulateIfFinite: part %d "
                         "(%ld:%ld) of a source of %ld along axis %d",
                         part, start, start + take, length, axis);
            return false;
        }
        for (int k = 0; k < axis; ++k)
            outer *= (long)shape[k];
        for (int k = axis + 1; k < nd; ++k)
            inner *= (long)shape[k];
        shape[axis] = take;
    } else {
        inner = (long)PyArray_SIZE(g);
        length = take = 1;
    }
    e->single = PyArray_TYPE(acc) == NPY_FLOAT32;
    e->dst = PyArray_BYTES(acc);
    e->src = PyArray_BYTES(g);
    e->nrows = outer;
    e->rowlen = take * inner;
    e->src_stride = length * inner;
    e->src_off = start * inner;
    e->words = NULL;
    if (spec[4] >= 0) {
        /* rows of a (G, D) source to the rows words of the accumulator */
        const bool fits = nd == 2 && PyArray_NDIM(acc) == 2 &&
            axis != 0 && shape[1] == PyArray_DIMS(acc)[1];
        if (!fits) {
            lstm_accum_shape_text(nd > 1 ? nd - 1 : 0, shape + 1, got,
                                  sizeof got);
            lstm_accum_shape_text(PyArray_NDIM(acc), PyArray_DIMS(acc),
                                  want, sizeof want);
            PyErr_Format(PyExc_ValueError, "rows of shape %s for an "
                         "accumulator of shape %s", got, want);
            return false;
        }
        PyArrayObject* words = sources[spec[4]];
        if (PyArray_SIZE(words) != shape[0]) {
            PyErr_Format(PyExc_ValueError, "AccumulateIfFinite: %ld rows "
                         "but %ld row indices", (long)shape[0],
                         (long)PyArray_SIZE(words));
            return false;
        }
        const npy_int64* w = (const npy_int64*)PyArray_DATA(words);
        for (npy_intp r = 0; r < shape[0]; ++r) {
            if (w[r] < 0 || w[r] >= PyArray_DIMS(acc)[0]) {
                PyErr_Format(PyExc_IndexError, "AccumulateIfFinite: row "
                             "%lld of an accumulator of %ld rows",
                             (long long)w[r], (long)PyArray_DIMS(acc)[0]);
                return false;
            }
        }
        e->nrows = (long)shape[0];
        e->rowlen = (long)shape[1];
        e->src_stride = (long)PyArray_DIMS(g)[1];
        e->src_off = start;
        e->words = w;
        return true;
    }
    bool same = nd == PyArray_NDIM(acc);
    for (int k = 0; same && k < nd; ++k)
        same = shape[k] == PyArray_DIMS(acc)[k];
    if (!same) {
        lstm_accum_shape_text(nd, shape, got, sizeof got);
        lstm_accum_shape_text(PyArray_NDIM(acc), PyArray_DIMS(acc), want,
                              sizeof want);
        PyErr_Format(PyExc_ValueError, "gradient of shape %s for an "
                     "accumulator of shape %s", got, want);
        return false;
    }
    return true;
}

/* Whether a 0-d array holds a finite number. */
static bool lstm_accum_finite_scalar(PyArrayObject* x)
{
    switch (PyArray_TYPE(x)) {
    case NPY_FLOAT32: return std::isfinite(*(const float*)PyArray_DATA(x));
    case NPY_FLOAT64: return std::isfinite(*(const double*)PyArray_DATA(x));
    default: return true;  /* integers */
    }
}

#section support_code_apply

/* AccumulateIfFinite's node: the loss, the n accumulators, the m sources,
   then the addresses of the outputs (ok, then the n accumulators).  The
   spec (LSTM_ACCUM_SPEC, n rows) and LSTM_ACCUM_INPLACE are the node's
   macros.  Every gradient is checked against its accumulator before
   anything is added; ok is the loss and every float source being finite
   (a sum of squares per source, sum_squares.c), and only then are the
   gradients added.  Returns nonzero, with an exception set, on failure
   (the accumulators untouched). */
int APPLY_SPECIFIC(accumulate)(PyArrayObject* loss, int n, int m, ...)
{
    static const int spec[][5] = LSTM_ACCUM_SPEC;
    PyArrayObject** accs = (PyArrayObject**)malloc(sizeof(void*) * (n + 1));
    PyArrayObject** in = (PyArrayObject**)malloc(sizeof(void*) * (m + 1));
    PyArrayObject** src = (PyArrayObject**)calloc(m + 1, sizeof(void*));
    PyArrayObject*** outs = (PyArrayObject***)malloc(sizeof(void*) * (n + 1));
    PyArrayObject** checked = (PyArrayObject**)malloc(sizeof(void*) * (m + 1));
    lstm_accum_add_entry* entries = (lstm_accum_add_entry*)malloc(
        sizeof(lstm_accum_add_entry) * (n + 1));
    PyArrayObject** ok_out;
    int done = 0, count = 0;
    bool ok;
    va_list args;
    va_start(args, m);
    for (int i = 0; i < n; ++i) {
        PyArrayObject* a = va_arg(args, PyArrayObject*);
        if (accs) accs[i] = a;
    }
    for (int k = 0; k < m; ++k) {
        PyArrayObject* s = va_arg(args, PyArrayObject*);
        if (in) in[k] = s;
    }
    ok_out = va_arg(args, PyArrayObject**);
    for (int i = 0; i < n; ++i) {
        PyArrayObject** o = va_arg(args, PyArrayObject**);
        if (outs) outs[i] = o;
    }
    va_end(args);
    if (!accs || !in || !src || !outs || !checked || !entries) {
        PyErr_NoMemory();
        goto fail;
    }
    /* the sources, C-contiguous; row indices as int64 */
    for (int k = 0; k < m; ++k) {
        bool rows = false;
        for (int i = 0; i < n; ++i)
            rows = rows || spec[i][4] == k;
        src[k] = rows ? (PyArrayObject*)PyArray_FROM_OTF(
                            (PyObject*)in[k], NPY_INT64, NPY_ARRAY_IN_ARRAY)
                      : PyArray_GETCONTIGUOUS(in[k]);
        if (!src[k])
            goto fail;
    }
    /* the outputs: the accumulators themselves (in place) or copies */
    for (int i = 0; i < n; ++i) {
        PyArrayObject* acc = accs[i];
        if (!(LSTM_ACCUM_INPLACE && PyArray_IS_C_CONTIGUOUS(acc) &&
              PyArray_ISWRITEABLE(acc))) {
            acc = (PyArrayObject*)PyArray_NewCopy(acc, NPY_CORDER);
            if (!acc)
                goto fail;
        } else {
            Py_INCREF(acc);
        }
        Py_XDECREF(*outs[i]);
        *outs[i] = acc;
    }
    for (int i = 0; i < n; ++i)
        if (!lstm_accum_add_entry_of(spec[i], *outs[i], src, entries + i))
            goto fail;
    ok = lstm_accum_finite_scalar(loss);
    if (ok) {
        for (int k = 0; k < m; ++k) {
            bool gradient = false;
            for (int i = 0; i < n; ++i)
                gradient = gradient || spec[i][0] == k;
            if (gradient)
                checked[count++] = src[k];
        }
        const double sq = lstm_accum_squares(count, checked, 0.0);
        if (PyErr_Occurred())
            goto fail;
        ok = std::isfinite(sq);
    }
    if (ok) {
        lstm_accum_add_job job = {n, entries};
        double items = 0.0;
        for (int i = 0; i < n; ++i)
            items += (double)entries[i].nrows * entries[i].rowlen;
        lstm_accum_team_run(lstm_accum_add_work, &job,
                            lstm_accum_team_for_items(items));
    }
    if (lstm_accum_prepare_output(ok_out, 0, NULL, NPY_BOOL))
        goto fail;
    *(npy_bool*)PyArray_DATA(*ok_out) = ok ? NPY_TRUE : NPY_FALSE;
    done = 1;
fail:
    if (src)
        lstm_accum_release(m, src);
    free(accs); free(in); free(src); free(outs); free(checked);
    free(entries);
    return !done;
}
