/* Inserted into Theano's scan_perform.c (Cython 0.28) by lstm_accum.backend
   (opencl.py): scan's compiled loop on GPU contexts that are not CUDA.  On
   numpy arrays and on CUDA both functions give what the loop used before. */

/* Scan compares where an output's data starts before and after its inner
   function ran, to detect a reused buffer.  It reads GpuArray.gpudata,
   which pygpu gives on CUDA only ("This is for CUDA arrays." elsewhere).
   This returns gpudata where pygpu gives it, and (base_data, offset) where
   it raises TypeError: equal for two arrays exactly when they start at the
   same byte of the same allocation. */
static PyObject *lstm_accum_buffer_key(PyObject *array, PyObject *name)
{
    PyObject *key = PyObject_GetAttr(array, name), *base, *offset;

    if (key != NULL || !PyErr_ExceptionMatches(PyExc_TypeError))
        return key;
    PyErr_Clear();
    base = PyObject_GetAttrString(array, "base_data");
    if (base == NULL)
        return NULL;
    offset = PyObject_GetAttrString(array, "offset");
    if (offset == NULL) {
        Py_DECREF(base);
        return NULL;
    }
    key = PyTuple_Pack(2, base, offset);
    Py_DECREF(base);
    Py_DECREF(offset);
    return key;
}

/* After the loop, scan rotates the circular buffer of an output that keeps
   only its last steps, copying one part of the buffer onto another.  The
   two parts overlap when the buffer holds an odd number of steps, and an
   OpenCL buffer copy refuses overlapping regions ("Memory copy overlap").
   This returns a copy of the source part for a GPU array of a context that
   is not CUDA, and the part itself (a new reference) otherwise. */
static PyObject *lstm_accum_separate(PyObject *part)
{
    PyObject *context = PyObject_GetAttrString(part, "context"), *kind;
    int cuda;

    if (context == NULL) {          /* a numpy array: as before */
        PyErr_Clear();
        Py_INCREF(part);
        return part;
    }
    kind = PyObject_GetAttrString(context, "kind");
    Py_DECREF(context);
    if (kind == NULL)
        return NULL;
    cuda = PyBytes_Check(kind) && strcmp(PyBytes_AS_STRING(kind), "cuda") == 0;
    Py_DECREF(kind);
    if (cuda) {
        Py_INCREF(part);
        return part;
    }
    return PyObject_CallMethod(part, "copy", NULL);
}
