#section support_code_apply

/* SoftmaxNLL's node (and SoftmaxNLLLoss's, which has no softmax output:
   LSTM_ACCUM_SOFTMAX_OUT false): checks the shapes and the targets,
   prepares the outputs and runs lstm_accum_softmax_nll_forward_team
   (softmax_nll.c), on the team when the node's LSTM_ACCUM_TEAM is true,
   for the node's dtypes.  Returns nonzero, with an exception set, on
   failure. */
int APPLY_SPECIFIC(softmax_nll)(PyArrayObject* x, PyArrayObject* b,
                                PyArrayObject* y, PyArrayObject** nll
#if LSTM_ACCUM_SOFTMAX_OUT
                                , PyArrayObject** sm
#endif
                                )
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
        npy_intp sdims[2] = {N, V};
        T* out = NULL;
        if (lstm_accum_prepare_output(nll, 1, ndims, TYPENUM_OUTPUT_0))
            goto done;
#if LSTM_ACCUM_SOFTMAX_OUT
        if (lstm_accum_prepare_output(sm, 2, sdims, TYPENUM_OUTPUT_1))
            goto done;
        out = (T*)PyArray_DATA(*sm);
#else
        (void)sdims;
#endif
        if (!lstm_accum_softmax_nll_forward_team<T, I>(
                LSTM_ACCUM_TEAM, N, V, (const T*)PyArray_DATA(cx),
                (const T*)PyArray_DATA(cb), (const I*)PyArray_DATA(cy),
                (T*)PyArray_DATA(*nll), out)) {
            PyErr_NoMemory();
            goto done;
        }
    }
    ok = 1;
done:
    Py_XDECREF(cx); Py_XDECREF(cb); Py_XDECREF(cy);
    return !ok;
}
