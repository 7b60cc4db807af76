"""lstm_accum: gradient accumulation for Theano/Lasagne recurrent language models."""
import sys

from setuptools import find_packages, setup

if sys.version_info >= (3, 13) or sys.version_info < (3, 8):
    sys.exit("lstm_accum supports Python 3.11 and 3.12 (3.8-3.10 untested), "
             "not %d.%d: Theano 1.0.5's C code needs NumPy 1.x, which has no "
             "wheels for 3.13+." % sys.version_info[:2])

setup(
    name="lstm_accum",
    version="0.1.0",
    description=("Gradient accumulation on the device for Theano/Lasagne "
                 "LSTM language models on variable-length sentences"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["lstm_accum", "lstm_accum.*"]),
    # The C source read when Theano compiles our operations (ops) and the
    # scan loop's device fixes (backend).
    package_data={"lstm_accum.ops": ["c_code/*.c", "c_code/*.h"],
                  "lstm_accum.backend": ["c_code/*.c"]},
    python_requires=">=3.8,<3.13",
    install_requires=[
        # On Python 3.12 the Theano sdist needs one fix to build (run.sh
        # builds and caches that wheel; README, "Python 3.12").
        "Theano==1.0.5",
        "Lasagne==0.1",
        # NumPy < 1.24 has no 3.12 wheels; 1.26 is the last 1.x, whose C API
        # Theano's C code is written against.  lstm_accum.backend gives
        # NumPy >= 1.24 back the aliases Theano uses (np.complex, ...).
        # 1.24 is Debian 12's, which its pygpu (the GPU route) is built
        # against.
        "numpy>=1.21,<1.25; python_version < '3.12'",
        "numpy>=1.26,<1.27; python_version >= '3.12'",
        # 1.9.2+ has cp311 wheels; <1.11 for numpy<1.24; 1.11.2+ has cp312
        "scipy>=1.9.2,<1.11; python_version < '3.12'",
        "scipy>=1.11.2,<1.12; python_version >= '3.12'",
        # setuptools 70 dropped pkg_resources, which Lasagne 0.1 imports;
        # lstm_accum.backend also provides a fallback when it is missing.
        "setuptools<70",
        "tqdm>=4.60",
        # Intel's MKL runs the team's large matrix products on Intel CPUs,
        # and on any with LSTM_ACCUM_BLAS=mkl (ops/mkl.py: loaded
        # privately, sequential; NumPy keeps its OpenBLAS).
        "mkl>=2025; sys_platform == 'linux' and platform_machine == 'x86_64'",
        "matplotlib>=3.5,<3.9",   # 3.9 needs numpy>=1.23; keep the pin loose-safe
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.50", "psutil>=5.9"],
        "mpi": ["mpi4py>=3.1"],
        # ./run.sh docs: Sphinx with its own default theme (pins in
        # constraints.txt; Sphinx 8.2 supports Python 3.11 and 3.12)
        "docs": ["sphinx>=8.2,<9", "alabaster>=1.0"],
    },
    entry_points={"console_scripts": ["lstm-accum=lstm_accum.cli:console_main"]},
    classifiers=[
        "Programming Language :: Python :: 3.8",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
