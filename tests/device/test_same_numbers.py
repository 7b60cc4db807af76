"""The same numbers on the device as on the CPU, and twice the same bits.

After three windows (accumulate, apply), in float32, every parameter,
accumulator, counter and optimizer-state array on the device equals the CPU
run's (``reference.py``, the library's default CPU path: our fused C
operations and BLAS) within float32 rounding, for the question's network
and every mode of ``build_model``, with Adagrad and with Adam, both with
norm clipping (Adagrad through ``GradientAccumulator.apply``, Adam through
a second apply function over the same window: ``scenarios.Scenario``).

The tolerance, ``|device - cpu| <= 2e-4 * max|cpu|`` per array (a norm-wise
relative error), is float32 rounding grown by three windows: the two
paths sum in different orders (scan with the device's BLAS against our
fused loops with OpenBLAS), each product and reduction differing by a few
units of float32's 6e-8, and Adam's and Adagrad's divisions by square
roots of small sums amplify it.  Counters must be equal.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import scenarios
from conftest import HERE, cpu_env

TOLERANCE = 2e-4

CASES = [(mode, rule) for mode in scenarios.all_modes()
         for rule in scenarios.RULES]


def close(device, cpu):
    device, cpu = np.asarray(device), np.asarray(cpu)
    if device.shape != cpu.shape or device.dtype != cpu.dtype:
        return False
    if device.dtype.kind != "f":
        return np.array_equal(device, cpu)
    scale = max(float(np.max(np.abs(cpu))) if cpu.size else 0.0, 1e-30)
    return float(np.max(np.abs(device - cpu))) <= TOLERANCE * scale


@pytest.fixture(scope="session")
def runs(compiled):
    """Each case run twice from the same start, at its first use:
    ``runs(mode, rule) -> (states, results, states, results)``."""
    done = {}

    def get(mode, rule):
        name = scenarios.key(mode, rule)
        if name not in done:
            scenario = compiled(mode)
            done[name] = scenario.run(rule) + scenario.run(rule)
        return done[name]
    return get


@pytest.mark.parametrize("mode,rule", CASES, ids=str)
def test_equals_the_cpu_within_float32_rounding(runs, cpu_reference, mode,
                                                rule):
    name = scenarios.key(mode, rule)
    states, results, _, _ = runs(mode, rule)
    reference = cpu_reference(mode)
    checked = 0
    for i, state in enumerate(states):
        for key, value in state.items():
            cpu = reference["%s/%d/%s" % (name, i, key)]
            assert close(value, cpu), (i, key, np.max(np.abs(value - cpu)))
            checked += 1
    assert checked > 0
    ours = np.concatenate([np.asarray(r, dtype=float) for r in results])
    np.testing.assert_allclose(ours, reference[name + "/results"],
                               rtol=TOLERANCE, atol=1e-6)


@pytest.mark.parametrize("mode,rule", CASES, ids=str)
def test_the_same_run_twice_gives_the_same_bits(runs, mode, rule):
    states, results, again, results_again = runs(mode, rule)
    assert results == results_again
    for one, two in zip(states, again):
        assert one.keys() == two.keys()
        for key in one:
            assert one[key].tobytes() == two[key].tobytes(), key


@pytest.mark.parametrize("mode", [("ids", "bucket")], ids=str)
def test_state_moves_between_cpu_and_device(compiled, cpu_reference, mode,
                                            tmp_path):
    """The CPU's state loads on the device bit for bit, and a state taken
    on the device loads on the CPU and comes back with the same bits."""
    scenario = compiled(mode)
    reference = cpu_reference(mode)
    name = scenarios.key(mode, "adagrad")
    acc = scenario.acc
    last = 2 * scenarios.WINDOWS - 1
    prefix = "%s/%d/" % (name, last)
    cpu_state = {k[len(prefix):]: v for k, v in reference.items()
                 if k.startswith(prefix)}
    assert cpu_state
    acc.load_state(cpu_state)
    for key, value in acc.state().items():
        assert value.tobytes() == cpu_state[key].tobytes(), key
    # a window accumulated on the device, not yet applied
    input_kind, batching = scenarios.batching_of(mode)
    for arrays in scenarios.windows(batching, input_kind)[0]:
        acc.accumulate(*arrays)
    device_state = acc.state()
    scenario.reset()
    sent = str(tmp_path / "device.npz")
    back = str(tmp_path / "back.npz")
    np.savez(sent, **device_state)
    subprocess.run([sys.executable, os.path.join(HERE, "reference.py"),
                    "--roundtrip", "-".join(mode), sent, back],
                   env=cpu_env(), check=True, timeout=900)
    with np.load(back) as returned:
        assert sorted(returned.keys()) == sorted(device_state)
        for key, value in device_state.items():
            assert returned[key].tobytes() == value.tobytes(), key
