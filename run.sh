#!/usr/bin/env bash
# The README's two commands:
#   ./run.sh train   trains the bundled example end to end
#   ./run.sh test    runs the test suite
# and ./run.sh docs, which builds the documentation into docs/_build/html.
# Each builds (or reuses) the virtual environment first: .venv, made with the
# first supported Python found (python3.11, python3.12, then python3), or
# with PYTHON=...; LSTM_ACCUM_VENV=dir picks another directory (.ci/run uses
# .venv-3.11 and .venv-3.12).
#
# The device (Theano's GPU backend, gpuarray):
#   ./run.sh test --device DEV [pytest options]   the device tests (tests/device)
#   ./run.sh verify-device DEV                     the same, then tokens/s
#   ./run.sh gather-device DIR [DEV]               everything the device
#                                                  environment installs, in DIR
# DEV is opencl0:0 (any OpenCL device; pocl runs on the CPU) or cuda0.  The
# environment is .venv-device, made from Debian's /usr/bin/python3 with
# Debian's pygpu/libgpuarray and numpy (system site packages); as root the
# Debian packages are installed with apt-get, or, with
# LSTM_ACCUM_OFFLINE=DIR, from what gather-device put in DIR (no network).
set -euo pipefail
cd "$(dirname "$0")"
VENV=${LSTM_ACCUM_VENV:-.venv}
THEANO_SDIST=Theano==1.0.5
WHEEL_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/lstm_accum/wheels
PIP=(-m pip install -q --disable-pip-version-check)

# Prints "major.minor" of a Python that runs here, or fails.
py_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

find_python() {
    local candidate v
    if [ -n "${PYTHON:-}" ]; then
        echo "$PYTHON"
        return
    fi
    for candidate in python3.11 python3.12 python3; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        v=$(py_version "$candidate") || continue   # e.g. a pyenv shim
        case "$v" in 3.11|3.12) echo "$candidate"; return ;; esac
    done
    echo "lstm_accum needs Python 3.11 or 3.12 and found neither" \
         "(python3.11, python3.12, python3); install one or set PYTHON=" >&2
    exit 2
}

# Theano 1.0.5 exists only as an sdist, whose versioneer.py calls
# configparser.SafeConfigParser(...).readfp(...), both removed in Python 3.12,
# while pip reads its metadata.  Build the wheel once with that call
# answered by ConfigParser (and read_file), for this one build only, and keep
# it: it is py3-none-any, the same files pip builds on 3.11.
theano_wheel() {
    local wheel="$WHEEL_CACHE/Theano-1.0.5-py3-none-any.whl" shim
    if [ ! -f "$wheel" ]; then
        echo "==> building the Theano 1.0.5 wheel from its sdist (Python 3.12 fix); once only" >&2
        mkdir -p "$WHEEL_CACHE"
        shim=$(mktemp -d)
        cat > "$shim/sitecustomize.py" <<'PYEOF'
import configparser
if not hasattr(configparser, "SafeConfigParser"):
    class SafeConfigParser(configparser.ConfigParser):
        readfp = configparser.ConfigParser.read_file
    configparser.SafeConfigParser = SafeConfigParser
PYEOF
        PYTHONPATH="$shim" "$VENV/bin/python" -m pip wheel -q \
            --disable-pip-version-check --no-deps --no-build-isolation \
            -w "$shim" "$THEANO_SDIST"
        mv "$shim"/Theano-1.0.5-py3-none-any.whl "$wheel.partial"
        mv "$wheel.partial" "$wheel"
        rm -rf "$shim"
    fi
    echo "$wheel"
}

