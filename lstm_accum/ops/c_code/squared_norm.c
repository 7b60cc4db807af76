#section support_code_apply

/* SquaredNorm's node (accumulate.py, after sum_squares.c): the sum of the
   squares of every element of its count inputs (float32 or float64,
   passed after count), as a float64 scalar.  With LSTM_ACCUM_DIVIDED, the
   first input is a float64 scalar: every element is divided by it first.
   Returns nonzero, with an exception set, on failure. */
int APPLY_SPECIFIC(squared_norm)(int count, ...)
{
    double divisor = 0.0;
    PyArrayObject** in = (PyArrayObject**)malloc(
        sizeof(PyArrayObject*) * (count + 1));
    PyArrayObject** c = (PyArrayObject**)malloc(
        sizeof(PyArrayObject*) * (count + 1));
    PyArrayObject** out = NULL;
    int ok = 0, have = 0;
    double total;
    va_list args;
    va_start(args, count);
#if LSTM_ACCUM_DIVIDED
    divisor = *(const double*)PyArray_DATA(va_arg(args, PyArrayObject*));
    --count;
#endif
    for (int k = 0; k < count; ++k)
        if (in)
            in[k] = va_arg(args, PyArrayObject*);
        else
            (void)va_arg(args, PyArrayObject*);
    out = va_arg(args, PyArrayObject**);
    va_end(args);
    if (!in || !c) {
        PyErr_NoMemory();
        goto done;
    }
    have = count;
    if (lstm_accum_contiguous(count, in, c))
        goto done;
    if (!lstm_accum_all_float(count, c, "SquaredNorm"))
        goto done;
    total = lstm_accum_squares(count, c, divisor);
    if (PyErr_Occurred())
        goto done;
    if (lstm_accum_prepare_output(out, 0, NULL, NPY_FLOAT64))
        goto done;
    *(double*)PyArray_DATA(*out) = total;
    ok = 1;
done:
    if (c)
        lstm_accum_release(have, c);
    free(in); free(c);
    return !ok;
}
