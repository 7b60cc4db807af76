"""``python -m lstm_accum.cli``: the ``lstm-accum`` command."""
from .program import console_main

if __name__ == "__main__":
    console_main()
