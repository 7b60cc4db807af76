"""Fixtures of the device tests: the device in use, the CPU reference run
(started in a subprocess at the first test that needs it) and the
scenario of each mode, compiled once per session (each model takes about a
minute to compile on pocl: the tests share them)."""
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for path in (HERE, ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)

import scenarios  # noqa: E402
from lstm_accum.backend import theano  # noqa: E402


def pytest_configure(config):
    wanted = os.environ.get("LSTM_ACCUM_TEST_DEVICE", "")
    device = theano.config.device
    if not wanted or device != wanted or device == "cpu":
        raise pytest.UsageError(
            "the device tests need THEANO_FLAGS=device=%s (Theano runs on "
            "%r); run them with ./run.sh test --device %s"
            % (wanted or "DEV", device, wanted or "DEV"))


def cpu_env(**extra):
    """The environment of a subprocess that computes on the CPU."""
    env = dict(os.environ)
    env["THEANO_FLAGS"] = "device=cpu,floatX=float32"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("LSTM_ACCUM_TEST_DEVICE", None)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def reference_process(tmp_path_factory):
    """The CPU run of every scenario, started now, read when needed."""
    path = str(tmp_path_factory.mktemp("cpu") / "reference.npz")
    log = open(path + ".log", "w+")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "reference.py"), path],
        env=cpu_env(), stdout=log, stderr=subprocess.STDOUT)
    return proc, log, path


@pytest.fixture(scope="session")
def cpu_reference(reference_process):
    proc, log, path = reference_process
    proc.wait(timeout=1800)
    log.seek(0)
    assert proc.returncode == 0, "the CPU reference run failed:\n%s" % (
        log.read()[-3000:])
    with np.load(path) as data:
        return dict(data)


class Compiled(object):
    """The :class:`scenarios.Scenario` of each mode, built at first use."""

    def __init__(self):
        self.by_mode = {}

    def __call__(self, mode):
        if mode not in self.by_mode:
            self.by_mode[mode] = scenarios.Scenario(mode)
        return self.by_mode[mode]


@pytest.fixture(scope="session")
def compiled(reference_process):
    # Depends on reference_process so that the CPU run starts first and
    # overlaps with the device's compilation.
    return Compiled()
