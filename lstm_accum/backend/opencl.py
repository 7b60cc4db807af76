"""Theano's GPU backend (gpuarray) on contexts that are not CUDA.

Theano 1.0.5's gpuarray backend was written and tested on CUDA.  On an
OpenCL context (``device=opencl0:0``: any OpenCL implementation, including
pocl, which runs on the CPU) four things break that the LSTM language model
needs.  Each fix below replaces one piece of Theano and is guarded so that
CUDA contexts and the CPU run Theano's own code, unchanged:

* :func:`buffer_key` -- scan's check for a buffer its inner function reused
  reads ``GpuArray.gpudata``, which pygpu refuses on anything but CUDA
  (``TypeError: This is for CUDA arrays.``).  On other contexts the same
  fact, "this array starts at this byte of this allocation", is
  ``(base_data, offset)``.  Scan's compiled loop gets the same rule as C
  (:data:`SCAN_PERFORM_PATCHES`, applied by :mod:`.scan_loop`); its Python
  loop through :func:`install_scan_python_loop`.
* :func:`separate` -- after its loop, scan rotates the circular buffer of
  an output that keeps only its last steps; with an odd number of steps
  one copy's source and destination overlap, which an OpenCL buffer copy
  refuses ("Memory copy overlap").  The source is copied apart first.
* :func:`install_kernel_fixes` -- the fused softmax/cross-entropy kernel
  (``GpuCrossentropySoftmaxArgmax1HotWithBias``) declares ``LOCAL_MEM``
  variables inside its row loop; OpenCL C allows local-memory variables
  only in the outermost scope of a kernel, so the kernel does not build
  ("clBuildProgram: Unknown error").  The declarations move to the top of
  the kernel, which is what they mean on CUDA too (one copy per block);
  the compile cache key gets a mark, so a module built from the unfixed
  source is never reused.
* :func:`install_kernel_fixes` also makes the scalar code of elementwise
  kernels (``GpuElemwise``) OpenCL C: Theano's ``minimum`` and ``maximum``
  return ``nan("")`` for NaN inputs, the C library's NaN of a string
  argument; OpenCL's ``nan`` takes an integer, so the kernel does not build
  (and libgpuarray then crashes the process).  It becomes ``NAN``, the same
  quiet NaN.

:mod:`lstm_accum.backend` calls :func:`install` after ``import theano``; it
does nothing unless a gpuarray context is in use.
"""
import inspect
import os
import re
import sys
import textwrap

__all__ = ["buffer_key", "separate", "install", "install_scan_python_loop",
           "install_kernel_fixes", "fix_local_memory", "fix_scalar_code",
           "gpu_contexts",
           "SCAN_PERFORM_PATCHES", "FIX_VERSION"]

#: Part of the compile-cache key of every kernel rewritten here: bump it
#: when a rewrite changes.
FIX_VERSION = 2

_C_CODE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c_code")


def _read_c(name):
    path = os.path.join(_C_CODE, name)
    with open(path, encoding="utf-8") as f:
        return f.read()


_SEPARATE_588 = ("if (__Pyx_PyObject_SetSlice(__pyx_t_10, __pyx_t_2, 0, "
                 "((__pyx_v_store_steps[__pyx_v_idx]) - __pyx_v_pdx), NULL, "
                 "NULL, NULL, 0, 1, 1) < 0) __PYX_ERR(0, 588, "
                 "__pyx_L1_error)")

#: Scan's compiled loop (``scan_perform.c``, Cython 0.28), as text patches in
#: :mod:`.scan_loop`'s format, with the functions of ``c_code/scan_gpu.c``:
#: the five reads of ``var.gpudata`` go through ``lstm_accum_buffer_key``
#: (:func:`buffer_key`), and the buffer rotation's one copy that can overlap
#: (``outs[idx][0][:store_steps[idx]-pdx] = outs[idx][0][pdx:]``) through
#: ``lstm_accum_separate`` (:func:`separate`).
SCAN_PERFORM_PATCHES = [
    ("static PyObject *__pyx_n_s_gpudata;\n",
     "static PyObject *__pyx_n_s_gpudata;\n" + _read_c("scan_gpu.c")),
    ("__Pyx_PyObject_GetAttrStr(__pyx_v_var, __pyx_n_s_gpudata)",
     "lstm_accum_buffer_key(__pyx_v_var, __pyx_n_s_gpudata)", 2),
    ("__Pyx_PyObject_GetAttrStr(__pyx_v_new_var, __pyx_n_s_gpudata)",
     "lstm_accum_buffer_key(__pyx_v_new_var, __pyx_n_s_gpudata)", 3),
    (_SEPARATE_588,
     "{ PyObject *lstm_accum_part = lstm_accum_separate(__pyx_t_2);\n"
     "  if (unlikely(!lstm_accum_part)) __PYX_ERR(0, 588, __pyx_L1_error)\n"
     "  __Pyx_DECREF(__pyx_t_2); __pyx_t_2 = lstm_accum_part; }\n"
     + _SEPARATE_588),
]

