"""lstm_accum: gradient accumulation for Theano/Lasagne recurrent language models."""
import sys

from setuptools import find_packages, setup

if sys.version_info >= (3, 12) or sys.version_info < (3, 8):
    sys.exit("lstm_accum supports Python 3.8 to 3.11: Theano 1.0.5 needs "
             "'distutils', which Python 3.12 removed. Use python3.11.")

setup(
    name="lstm_accum",
    version="0.1.0",
    description=("Gradient accumulation on the device for Theano/Lasagne "
                 "LSTM language models on variable-length sentences"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["lstm_accum", "lstm_accum.*"]),
    python_requires=">=3.8,<3.12",
    install_requires=[
        "Theano==1.0.5",
        "Lasagne==0.1",
        "numpy>=1.21,<1.24",
        "scipy>=1.9.2,<1.11",     # 1.9.2+ has cp311 wheels; <1.11 for numpy<1.24
        # setuptools 70 dropped pkg_resources, which Lasagne 0.1 imports;
        # lstm_accum.backend also provides a fallback when it is missing.
        "setuptools<70",
        "tqdm>=4.60",
        "matplotlib>=3.5,<3.9",   # 3.9 needs numpy>=1.23; keep the pin loose-safe
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.50", "psutil>=5.9"],
        "mpi": ["mpi4py>=3.1"],
    },
    entry_points={"console_scripts": ["lstm-accum=lstm_accum.cli:console_main"]},
    classifiers=[
        "Programming Language :: Python :: 3.8",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
