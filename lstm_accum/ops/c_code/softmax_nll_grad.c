#section support_code_apply

/* SoftmaxNLLGrad's node: checks the shapes and the targets, prepares the
   outputs and runs lstm_accum_softmax_nll_backward_team (softmax_nll.c)
   for the node's dtypes, on the team when the node's LSTM_ACCUM_TEAM is
   true.  Returns nonzero, with an exception set, on failure. */
int APPLY_SPECIFIC(softmax_nll_grad)(PyArrayObject* g, PyArrayObject* sm,
                                     PyArrayObject* y, PyArrayObject** dx,
                                     PyArrayObject** db)
{
    typedef DTYPE_INPUT_1 T;
    typedef DTYPE_INPUT_2 I;
    PyArrayObject *cg = NULL, *csm = NULL, *cy = NULL;
    double* acc = NULL;
    int ok = 0;
    npy_intp N, V, bad;
    cg = PyArray_GETCONTIGUOUS(g);
    csm = PyArray_GETCONTIGUOUS(sm);
    cy = PyArray_GETCONTIGUOUS(y);
    if (!cg || !csm || !cy)
        goto done;
    N = PyArray_DIMS(csm)[0];
    V = PyArray_DIMS(csm)[1];
    if (PyArray_DIMS(cg)[0] != N || PyArray_DIMS(cy)[0] != N) {
        PyErr_Format(PyExc_ValueError,
            "SoftmaxNLLGrad: inconsistent shapes: g (%ld,), softmax "
            "(%ld, %ld), y (%ld,) (expected g (N,) and y (N,) for a "
            "softmax (N, V))", (long)PyArray_DIMS(cg)[0], (long)N,
            (long)V, (long)PyArray_DIMS(cy)[0]);
        goto done;
    }
    bad = lstm_accum_first_bad_target(N, V, (const I*)PyArray_DATA(cy));
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError,
            "SoftmaxNLLGrad: target %lld (row %ld) is out of range for "
            "V = %ld classes (targets must be in [0, %ld))",
            (long long)((const I*)PyArray_DATA(cy))[bad],
            (long)bad, (long)V, (long)V);
        goto done;
    }
    {
        npy_intp xdims[2] = {N, V};
        npy_intp vdims[1] = {V};
        if (lstm_accum_prepare_output(dx, 2, xdims, TYPENUM_OUTPUT_0)
            || lstm_accum_prepare_output(db, 1, vdims, TYPENUM_OUTPUT_1))
            goto done;
    }
    /* scratch: V doubles (the sums), then V values (a block's) */
    acc = (double*)malloc((sizeof(double) + sizeof(T)) * (V ? V : 1));
    if (!acc) {
        PyErr_NoMemory();
        goto done;
    }
    lstm_accum_softmax_nll_backward_team<T, I>(
        LSTM_ACCUM_TEAM, N, V, (const T*)PyArray_DATA(cg),
        (const T*)PyArray_DATA(csm),
        (const I*)PyArray_DATA(cy), (T*)PyArray_DATA(*dx),
        (T*)PyArray_DATA(*db), acc, (T*)(acc + V));
    ok = 1;
done:
    free(acc);
    Py_XDECREF(cg); Py_XDECREF(csm); Py_XDECREF(cy);
    return !ok;
}
