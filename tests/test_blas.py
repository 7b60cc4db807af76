"""lstm_accum.blas: OpenBLAS kernel detection and the OPENBLAS_CORETYPE hint.

Nothing here changes the environment of the test process.
"""
import os
import re
import subprocess
import sys

import pytest

from lstm_accum import blas

AVX512 = {"sse3", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw",
          "avx512dq", "avx512vl"}
AVX2 = {"sse3", "avx", "avx2", "fma"}


@pytest.mark.parametrize("core, flags, environ, expected", [
    ("Prescott", AVX512, {}, "SkylakeX"),
    ("Prescott", AVX2, {}, "Haswell"),
    ("Sandybridge", AVX2, {}, "Haswell"),        # AVX1 kernels only
    ("Prescott", {"sse3", "avx"}, {}, None),     # nothing faster to offer
    ("Prescott", AVX512 - {"avx512bw"}, {}, "Haswell"),
    ("Haswell", AVX512, {}, None),               # already AVX2 kernels
    ("Zen", AVX512, {}, None),
    ("SkylakeX", AVX512, {}, None),
    ("Prescott", AVX512, {"OPENBLAS_CORETYPE": "Haswell"}, None),  # user's
    ("", AVX512, {}, None),                      # unknown
])
def test_recommend_coretype(core, flags, environ, expected):
    assert blas.recommend_coretype(core, flags, environ) == expected


def test_coretype_hint_names_the_kernels_and_the_fix():
    hint = blas.coretype_hint("Prescott", AVX512, {})
    assert "'Prescott'" in hint and "OPENBLAS_CORETYPE=SkylakeX" in hint
    assert "\n" not in hint
    assert blas.coretype_hint("Haswell", AVX512, {}) is None


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\n"
                    "flags\t\t: fpu sse3 avx2 fma\nbugs\t\t: none\n")
    assert blas.cpu_flags(str(info)) == {"fpu", "sse3", "avx2", "fma"}
    assert blas.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_loaded_openblas_reads_the_memory_map(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f0-7f1 r--p 00000000 00:1f 1 /usr/lib/libc.so.6\n"
        "7f1-7f2 r-xp 00000000 00:1f 2 /x/numpy.libs/libopenblas64_p.so\n"
        "7f2-7f3 r--p 00001000 00:1f 2 /x/numpy.libs/libopenblas64_p.so\n"
        "7f3-7f4 rw-p 00000000 00:00 0 \n"
        "7f4-7f5 r-xp 00000000 00:1f 3 /usr/lib/libopenblas.so.0\n")
    assert blas.loaded_openblas(str(maps)) == [
        "/x/numpy.libs/libopenblas64_p.so", "/usr/lib/libopenblas.so.0"]
    assert blas.loaded_openblas(str(tmp_path / "missing")) == []


def test_openblas_corename_agrees_with_openblas_itself():
    # OpenBLAS prints the kernels it chose when OPENBLAS_VERBOSE=2 (set in
    # a subprocess only).  NumPy's is the only OpenBLAS ``import numpy``
    # loads.
    proc = subprocess.run(
        [sys.executable, "-c", "import numpy"],
        env=dict(os.environ, OPENBLAS_VERBOSE="2"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    reported = re.findall(r"Core: (\S+)", proc.stdout)
    assert len(reported) == 1, proc.stdout
    assert blas.openblas_corename() == reported[0]
