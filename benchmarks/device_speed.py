"""Tokens/s of training on the device against the CPU path, side by side.

Run by ``./run.sh verify-device DEV`` after the device tests, or by hand
from the repository root in the device environment::

    THEANO_FLAGS=device=cuda0,floatX=float32 \\
        .venv-device/bin/python benchmarks/device_speed.py --device cuda0

Two worker processes of :mod:`paths` train the same model on the same
synthetic sentences (V=2000, equal-length batches of 32 with id input,
Adagrad on windows of 64 sentences): one on the device (Theano's gpuarray
backend: scan and the device's BLAS), one with ``device=cpu`` (the
library's fused C operations).  Windows are timed alternately; the table
gives the median tokens/s of each and their ratio.  On the OpenCL device
of the CPU (pocl) the "device" is this CPU through OpenCL: the figure is
information, not a target.
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import paths  # noqa: E402

PATH = "bucket-ids"


def measure(device, units, window, repeats, sentences):
    args = paths.parse_args(["--units", str(units), "--paths", PATH,
                             "--sentences", str(sentences)])
    flags = {"device": "device=%s,floatX=float32,deterministic=more" % device,
             "cpu": "device=cpu,floatX=float32"}
    workers = {name: paths.Worker(PATH, units, args,
                                  env={"THEANO_FLAGS": value})
               for name, value in flags.items()}
    rates = {name: [] for name in workers}
    try:
        for worker in workers.values():
            worker.window(window)          # warm-up, untimed
        for i in range(repeats):
            order = list(workers) if i % 2 == 0 else list(workers)[::-1]
            for name in order:
                result = workers[name].window(window)
                rates[name].append(result["tokens"] / result["seconds"])
    finally:
        for worker in workers.values():
            worker.close()
    compile_s = {name: w.info["compile_s"] for name, w in workers.items()}
    return rates, compile_s, workers["device"].info["describe"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", required=True,
                   help="the Theano device, e.g. cuda0 or opencl0:0")
    p.add_argument("--units", type=int, nargs="+", default=[256],
                   help="H values (default 256)")
    p.add_argument("--window", type=int, default=64,
                   help="sentences per update (default 64)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed windows per side (default 3)")
    p.add_argument("--sentences", type=int, default=2000)
    args = p.parse_args(argv)
    print("%-6s %14s %14s %8s %12s %12s" % (
        "H", "device tok/s", "cpu tok/s", "ratio", "compile dev",
        "compile cpu"))
    for units in args.units:
        rates, compile_s, describe = measure(args.device, units, args.window,
                                             args.repeats, args.sentences)
        dev, cpu = np.median(rates["device"]), np.median(rates["cpu"])
        print("%-6d %14.0f %14.0f %7.2fx %11.1fs %11.1fs" % (
            units, dev, cpu, dev / cpu, compile_s["device"],
            compile_s["cpu"]), flush=True)
    print("device worker: %s" % describe)


if __name__ == "__main__":
    main()