ensure_venv() {
    local py v stamp="$VENV/.lstm_accum-stamp" want have
    py=$(find_python)
    v=$(py_version "$py") || { echo "PYTHON=$py does not run" >&2; exit 2; }
    case "$v" in
        3.8|3.9|3.10|3.11|3.12) ;;
        *) echo "lstm_accum needs Python 3.11 or 3.12 (3.8-3.10 untested);" \
                "$py is $v. Python 3.13+ has no NumPy 1.x wheels, whose C API" \
                "Theano 1.0.5's C code needs. Set PYTHON=python3.12." >&2
           exit 2 ;;
    esac
    want=$( (cat setup.py constraints.txt; echo "$v") | sha256sum | cut -d' ' -f1)
    if [ -x "$VENV/bin/python" ]; then
        have=$(py_version "$VENV/bin/python" || echo "broken")
        if [ "$have" != "$v" ]; then
            echo "$VENV holds Python $have, not $v ($py): remove it, or choose" \
                 "another directory with LSTM_ACCUM_VENV=.venv-$v" >&2
            exit 2
        fi
        [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return
    fi
    echo "==> creating $VENV with Python $v (Theano 1.0.5, Lasagne 0.1); once only" >&2
    [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
    "$VENV/bin/python" "${PIP[@]}" -c constraints.txt "setuptools<70" wheel
    case "$v" in
        3.12) "$VENV/bin/python" "${PIP[@]}" -c constraints.txt "$(theano_wheel)" ;;
    esac
    "$VENV/bin/python" "${PIP[@]}" -c constraints.txt -e ".[test]"
    echo "$want" > "$stamp"
}

# The distributed tests need Open MPI (Debian packages) and mpi4py (PyPI).
ensure_mpi() {
    if ! command -v mpirun >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "==> installing Open MPI (apt-get install openmpi-bin libopenmpi-dev); once only" >&2
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                openmpi-bin libopenmpi-dev >/dev/null
        else
            echo "==> Open MPI is missing and this is not root: run" \
                 "'sudo apt-get install openmpi-bin libopenmpi-dev'" >&2
            echo "    (the distributed tests will fail until then)" >&2
        fi
    fi
    if ! "$VENV/bin/python" -c "import mpi4py" >/dev/null 2>&1; then
        "$VENV/bin/python" "${PIP[@]}" -c constraints.txt mpi4py
    fi
}

# --- the device environment ------------------------------------------------
# Debian packages of the device environment for device $1: pygpu and
# libgpuarray (with its headers, which Theano's GPU code compiles against),
# Debian's scipy for the same numpy, and on OpenCL pocl (an OpenCL device on
# the CPU) and CLBlast (libgpuarray's BLAS on OpenCL).
device_packages() {
    local pkgs="python3-pygpu libgpuarray-dev python3-scipy python3-venv"
    case "$1" in
        opencl*) pkgs="$pkgs pocl-opencl-icd libclblast-dev ocl-icd-libopencl1" ;;
    esac
    echo "$pkgs"
}

# Exit status of a device command whose environment cannot be had here.
EXIT_NO_DEVICE_ENV=75

no_device_env() {
    echo "device environment unavailable: $*" >&2
    exit "$EXIT_NO_DEVICE_ENV"
}

check_device_name() {
    case "$1" in
        opencl[0-9]*:[0-9]*|cuda|cuda[0-9]*) ;;
        *) echo "unknown device '$1': use opencl0:0 (OpenCL platform 0," \
                "device 0) or cuda0 (the first NVIDIA GPU)" >&2
           exit 2 ;;
    esac
}

