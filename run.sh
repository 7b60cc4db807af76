#!/usr/bin/env bash
# The README's two commands:
#   ./run.sh train   trains the bundled example end to end
#   ./run.sh test    runs the test suite
# Each builds (or reuses) the virtual environment .venv first.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv

ensure_venv() {
    local stamp="$VENV/.lstm_accum-stamp" want
    want=$(cat setup.py constraints.txt | sha256sum | cut -d' ' -f1)
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return
    fi
    "$PY" - <<'PYEOF' || exit 2
import sys
if not ((3, 8) <= sys.version_info[:2] <= (3, 11)):
    sys.exit("lstm_accum needs Python 3.8-3.11 (Theano 1.0.5 needs distutils, "
             "removed in 3.12); this is %s. Set PYTHON=python3.11." % sys.version.split()[0])
PYEOF
    echo "==> creating $VENV (Theano 1.0.5, Lasagne 0.1, numpy<1.24); once only" >&2
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -c constraints.txt "setuptools<70" wheel
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -c constraints.txt -e ".[test]"
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
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
            -c constraints.txt mpi4py
    fi
}

cmd=${1:-}
shift || true
case "$cmd" in
    train)
        ensure_venv
        exec "$VENV/bin/python" examples/train_lm.py "$@"
        ;;
    test)
        ensure_venv
        ensure_mpi
        # Tests run with the kernels OpenBLAS chose: never OPENBLAS_CORETYPE.
        export LSTM_ACCUM_CORETYPE=off
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: ./run.sh train [options]   |   ./run.sh test [pytest options]" >&2
        exit 2
        ;;
esac
