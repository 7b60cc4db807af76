#section support_code_apply

/* FusedLSTMGrad's node: checks the shapes, prepares the outputs and runs
   lstm_accum_fused_backward (fused_lstm.c) for the node's dtype.  dcell
   and dact are NULL unless the node's LSTM_ACCUM_AUX is true; its
   LSTM_ACCUM_CLIP is the op's grad_clipping and LSTM_ACCUM_TEAM its team
   (all three defined per node by FusedLSTMGrad).  The recurrent weights
   are the four gates' (H, H) matrices; their gradient is one (H, 4H)
   matrix.  Returns nonzero, with an exception set, on failure. */
int APPLY_SPECIFIC(fused_lstm_grad)(
    PyArrayObject* W_i, PyArrayObject* W_f, PyArrayObject* W_c,
    PyArrayObject* W_o, PyArrayObject* w_ci, PyArrayObject* w_cf,
    PyArrayObject* w_co, PyArrayObject* c0, PyArrayObject* h0,
    PyArrayObject* hid, PyArrayObject* cell, PyArrayObject* act,
    PyArrayObject* dhid, PyArrayObject* dcell, PyArrayObject* dact,
    PyArrayObject** dx, PyArrayObject** db, PyArrayObject** dW,
    PyArrayObject** dwci, PyArrayObject** dwcf, PyArrayObject** dwco,
    PyArrayObject** dc0, PyArrayObject** dh0)
{
    typedef DTYPE_INPUT_0 T;
    PyArrayObject* in_[15] = {W_i, W_f, W_c, W_o, w_ci, w_cf, w_co, c0, h0,
                              hid, cell, act, dhid, dcell, dact};
    PyArrayObject* c_[15];
    int ok = 0;
    npy_intp steps, batch, H;
    if (lstm_accum_contiguous(15, in_, c_))
        goto done;
    steps = PyArray_DIMS(c_[9])[0];
    batch = PyArray_DIMS(c_[9])[1];
    H = PyArray_DIMS(c_[9])[2];
    for (int k = 12; k < 15; ++k) {
        if (!c_[k])
            continue;
        npy_intp width = k == 14 ? 4 * H : H;
        if (PyArray_DIMS(c_[k])[0] != steps
                || PyArray_DIMS(c_[k])[1] != batch
                || PyArray_DIMS(c_[k])[2] != width) {
            PyErr_Format(PyExc_ValueError,
                "FusedLSTMGrad: gradient of shape (%ld, %ld, %ld) for "
                "an output of shape (%ld, %ld, %ld)",
                (long)PyArray_DIMS(c_[k])[0], (long)PyArray_DIMS(c_[k])[1],
                (long)PyArray_DIMS(c_[k])[2], (long)steps, (long)batch,
                (long)width);
            goto done;
        }
    }
    for (int g = 0; g < 4; ++g) {
        if (PyArray_DIMS(c_[g])[0] != H || PyArray_DIMS(c_[g])[1] != H) {
            PyErr_Format(PyExc_ValueError,
                "FusedLSTMGrad: a gate's W_hid of shape (%ld, %ld) for %ld "
                "units", (long)PyArray_DIMS(c_[g])[0],
                (long)PyArray_DIMS(c_[g])[1], (long)H);
            goto done;
        }
    }
    {
        npy_intp xdims[3] = {steps, batch, 4 * H};
        npy_intp wdims[2] = {H, 4 * H};
        npy_intp vdims[1] = {H};
        npy_intp sdims[2] = {batch, H};
        npy_intp bdims[1] = {4 * H};
        if (lstm_accum_prepare_output(dx, 3, xdims, TYPENUM_OUTPUT_0)
            || lstm_accum_prepare_output(db, 1, bdims, TYPENUM_OUTPUT_1)
            || lstm_accum_prepare_output(dW, 2, wdims, TYPENUM_OUTPUT_2)
            || lstm_accum_prepare_output(dwci, 1, vdims, TYPENUM_OUTPUT_3)
            || lstm_accum_prepare_output(dwcf, 1, vdims, TYPENUM_OUTPUT_4)
            || lstm_accum_prepare_output(dwco, 1, vdims, TYPENUM_OUTPUT_5)
            || lstm_accum_prepare_output(dc0, 2, sdims, TYPENUM_OUTPUT_6)
            || lstm_accum_prepare_output(dh0, 2, sdims, TYPENUM_OUTPUT_7))
            goto done;
    }
#define D_(a) ((a) ? (T*)PyArray_DATA(a) : NULL)
    {
        const T* W[4] = {D_(c_[0]), D_(c_[1]), D_(c_[2]), D_(c_[3])};
        lstm_accum_fused_backward<T, LSTM_ACCUM_AUX>(
            LSTM_ACCUM_TEAM, (int)steps, (int)batch, (int)H,
            (T)LSTM_ACCUM_CLIP, W, D_(c_[4]), D_(c_[5]), D_(c_[6]),
            D_(c_[7]), D_(c_[8]), D_(c_[9]), D_(c_[10]), D_(c_[11]),
            D_(c_[12]), D_(c_[13]), D_(c_[14]), D_(*dx), D_(*db), D_(*dW),
            D_(*dwci), D_(*dwcf), D_(*dwco), D_(*dc0), D_(*dh0));
    }
#undef D_
    ok = !PyErr_Occurred();
done:
    lstm_accum_release(15, c_);
    return !ok;
}