ensure_device_packages() {
    local missing=() p offline=${LSTM_ACCUM_OFFLINE:-}
    for p in $(device_packages "$1"); do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    command -v apt-get >/dev/null 2>&1 \
        || no_device_env "not a Debian/Ubuntu system (no apt-get) and" \
                         "${missing[*]} missing"
    [ "$(id -u)" = 0 ] \
        || no_device_env "not root; run 'sudo apt-get install ${missing[*]}'"
    export DEBIAN_FRONTEND=noninteractive
    if [ -n "$offline" ]; then
        echo "==> installing ${missing[*]} from $offline/debs (no network)" >&2
        apt-get install -y -qq --no-download "$offline"/debs/*.deb >/dev/null \
            || no_device_env "apt-get could not install the packages in" \
                             "$offline/debs"
    else
        echo "==> installing ${missing[*]} (apt-get); once only" >&2
        apt-get update -qq >/dev/null || true
        apt-get install -y -qq "${missing[@]}" >/dev/null \
            || no_device_env "apt-get install ${missing[*]} failed"
    fi
}

# constraints.txt for the device environment: numpy and scipy are Debian's
# (pygpu is built against that numpy's ABI; a pip numpy breaks it), the rest
# as pinned for the CPU.
device_constraints() {
    local py=$1
    grep -vE '^(numpy|scipy|setuptools)==' constraints.txt
    "$py" -c 'import numpy, scipy
print("numpy==" + numpy.__version__); print("scipy==" + scipy.__version__)'
}

ensure_device_venv() {
    local py=/usr/bin/python3 venv=${LSTM_ACCUM_VENV:-.venv-device}
    local stamp want cons pipsrc=()
    "$py" -c "import pygpu" >/dev/null 2>&1 \
        || no_device_env "$py cannot import pygpu (python3-pygpu)"
    VENV=$venv
    stamp="$VENV/.lstm_accum-stamp"
    want=$( (cat setup.py constraints.txt; echo device) | sha256sum | cut -d' ' -f1)
    if [ -x "$VENV/bin/python" ] \
            && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return
    fi
    echo "==> creating $VENV from $py with Debian's pygpu and numpy; once only" >&2
    [ -x "$VENV/bin/python" ] || "$py" -m venv --system-site-packages "$VENV"
    cons="$VENV/constraints-device.txt"
    device_constraints "$VENV/bin/python" > "$cons"
    if [ -n "${LSTM_ACCUM_OFFLINE:-}" ]; then
        pipsrc=(--no-index --find-links "$LSTM_ACCUM_OFFLINE/wheels")
    fi
    # --no-deps for Theano and Lasagne: their own requirements (numpy,
    # scipy, six) are Debian's, and pip must not replace them.
    "$VENV/bin/python" "${PIP[@]}" "${pipsrc[@]}" --no-deps \
        Theano==1.0.5 Lasagne==0.1
    "$VENV/bin/python" "${PIP[@]}" "${pipsrc[@]}" -c "$cons" \
        tqdm matplotlib pytest pytest-xdist hypothesis psutil
    "$VENV/bin/python" "${PIP[@]}" "${pipsrc[@]}" --no-deps \
        --no-build-isolation -e .
    echo "$want" > "$stamp"
}

# THEANO_FLAGS for device $1: the user's flags last (a later key wins).
device_flags() {
    # deterministic=more: the lookup's gradient (AdvancedIncSubtensor1)
    # without atomic adds on CUDA, so that two runs give the same bits.
    echo "device=$1,floatX=float32,deterministic=more${THEANO_FLAGS:+,$THEANO_FLAGS}"
}

# On CUDA, libgpuarray opens the driver and the CUDA libraries at run time,
# by these unversioned names: one line per library.
check_cuda_libraries() {
    local lib found=0
    for lib in libcuda.so libnvrtc.so libcublas.so; do
        if ldconfig -p 2>/dev/null | grep -q " $lib "; then
            echo "ok       $lib" >&2
        else
            echo "MISSING  $lib (libgpuarray loads it by this name: install" \
                 "NVIDIA's driver and CUDA toolkit, or link the versioned" \
                 "file to this name and run ldconfig)" >&2
            found=1
        fi
    done
    return $found
}

test_device() {
    local device=$1
    shift
    check_device_name "$device"
    case "$device" in cuda*) check_cuda_libraries || true ;; esac
    ensure_device_packages "$device"
    ensure_device_venv
    export LSTM_ACCUM_CORETYPE=off
    # Two workers: the models of one mode compile in one of them
    # (tests/device/conftest.py groups them), the slow part of this leg.
    THEANO_FLAGS=$(device_flags "$device") LSTM_ACCUM_TEST_DEVICE=$device \
        "$VENV/bin/python" -m pytest -n 2 --dist loadgroup tests/device "$@"
}

gather_device() {
    local dir=${1:?usage: ./run.sh gather-device DIR [DEVICE]} device=${2:-cuda0}
    local pkgs py
    check_device_name "$device"
    ensure_device_packages "$device"
    ensure_device_venv                  # its pip (Debian's python has none)
    py=$VENV/bin/python
    mkdir -p "$dir/debs" "$dir/wheels"
    dir=$(cd "$dir" && pwd)
    pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests \
             --no-conflicts --no-breaks --no-replaces --no-enhances \
             $(device_packages "$device") | grep '^[a-z0-9]' | sort -u)
    echo "==> downloading $(echo "$pkgs" | wc -l) Debian packages into $dir/debs" >&2
    (cd "$dir/debs" && apt-get download $pkgs >/dev/null 2>&1 \
        || for p in $pkgs; do apt-get download "$p" >/dev/null 2>&1 || true; done)
    echo "==> building and downloading the wheels into $dir/wheels" >&2
    "$py" -m pip wheel -q --disable-pip-version-check --no-deps \
        -w "$dir/wheels" Theano==1.0.5 Lasagne==0.1
    device_constraints "$py" > "$dir/constraints-device.txt"
    "$py" -m pip download -q --disable-pip-version-check -d "$dir/wheels" \
        -c "$dir/constraints-device.txt" tqdm matplotlib pytest pytest-xdist \
        hypothesis psutil
    echo "gathered in $dir; on the offline machine, as root:" >&2
    echo "  LSTM_ACCUM_OFFLINE=$dir ./run.sh verify-device $device" >&2
}


# Sphinx and its theme (setup.py's "docs" extra, pinned in
# constraints.txt), installed on first use and again when either file
# changes.
ensure_docs() {
    local stamp="$VENV/.lstm_accum-docs-stamp" want
    want=$(cat setup.py constraints.txt | sha256sum | cut -d' ' -f1)
    [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return
    echo "==> installing Sphinx into $VENV (setup.py's docs extra); once only" >&2
    "$VENV/bin/python" "${PIP[@]}" -c constraints.txt -e ".[docs]"
    echo "$want" > "$stamp"
}

cmd=${1:-}
shift || true
case "$cmd" in
    train)
        ensure_venv
        exec "$VENV/bin/python" examples/train_lm.py "$@"
        ;;
    test)
        if [ "${1:-}" = "--device" ]; then
            shift
            [ $# -ge 1 ] || { echo "usage: ./run.sh test --device DEV" >&2; exit 2; }
            test_device "$@"
            exit
        fi
        ensure_venv
        ensure_mpi
        # Tests run with the kernels OpenBLAS chose: never OPENBLAS_CORETYPE.
        export LSTM_ACCUM_CORETYPE=off
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    verify-device)
        [ $# -ge 1 ] || { echo "usage: ./run.sh verify-device DEV" >&2; exit 2; }
        device=$1
        shift
        status=0
        test_device "$device" -v -p no:cacheprovider "$@" || status=$?
        THEANO_FLAGS=$(device_flags "$device") \
            "$VENV/bin/python" benchmarks/device_speed.py --device "$device" \
            || status=1
        exit "$status"
        ;;
    gather-device)
        gather_device "$@"
        ;;
    docs)
        ensure_venv
        ensure_docs
        # Warnings are errors (a reference that does not resolve, a public
        # name left undocumented); --keep-going lists all of them at once.
        "$VENV/bin/python" -m sphinx -b html -W --keep-going -q "$@" \
            docs docs/_build/html
        echo "docs: $(pwd)/docs/_build/html/index.html" >&2
        ;;
    *)
        echo "usage: ./run.sh train [options]   |   ./run.sh test [pytest options]   |   ./run.sh docs [sphinx options]" >&2
        echo "       ./run.sh test --device DEV [pytest options]   |" \
             "./run.sh verify-device DEV   |   ./run.sh gather-device DIR [DEV]" >&2
        echo "       PYTHON=python3.12 ./run.sh ...   LSTM_ACCUM_VENV=dir ./run.sh ..." >&2
        exit 2
        ;;
esac