# The Python loop (Scan.execute): its reads of ``var.gpudata`` (twice) and
# ``new_var.gpudata`` (three times), and the rotation's overlapping copy.
_PY_REWRITES = [
    (re.compile(r"\b(var|new_var)\.gpudata\b"),
     r"_lstm_accum_buffer_key(\1)", 5),
    (re.compile(r"(outs\[idx\]\[0\]\[:store_steps\[idx\] - pdx\] = )"
                r"(outs\[idx\]\[0\]\[pdx:\])"),
     r"\1_lstm_accum_separate(\2)", 1),
]


def buffer_key(array):
    """Where a GPU array's data starts, as scan compares it between calls.

    Parameters
    ----------
    array : pygpu.gpuarray.GpuArray

    Returns
    -------
    int or tuple
        ``array.gpudata`` on CUDA (what Theano's scan reads); elsewhere
        ``(array.base_data, array.offset)``, which is equal for two arrays
        exactly when they start at the same byte of the same allocation.
    """
    try:
        return array.gpudata
    except TypeError:  # pygpu: "This is for CUDA arrays."
        return (array.base_data, array.offset)


def gpu_contexts(theano):
    """The kinds of the gpuarray contexts in use (e.g. ``{b'opencl'}``),
    empty when Theano computes on the CPU only."""
    gpuarray = sys.modules.get("theano.gpuarray")
    if gpuarray is None or not getattr(gpuarray, "pygpu_activated", False):
        return set()
    from theano.gpuarray.type import list_contexts, get_context
    return {get_context(name).kind for name in list_contexts()}


def install(theano):
    """Apply the fixes for the gpuarray contexts in use (none on the CPU or
    when every context is CUDA)."""
    kinds = gpu_contexts(theano)
    if not kinds - {b"cuda"}:
        return
    install_scan_python_loop(theano)
    install_kernel_fixes(theano)


def separate(part):
    """The source of scan's buffer rotation, apart from its destination.

    Parameters
    ----------
    part : numpy.ndarray or pygpu.gpuarray.GpuArray

    Returns
    -------
    array
        A copy of ``part`` for a GPU array of a context that is not CUDA
        (an OpenCL buffer copy refuses overlapping regions), else ``part``
        itself, as Theano's loop uses it.
    """
    context = getattr(part, "context", None)
    if context is None or context.kind == b"cuda":
        return part
    return part.copy()


def install_scan_python_loop(theano):
    """Scan's Python loop (``Scan.execute``) with :func:`buffer_key` for
    ``.gpudata`` and :func:`separate` for its rotation's overlapping copy:
    the same function, rebuilt from Theano's own source.

    Raises
    ------
    RuntimeError
        If the installed Theano's ``Scan.execute`` is not the one this
        rewrite was made for.
    """
    from theano.scan_module import scan_op
    execute = scan_op.Scan.execute
    if getattr(execute, "_lstm_accum_fixed", False):
        return
    source = textwrap.dedent(inspect.getsource(execute))
    for pattern, replacement, expected in _PY_REWRITES:
        source, count = pattern.subn(replacement, source)
        if count != expected:
            raise RuntimeError(
                "Theano's Scan.execute has %d places matching %r, not %d: "
                "this is not Theano 1.0.5's scan; reinstall Theano==1.0.5"
                % (count, pattern.pattern, expected))
    namespace = dict(vars(scan_op))
    namespace["_lstm_accum_buffer_key"] = buffer_key
    namespace["_lstm_accum_separate"] = separate
    code = compile(source, inspect.getsourcefile(execute), "exec")
    exec(code, namespace)
    patched = namespace["execute"]
    patched._lstm_accum_fixed = True
    scan_op.Scan.execute = patched


