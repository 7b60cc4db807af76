#section support_code_apply

/* FusedLSTM's node: checks the shapes, prepares the outputs and runs
   lstm_accum_fused_forward (fused_lstm.c) for the node's dtype, on the
   team when the node's LSTM_ACCUM_TEAM (FusedLSTM's team) is true.  The
   recurrent weights are the four gates' (H, H) matrices.  Returns
   nonzero, with an exception set, on failure. */
int APPLY_SPECIFIC(fused_lstm)(PyArrayObject* x, PyArrayObject* b,
                               PyArrayObject* W_i, PyArrayObject* W_f,
                               PyArrayObject* W_c, PyArrayObject* W_o,
                               PyArrayObject* w_ci, PyArrayObject* w_cf,
                               PyArrayObject* w_co, PyArrayObject* c0,
                               PyArrayObject* h0, PyArrayObject** hid,
                               PyArrayObject** cell, PyArrayObject** act)
{
    typedef DTYPE_INPUT_0 T;
    PyArrayObject* in_[11] = {x, b, W_i, W_f, W_c, W_o, w_ci, w_cf, w_co,
                              c0, h0};
    PyArrayObject* c_[11];
    int ok = 0;
    npy_intp steps, batch, G, H;
    bool square = true;
    if (lstm_accum_contiguous(11, in_, c_))
        goto done;
    steps = PyArray_DIMS(c_[0])[0];
    batch = PyArray_DIMS(c_[0])[1];
    G = PyArray_DIMS(c_[0])[2];
    H = PyArray_DIMS(c_[2])[0];
    for (int g = 2; g < 6; ++g)
        square = square && PyArray_DIMS(c_[g])[0] == H
                 && PyArray_DIMS(c_[g])[1] == H;
    if (G != 4 * H || !square
            || PyArray_DIMS(c_[1])[0] != G
            || PyArray_DIMS(c_[6])[0] != H || PyArray_DIMS(c_[7])[0] != H
            || PyArray_DIMS(c_[8])[0] != H
            || PyArray_DIMS(c_[9])[0] != batch
            || PyArray_DIMS(c_[9])[1] != H
            || PyArray_DIMS(c_[10])[0] != batch
            || PyArray_DIMS(c_[10])[1] != H) {
        PyErr_Format(PyExc_ValueError,
            "FusedLSTM: inconsistent shapes: input (%ld, %ld, %ld), "
            "b (%ld,), W_hid (%ld, %ld), (%ld, %ld), (%ld, %ld), "
            "(%ld, %ld), peepholes (%ld, %ld, %ld), "
            "cell_init (%ld, %ld), hid_init (%ld, %ld)",
            (long)steps, (long)batch, (long)G,
            (long)PyArray_DIMS(c_[1])[0],
            (long)PyArray_DIMS(c_[2])[0], (long)PyArray_DIMS(c_[2])[1],
            (long)PyArray_DIMS(c_[3])[0], (long)PyArray_DIMS(c_[3])[1],
            (long)PyArray_DIMS(c_[4])[0], (long)PyArray_DIMS(c_[4])[1],
            (long)PyArray_DIMS(c_[5])[0], (long)PyArray_DIMS(c_[5])[1],
            (long)PyArray_DIMS(c_[6])[0], (long)PyArray_DIMS(c_[7])[0],
            (long)PyArray_DIMS(c_[8])[0],
            (long)PyArray_DIMS(c_[9])[0], (long)PyArray_DIMS(c_[9])[1],
            (long)PyArray_DIMS(c_[10])[0], (long)PyArray_DIMS(c_[10])[1]);
        goto done;
    }
    {
        npy_intp hdims[3] = {steps, batch, H};
        npy_intp adims[3] = {steps, batch, G};
        if (lstm_accum_prepare_output(hid, 3, hdims, TYPENUM_OUTPUT_0)
            || lstm_accum_prepare_output(cell, 3, hdims, TYPENUM_OUTPUT_1)
            || lstm_accum_prepare_output(act, 3, adims, TYPENUM_OUTPUT_2))
            goto done;
    }
#define D_(a) ((T*)PyArray_DATA(a))
    {
        const T* W[4] = {D_(c_[2]), D_(c_[3]), D_(c_[4]), D_(c_[5])};
        lstm_accum_fused_forward<T>(
            LSTM_ACCUM_TEAM, (int)steps, (int)batch, (int)H, D_(c_[0]),
            D_(c_[1]), W, D_(c_[6]), D_(c_[7]), D_(c_[8]), D_(c_[9]),
            D_(c_[10]), D_(*hid), D_(*cell), D_(*act));
    }
#undef D_
    ok = !PyErr_Occurred();
done:
    lstm_accum_release(11, c_);
    return !ok;
}
