#section support_code

/* RowSums' loops (row_sums.py), as C++ templates over the value type T
   (float or double) and the index type I (npy_int32 or npy_int64). */

/* slot[k]: the output row of ids[k] (numbered by first occurrence);
   first[g]: the wrapped index of output row g; returns G, or sets *bad to
   the first position out of [-V, V). slot_of: V ints of scratch. */
template <typename I>
static npy_intp lstm_accum_row_slots(npy_intp n, npy_intp V, const I* ids,
                                     npy_int32* slot_of, npy_intp* slot,
                                     npy_int64* first, npy_intp* bad)
{
    npy_intp G = 0;
    for (npy_intp v = 0; v < V; ++v)
        slot_of[v] = -1;
    for (npy_intp k = 0; k < n; ++k) {
        npy_intp w = (npy_intp)ids[k];
        if (w < -V || w >= V) {
            *bad = k;
            return 0;
        }
        if (w < 0)
            w += V;
        if (slot_of[w] < 0) {
            slot_of[w] = (npy_int32)G;
            first[G++] = (npy_int64)w;
        }
        slot[k] = slot_of[w];
    }
    return G;
}

/* sums[g] = 0 + rows[k1] + rows[k2] + ... in the order of k. */
template <typename T>
__attribute__((noinline)) static void lstm_accum_row_sums(
    npy_intp n, npy_intp D, npy_intp G, const T* rows, const npy_intp* slot,
    T* sums)
{
    memset(sums, 0, sizeof(T) * G * D);
    for (npy_intp k = 0; k < n; ++k) {
        T* __restrict__ s = sums + slot[k] * D;
        const T* __restrict__ r = rows + k * D;
        for (npy_intp j = 0; j < D; ++j)
            s[j] += r[j];
    }
}

#section support_code_apply

/* RowSums' node: numbers the distinct rows of ids by first occurrence,
   prepares the outputs (words, sums) and sums the rows for the node's
   dtypes.  Returns nonzero, with an exception set, on failure. */
int APPLY_SPECIFIC(row_sums)(PyArrayObject* rows, PyArrayObject* ids,
                             PyArrayObject* num_rows, PyArrayObject** words,
                             PyArrayObject** sums)
{
    typedef DTYPE_INPUT_0 T;
    typedef DTYPE_INPUT_1 I;
    PyArrayObject *c[2] = {NULL, NULL};
    PyArrayObject *in[2] = {rows, ids};
    npy_int32 *slot_of = NULL;
    npy_intp *slot = NULL;
    npy_int64 *first = NULL;
    int ok = 0;
    npy_intp n, D, V, G = 0, bad = -1;
    if (lstm_accum_contiguous(2, in, c))
        goto done;
    n = PyArray_DIMS(c[0])[0];
    D = PyArray_DIMS(c[0])[1];
    V = (npy_intp)((npy_int64*)PyArray_DATA(num_rows))[0];
    if (PyArray_DIMS(c[1])[0] != n) {
        PyErr_Format(PyExc_ValueError, "RowSums: %ld rows but %ld ids",
                     (long)n, (long)PyArray_DIMS(c[1])[0]);
        goto done;
    }
    slot_of = (npy_int32*)malloc(sizeof(npy_int32) * (V > 0 ? V : 1));
    slot = (npy_intp*)malloc(sizeof(npy_intp) * (n > 0 ? n : 1));
    first = (npy_int64*)malloc(sizeof(npy_int64) * (n > 0 ? n : 1));
    if (!slot_of || !slot || !first) {
        PyErr_NoMemory();
        goto done;
    }
    G = lstm_accum_row_slots<I>(n, V, (const I*)PyArray_DATA(c[1]), slot_of,
                                slot, first, &bad);
    if (bad >= 0) {
        PyErr_Format(PyExc_IndexError,
            "RowSums: index %lld (position %ld) is out of bounds for "
            "%ld rows",
            (long long)((const I*)PyArray_DATA(c[1]))[bad],
            (long)bad, (long)V);
        goto done;
    }
    {
        npy_intp wdims[1] = {G};
        npy_intp sdims[2] = {G, D};
        if (lstm_accum_prepare_output(words, 1, wdims, TYPENUM_OUTPUT_0)
            || lstm_accum_prepare_output(sums, 2, sdims, TYPENUM_OUTPUT_1))
            goto done;
    }
    if (G)
        memcpy(PyArray_DATA(*words), first, sizeof(npy_int64) * G);
    lstm_accum_row_sums<T>(n, D, G, (const T*)PyArray_DATA(c[0]), slot,
                           (T*)PyArray_DATA(*sums));
    ok = 1;
done:
    free(slot_of); free(slot); free(first);
    lstm_accum_release(2, c);
    return !ok;
}
