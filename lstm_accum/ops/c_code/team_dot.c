#section support_code_apply

/* TeamDot's node (team_dot.py): z = a . b for float32 matrices, on the
   team (team_blas.c).  A C-contiguous input is read as it is, a
   transposed view of one (F-contiguous) as the transpose of that; any
   other layout is copied first.  Returns nonzero, with an exception set,
   on failure. */
int APPLY_SPECIFIC(team_dot)(PyArrayObject* a, PyArrayObject* b,
                             PyArrayObject** z)
{
    PyArrayObject* in_[2] = {a, b};
    PyArrayObject* c_[2] = {NULL, NULL};
    bool trans[2] = {false, false};
    int ok = 0;
    npy_intp M = PyArray_DIMS(a)[0], K = PyArray_DIMS(a)[1];
    npy_intp N = PyArray_DIMS(b)[1];
    if (PyArray_DIMS(b)[0] != K) {
        PyErr_Format(PyExc_ValueError,
                     "TeamDot: shapes (%ld, %ld) and (%ld, %ld) are not "
                     "aligned", (long)M, (long)K,
                     (long)PyArray_DIMS(b)[0], (long)N);
        return 1;
    }
    for (int k = 0; k < 2; ++k) {
        if (PyArray_IS_C_CONTIGUOUS(in_[k])) {
            Py_INCREF(in_[k]);
            c_[k] = in_[k];
        } else if (PyArray_IS_F_CONTIGUOUS(in_[k])) {
            Py_INCREF(in_[k]);
            c_[k] = in_[k];
            trans[k] = true;
        } else if (!(c_[k] = PyArray_GETCONTIGUOUS(in_[k]))) {
            goto done;
        }
    }
    {
        npy_intp dims[2] = {M, N};
        if (lstm_accum_prepare_output(z, 2, dims, TYPENUM_OUTPUT_0))
            goto done;
    }
    {
        const float* A = (const float*)PyArray_DATA(c_[0]);
        const float* B = (const float*)PyArray_DATA(c_[1]);
        float* C = (float*)PyArray_DATA(*z);
        /* the leading dimension of each operand as stored */
        const long lda = trans[0] ? M : K, ldb = trans[1] ? K : N;
        if (K == 0 || M == 0 || N == 0) {
            memset(C, 0, sizeof(float) * (size_t)M * (size_t)N);
        } else if (!lstm_accum_team_sgemm(trans[0], trans[1], M, N, K, A,
                                          lda < 1 ? 1 : lda, B,
                                          ldb < 1 ? 1 : ldb, 0.0f, C, N)) {
            /* no team here: NumPy's dot, as Theano's Dot22 */
            if (!PyArray_MatrixProduct2((PyObject*)a, (PyObject*)b, *z))
                goto done;
        }
    }
    ok = 1;
done:
    lstm_accum_release(2, c_);
    return !ok;
}