# A local-memory declaration inside the kernel's row loop, and the loop.
_LOCAL_DECL = re.compile(r"^[ \t]*LOCAL_MEM [^;(]*;[ \t]*\n", re.M)
_ROW_LOOP = "for (ga_int row = GID_0; row < M; row += GDIM_0){"


def fix_local_memory(code):
    """Move the ``LOCAL_MEM`` declarations of a kernel's row loop to the
    kernel's outermost scope (before the loop), as OpenCL C requires.

    Parameters
    ----------
    code : str
        The kernel source of ``GpuCrossentropySoftmaxArgmax1HotWithBias``.

    Returns
    -------
    str

    Raises
    ------
    RuntimeError
        If the source is not the kernel this rewrite was made for.
    """
    if code.count(_ROW_LOOP) != 1:
        raise RuntimeError("not Theano 1.0.5's softmax cross-entropy kernel:"
                           " its row loop was not found; reinstall "
                           "Theano==1.0.5")
    head, loop = code.split(_ROW_LOOP)
    declarations = _LOCAL_DECL.findall(loop)
    if len(declarations) != 2:
        raise RuntimeError("not Theano 1.0.5's softmax cross-entropy kernel:"
                           " %d local-memory declarations in its row loop, "
                           "expected 2" % len(declarations))
    loop = _LOCAL_DECL.sub("", loop)
    before, indent = head.rsplit("\n", 1)
    moved = "".join(indent + d.strip() + "\n" for d in declarations)
    return before + "\n" + moved + indent + _ROW_LOOP + loop


def fix_scalar_code(code):
    """Theano's scalar C code as OpenCL C: ``nan("")`` becomes ``NAN``."""
    return code.replace('nan("")', "NAN")


def install_kernel_fixes(theano):
    """Build ``GpuCrossentropySoftmaxArgmax1HotWithBias``'s kernel with
    :func:`fix_local_memory` and ``GpuElemwise``'s with
    :func:`fix_scalar_code` on contexts that are not CUDA."""
    _fix_softmax_kernel()
    _fix_elemwise_kernels()


def _is_cuda(node):
    return node.inputs[0].type.context.kind == b"cuda"


def _marked(version):
    """A compile-cache version with the mark of our rewrite."""
    return version + (("lstm_accum.opencl", FIX_VERSION),)


def _fix_elemwise_kernels():
    from theano.gpuarray.elemwise import GpuElemwise
    if getattr(GpuElemwise, "_lstm_accum_fixed", False):
        return
    generate = GpuElemwise._generate_op_string
    cache_version = GpuElemwise.c_code_cache_version_apply

    def fixed_op_string(self, node):
        support, kop = generate(self, node)
        if _is_cuda(node):
            return support, kop
        return fix_scalar_code(support), fix_scalar_code(kop)

    def fixed_version(self, node):
        version = cache_version(self, node)
        if not version or _is_cuda(node):
            return version
        if generate(self, node) == fixed_op_string(self, node):
            return version     # nothing rewritten: Theano's module
        return _marked(version)

    GpuElemwise._generate_op_string = fixed_op_string
    GpuElemwise.c_code_cache_version_apply = fixed_version
    GpuElemwise.theano_generate_op_string = generate
    GpuElemwise._lstm_accum_fixed = True


def _fix_softmax_kernel():
    from theano.gpuarray import nnet
    cls = nnet.GpuCrossentropySoftmaxArgmax1HotWithBias
    if getattr(cls, "_lstm_accum_fixed", False):
        return
    gpu_kernels = cls.gpu_kernels
    cache_version = cls.c_code_cache_version_apply

    def fixed_kernels(self, node, nodename):
        kernels = gpu_kernels(self, node, nodename)
        if not _is_cuda(node):
            for kernel in kernels:
                kernel.code = fix_local_memory(kernel.code)
        return kernels

    def fixed_version(self, node):
        version = cache_version(self, node)
        if not version or _is_cuda(node):
            return version
        return _marked(version)

    cls.gpu_kernels = fixed_kernels
    cls.c_code_cache_version_apply = fixed_version
    cls.theano_gpu_kernels = gpu_kernels   # Theano's own, for comparison
    cls._lstm_accum_fixed = True
