"""Fixtures of the device tests: the device in use, the CPU reference run
(started in a subprocess at the first test that needs it) and the
scenario of each mode, compiled once per session (each model takes about a
minute to compile on pocl: the tests share them)."""
import os
import subprocess
import sys

import numpy as np
import pytest

# Each pytest-xdist worker keeps its own pocl kernel cache: two processes
# building the same OpenCL program at once can fail in a shared one
# ("clBuildProgram: Unknown error").  Set before the device opens.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["POCL_CACHE_DIR"] = "%s-%s" % (
        os.environ.get("POCL_CACHE_DIR")
        or os.path.join(os.path.expanduser("~"), ".cache", "pocl"),
        os.environ["PYTEST_XDIST_WORKER"])

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for path in (HERE, ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)

import scenarios  # noqa: E402
from lstm_accum.backend import opencl, theano  # noqa: E402

# Theano marks the environment once it opened the device, so that a forked
# child does not use the parent's context.  The pytest-xdist workers and
# the processes these tests start are new programs (exec), which open
# their own: they must not inherit the mark.
os.environ.pop("THEANO_GPU_IS_ALREADY_ACTIVE", None)


def pytest_configure(config):
    wanted = os.environ.get("LSTM_ACCUM_TEST_DEVICE", "")
    device = theano.config.device
    if not wanted or device != wanted or not opencl.gpu_contexts(theano):
        raise pytest.UsageError(
            "the device tests need THEANO_FLAGS=device=%s and that device "
            "open (Theano runs on %r; see its error above); run them with "
            "./run.sh test --device %s"
            % (wanted or "DEV", device, wanted or "DEV"))


def cpu_env(**extra):
    """The environment of a subprocess that computes on the CPU."""
    env = dict(os.environ)
    env["THEANO_FLAGS"] = "device=cpu,floatX=float32"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("LSTM_ACCUM_TEST_DEVICE", None)
    env.update(extra)
    return env


class CpuReference(object):
    """The CPU runs of the scenarios, one subprocess per mode, started when
    a mode is first needed (its device side compiles meanwhile)."""

    def __init__(self, directory):
        self.directory = directory
        self.running = {}
        self.done = {}

    def start(self, mode):
        name = scenarios.mode_name(mode)
        if name in self.running or name in self.done:
            return
        path = os.path.join(self.directory, name + ".npz")
        log = open(path + ".log", "w+")
        proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "reference.py"), path, name],
            env=cpu_env(), stdout=log, stderr=subprocess.STDOUT)
        self.running[name] = (proc, log, path)

    def __call__(self, mode):
        """The arrays of ``mode``'s CPU run, by ``reference.py``'s keys."""
        name = scenarios.mode_name(mode)
        if name not in self.done:
            self.start(mode)
            proc, log, path = self.running.pop(name)
            proc.wait(timeout=1800)
            log.seek(0)
            assert proc.returncode == 0, "the CPU run of %s failed:\n%s" % (
                name, log.read()[-3000:])
            with np.load(path) as data:
                self.done[name] = dict(data)
        return self.done[name]


@pytest.fixture(scope="session")
def cpu_reference(tmp_path_factory):
    return CpuReference(str(tmp_path_factory.mktemp("cpu")))


class Compiled(object):
    """The :class:`scenarios.Scenario` of each mode, built at first use
    (the mode's CPU run starts first, in a subprocess)."""

    def __init__(self, reference):
        self.reference = reference
        self.by_mode = {}

    def __call__(self, mode):
        if mode not in self.by_mode:
            self.reference.start(mode)
            self.by_mode[mode] = scenarios.Scenario(mode)
        return self.by_mode[mode]


@pytest.fixture(scope="session")
def compiled(cpu_reference):
    return Compiled(cpu_reference)


@pytest.hookimpl(tryfirst=True)   # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Under pytest-xdist (``-n 2 --dist loadgroup``) the tests of one mode
    run in one worker, which compiles that mode once: the ``mode`` or
    ``mode,rule`` parameter names the group; other tests group by file."""
    for item in items:
        params = getattr(item, "callspec", None)
        mode = params.params.get("mode") if params else None
        group = scenarios.mode_name(mode) if mode is not None \
            else os.path.basename(item.fspath)
        item.add_marker(pytest.mark.xdist_group(group))
