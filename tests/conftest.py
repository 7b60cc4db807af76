"""Shared fixtures. Compiled Theano functions are expensive (seconds each on a
cold cache), so tests share them through session-scoped fixtures and use tiny
models: Theano's compile cache is keyed by the ops, not by the sizes."""
import os
import sys

import pytest

# Tests never change OpenBLAS's kernels: no lstm-accum or example subprocess
# restarts itself with OPENBLAS_CORETYPE (lstm_accum.backend.openblas.select_kernels).
os.environ.setdefault("LSTM_ACCUM_CORETYPE", "off")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def repo_root():
    return ROOT

# The device tests (tests/device) run only in the device environment:
# `./run.sh test --device DEV` sets LSTM_ACCUM_TEST_DEVICE and THEANO_FLAGS.
if not os.environ.get("LSTM_ACCUM_TEST_DEVICE"):
    collect_ignore = ["device"]
