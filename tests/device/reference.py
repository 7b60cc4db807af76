"""Run every scenario of ``scenarios.py`` on the CPU and save the states.

Usage: ``THEANO_FLAGS=device=cpu python reference.py OUT.npz [MODE...]``
(modes as ``scenarios.key`` names them: ``question``, ``ids-bucket``...;
default all).  The device tests run it in a subprocess per mode (Theano's
device is fixed per process).

``reference.py --roundtrip MODE IN.npz OUT.npz`` loads an accumulator's
state (taken on the device) into that mode's accumulator on the CPU and
saves the state it gives back.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import scenarios  # noqa: E402


def check_cpu():
    import lstm_accum.backend as backend
    if backend.theano.config.device != "cpu":
        sys.exit("reference.py must run with device=cpu, not %s"
                 % backend.theano.config.device)


def parse_mode(name):
    return name if name == "question" else tuple(name.split("-"))


def main(path, modes=()):
    check_cpu()
    arrays = {}
    for mode in [parse_mode(m) for m in modes] or scenarios.all_modes():
        scenario = scenarios.Scenario(mode)
        for rule in scenarios.RULES:
            states, results = scenario.run(rule)
            name = scenarios.key(mode, rule)
            for i, state in enumerate(states):
                for k, v in state.items():
                    arrays["%s/%d/%s" % (name, i, k)] = v
            arrays["%s/results" % name] = np.concatenate(
                [np.asarray(r, dtype=float) for r in results])
    tmp = path + ".partial.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def roundtrip(mode, source, target):
    check_cpu()
    acc = scenarios.Scenario(parse_mode(mode)).acc
    with np.load(source) as state:
        acc.load_state(dict(state))
    np.savez(target, **acc.state())


if __name__ == "__main__":
    if sys.argv[1] == "--roundtrip":
        roundtrip(*sys.argv[2:5])
    else:
        main(sys.argv[1], sys.argv[2:])
