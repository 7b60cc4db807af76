#!/usr/bin/env bash
# The README's two commands:
#   ./run.sh train   trains the bundled example end to end
#   ./run.sh test    runs the test suite
# and ./run.sh docs, which builds the documentation into docs/_build/html.
# Each builds (or reuses) the virtual environment first: .venv, made with the
# first supported Python found (python3.11, python3.12, then python3), or
# with PYTHON=...; LSTM_ACCUM_VENV=dir picks another directory (.ci/run uses
# .venv-3.11 and .venv-3.12).
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
        ensure_venv
        ensure_mpi
        # Tests run with the kernels OpenBLAS chose: never OPENBLAS_CORETYPE.
        export LSTM_ACCUM_CORETYPE=off
        exec "$VENV/bin/python" -m pytest "$@"
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
        echo "       PYTHON=python3.12 ./run.sh ...   LSTM_ACCUM_VENV=dir ./run.sh ..." >&2
        exit 2
        ;;
esac
