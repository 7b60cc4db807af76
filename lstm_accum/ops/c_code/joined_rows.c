#section support_code

/* JoinedRows' loop (joined_rows.py, after team.c): out[n, off_k : off_k +
   D_k] = W_k[ids[n], :] for every part k and the rows [n0, n1), rows copied
   whole. */
template <typename T, typename I>
__attribute__((noinline)) static void lstm_accum_joined_rows(
    npy_intp n0, npy_intp n1, int K, const I* ids, const T* const* W,
    const npy_intp* V, const npy_intp* D, npy_intp width, T* out)
{
    for (npy_intp n = n0; n < n1; ++n) {
        T* row = out + n * width;
        for (int k = 0; k < K; ++k) {
            npy_intp i = (npy_intp)ids[n];
            if (i < 0)
                i += V[k];
            memcpy(row, W[k] + i * D[k], sizeof(T) * D[k]);
            row += D[k];
        }
    }
}

template <typename T, typename I>
struct lstm_accum_joined_rows_job {
    npy_intp N;
    int K;
    const I* ids;
    const T* const* W;
    const npy_intp *V, *D;
    npy_intp width;
    T* out;
};

template <typename T, typename I>
static void lstm_accum_joined_rows_work(void* p, int rank, int size)
{
    const lstm_accum_joined_rows_job<T, I>* j =
        (const lstm_accum_joined_rows_job<T, I>*)p;
    lstm_accum_joined_rows<T, I>(j->N * rank / size,
                                 j->N * (rank + 1) / size, j->K, j->ids,
                                 j->W, j->V, j->D, j->width, j->out);
}

#section support_code_apply

/* JoinedRows' node: ids, the number of parts K (<= LSTM_ACCUM_MAX_PARTS),
   the parts (the unused ones NULL) and the output.  Checks the indices
   against every part (IndexError, as AdvancedSubtensor1) and copies the
   rows.  Returns nonzero, with an exception set, on failure. */
int APPLY_SPECIFIC(joined_rows)(PyArrayObject* ids, int K,
                                PyArrayObject* W0, PyArrayObject* W1,
                                PyArrayObject* W2, PyArrayObject* W3,
                                PyArrayObject* W4, PyArrayObject* W5,
                                PyArrayObject* W6, PyArrayObject* W7,
                                PyArrayObject** out)
{
    typedef DTYPE_INPUT_1 T;
    typedef DTYPE_INPUT_0 I;
    PyArrayObject* in[9] = {ids, W0, W1, W2, W3, W4, W5, W6, W7};
    PyArrayObject* c[9];
    const T* W[8];
    npy_intp V[8], D[8], width = 0, N;
    const I* idx;
    int ok = 0;
    if (lstm_accum_contiguous(K + 1, in, c))
        goto done;
    N = PyArray_DIMS(c[0])[0];
    idx = (const I*)PyArray_DATA(c[0]);
    for (int k = 0; k < K; ++k) {
        W[k] = (const T*)PyArray_DATA(c[k + 1]);
        V[k] = PyArray_DIMS(c[k + 1])[0];
        D[k] = PyArray_DIMS(c[k + 1])[1];
        width += D[k];
        for (npy_intp n = 0; n < N; ++n) {
            if (idx[n] < -V[k] || idx[n] >= V[k]) {
                PyErr_Format(PyExc_IndexError,
                    "JoinedRows: index %lld (position %ld) is out of "
                    "bounds for part %d of %ld rows", (long long)idx[n],
                    (long)n, k, (long)V[k]);
                goto done;
            }
        }
    }
    {
        npy_intp dims[2] = {N, width};
        if (lstm_accum_prepare_output(out, 2, dims, TYPENUM_OUTPUT_0))
            goto done;
    }
    {
        lstm_accum_joined_rows_job<T, I> job = {N, K, idx, W, V, D, width,
                                                (T*)PyArray_DATA(*out)};
        lstm_accum_team_run(lstm_accum_joined_rows_work<T, I>, &job,
                            lstm_accum_team_for_items((double)N * width));
    }
    ok = 1;
done:
    lstm_accum_release(K + 1, c);
    return !ok;
}
