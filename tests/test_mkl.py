"""MKL for the team's products (``lstm_accum.ops.mkl``): loaded only when
asked and installed, never over another MKL, and set up as the team needs
(checked on the library itself, through ctypes).  That its products equal
MKL's own one-call products at every thread count is ``test_team.py``."""
import os
import subprocess
import sys
from importlib import metadata

import pytest

from lstm_accum.backend import openblas
from lstm_accum.exceptions import InputError
from lstm_accum.ops import mkl

# The uncached loader: the switch and the checks before anything is loaded.
_load = mkl.load_mkl.__wrapped__


def _installed():
    try:
        metadata.distribution("mkl")
    except metadata.PackageNotFoundError:
        return False
    return True


def test_a_bad_switch_is_an_input_error(monkeypatch):
    monkeypatch.setenv(mkl.SWITCH_VARIABLE, "mkl-please")
    with pytest.raises(InputError, match="LSTM_ACCUM_BLAS='mkl-please'.*"
                       "auto, mkl, openblas"):
        _load()


@pytest.mark.parametrize("value", ["openblas", "OpenBLAS "])
def test_the_switch_keeps_openblas(monkeypatch, value):
    monkeypatch.setenv(mkl.SWITCH_VARIABLE, value)
    monkeypatch.setattr(mkl, "cpu_vendor", lambda: "GenuineIntel")
    assert _load() == (None, "LSTM_ACCUM_BLAS=openblas")


def _not_looked_for(*args):
    raise AssertionError("MKL was looked for")


@pytest.mark.parametrize("vendor", ["AuthenticAMD", None])
def test_auto_leaves_other_cpus_to_openblas(monkeypatch, vendor):
    monkeypatch.delenv(mkl.SWITCH_VARIABLE, raising=False)
    monkeypatch.setattr(mkl, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(mkl, "_installed_runtime", _not_looked_for)
    path, why = _load()
    assert path is None
    assert ("this one is %s" % (vendor or "of an unknown vendor")) in why
    assert "LSTM_ACCUM_BLAS=mkl uses MKL here" in why


@pytest.mark.parametrize("vendor", ["GenuineIntel", "AuthenticAMD"])
def test_without_the_package_openblas_stays(monkeypatch, vendor):
    monkeypatch.setattr(mkl, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(mkl, "_installed_runtime", lambda: None)
    monkeypatch.setattr(mkl, "_loaded_elsewhere", _not_looked_for)
    monkeypatch.delenv(mkl.SWITCH_VARIABLE, raising=False)
    if vendor == "GenuineIntel":
        assert _load() == (None, "the mkl package is not installed")
    monkeypatch.setenv(mkl.SWITCH_VARIABLE, "mkl")
    with pytest.raises(InputError, match="LSTM_ACCUM_BLAS=mkl, but the mkl "
                       "package is not installed: pip install mkl, or unset"):
        _load()


def test_another_mkl_in_the_process_is_left_alone(monkeypatch):
    monkeypatch.delenv(mkl.SWITCH_VARIABLE, raising=False)
    monkeypatch.setattr(mkl, "cpu_vendor", lambda: "GenuineIntel")
    monkeypatch.setattr(mkl, "_installed_runtime", lambda: "/x/libmkl_rt.so")
    monkeypatch.setattr(mkl, "_loaded_elsewhere", lambda: True)
    path, why = _load()
    assert path is None and "already loaded" in why
    monkeypatch.setenv(mkl.SWITCH_VARIABLE, "MKL")
    with pytest.raises(InputError, match="already loaded.*set it to openblas"):
        _load()


def test_cpu_vendor_reads_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n"
                       "cpu family\t: 25\n\nprocessor\t: 1\n"
                       "vendor_id\t: AuthenticAMD\n")
    assert openblas.cpu_vendor(str(cpuinfo)) == "AuthenticAMD"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")   # arm64
    assert openblas.cpu_vendor(str(cpuinfo)) is None
    assert openblas.cpu_vendor(str(tmp_path / "missing")) is None


def test_this_machine_s_vendor_decides_auto(monkeypatch):
    """On this CPU, unset means MKL exactly when the CPU is Intel's and
    the package is installed (read here from /proc/cpuinfo by hand)."""
    monkeypatch.delenv(mkl.SWITCH_VARIABLE, raising=False)
    with open("/proc/cpuinfo") as f:
        intel = "GenuineIntel" in f.read()
    code = ("from lstm_accum.ops import mkl\n"
            "print(mkl.load_mkl()[0] is not None)\n")
    env = dict(os.environ)
    env.pop(mkl.SWITCH_VARIABLE, None)
    proc = subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(intel and _installed())]


def test_loaded_elsewhere_reads_the_process_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libc.so.6\n")
    assert not mkl._loaded_elsewhere(str(maps))
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /opt/intel/libmkl_core.so.2\n")
    assert mkl._loaded_elsewhere(str(maps))
    assert not mkl._loaded_elsewhere(str(tmp_path / "missing"))


@pytest.mark.skipif(not _installed(), reason="the mkl package is not "
                    "installed")
def test_installed_mkl_is_loaded_sequential_and_strictly_reproducible():
    """In a process of its own with the switch at ``mkl`` (whatever this
    one's environment says, on any CPU): MKL loads, and the library reports
    the team's settings."""
    code = (
        "import ctypes, os\n"
        "from lstm_accum.ops import mkl\n"
        "path, why = mkl.load_mkl()\n"
        "assert why is None and mkl.mkl_library() == path, why\n"
        "lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL | os.RTLD_NOLOAD)\n"
        "print(os.path.basename(path), lib.MKL_CBWR_Get(-1),\n"
        "      lib.MKL_Get_Max_Threads())\n")
    env = dict(os.environ, **{mkl.SWITCH_VARIABLE: "mkl"})
    proc = subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name, cbwr, threads = proc.stdout.split()
    assert name.startswith("libmkl_rt.so")
    # mkl_cbwr.h: MKL_CBWR_ALL = ~0, MKL_CBWR_AUTO = 2, STRICT = 0x10000
    assert int(cbwr) == 2 | 0x10000
    assert int(threads) == 1                       # the sequential layer
