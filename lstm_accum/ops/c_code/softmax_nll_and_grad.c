#section support_code_apply

/* SoftmaxNLLAndGrad's node: checks the shapes and the targets, prepares
   the outputs and runs lstm_accum_softmax_nll_both_team (softmax_nll.c)
   for the node's dtypes, on the team when the node's LSTM_ACCUM_TEAM is
   true.  Returns nonzero, with an exception set, on failure. */
int APPLY_SPECIFIC(softmax_nll_and_grad)(PyArrayObject* x, PyArrayObject* b,
                                         PyArrayObject* y,
                                         PyArrayObject** nll,
                                         PyArrayObject** dx,
                                         PyArrayObject** db)
{
    typedef DTYPE_INPUT_0 T;
    typedef DTYPE_INPUT_2 I;
    PyArrayObject *cx = NULL, *cb = NULL, *cy = NULL;
    int ok = 0;
    npy_intp N, V;
    if (!lstm_accum_softmax_inputs<I>(x, b, y, &cx, &cb, &cy))
        goto done;
    N = PyArray_DIMS(cx)[0];
    V = PyArray_DIMS(cx)[1];
    {
        npy_intp ndims[1] = {N};
        npy_intp xdims[2] = {N, V};
        npy_intp vdims[1] = {V};
        if (lstm_accum_prepare_output(nll, 1, ndims, TYPENUM_OUTPUT_0)
            || lstm_accum_prepare_output(dx, 2, xdims, TYPENUM_OUTPUT_1)
            || lstm_accum_prepare_output(db, 1, vdims, TYPENUM_OUTPUT_2))
            goto done;
    }
    if (!lstm_accum_softmax_nll_both_team<T, I>(
            LSTM_ACCUM_TEAM, N, V, (const T*)PyArray_DATA(cx),
            (const T*)PyArray_DATA(cb), (const I*)PyArray_DATA(cy),
            (T*)PyArray_DATA(*nll), (T*)PyArray_DATA(*dx),
            (T*)PyArray_DATA(*db))) {
        PyErr_NoMemory();
        goto done;
    }
    ok = 1;
done:
    Py_XDECREF(cx); Py_XDECREF(cb); Py_XDECREF(cy);
    return !ok;
}
