"""The ``lstm-accum`` program: its parser, :func:`main` and the console
entry point.

Each subcommand is a module with ``add_arguments(parser)`` and
``run(args)`` (:mod:`.train`, :mod:`.evaluate`, :mod:`.score`,
:mod:`.sample`). A user
error -- a missing file, a bad value, a damaged checkpoint or one of another
model -- prints one line on stderr and exits with status 2, without a
traceback, before anything is written.

Exit statuses: 0 success; 2 user error (bad argument, input file or
checkpoint); 3 training stopped by too many non-finite windows (the last good
checkpoint is kept); 130 interrupted by Ctrl-C (a checkpoint was saved;
continue with ``--resume``); 141 the reader of the output went away
(``lstm-accum score ... | head``), as for a command killed by SIGPIPE.
"""
import argparse
import os
import sys

from ..accumulation import exit_all
from ..backend import openblas
from ..exceptions import (CheckpointError, IncompatibleStateError, InputError,
                          LstmAccumError, NonFiniteError)
from . import evaluate, sample, score, train
from .common import (EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_NON_FINITE,
                     EXIT_USER_ERROR, PROG, one_line)

__all__ = ["main", "console_main", "build_parser", "COMMANDS"]

#: The subcommands, in ``--help`` order.
COMMANDS = (train, evaluate, score, sample)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (and exit status 2)."""

    def error(self, message):
        """Print ``prog: error: message (see prog --help)`` and exit 2."""
        self.exit(EXIT_USER_ERROR, "%s: error: %s (see %s --help)\n"
                  % (self.prog, message, self.prog))


def build_parser():
    """The argument parser of ``lstm-accum`` and its subcommands.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = OneLineParser(
        prog=PROG,
        description="Train, evaluate, score with and sample word-level LSTM language "
                    "models whose gradients are accumulated on the device "
                    "over windows of sentences (Theano/Lasagne).",
        epilog="Exit status: 0 ok, 2 user error, 3 non-finite training "
               "stopped, 130 interrupted (resume with --resume), 141 "
               "output pipe closed.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=OneLineParser)
    sub.required = True
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP,
                           description=command.HELP)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv=None):
    """Run ``lstm-accum``; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0, or one of :data:`EXIT_USER_ERROR`, :data:`EXIT_NON_FINITE`,
        :data:`EXIT_INTERRUPTED`.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else \
            EXIT_USER_ERROR
    prefix = "%s %s: " % (PROG, args.command)
    try:
        return args.run(args)
    except (InputError, CheckpointError, IncompatibleStateError) as err:
        sys.stdout.flush()
        sys.stderr.write(prefix + "error: " + one_line(err) + "\n")
        return EXIT_USER_ERROR
    except NonFiniteError as err:
        sys.stdout.flush()
        sys.stderr.write(prefix + "stopped: " + one_line(err) + "\n")
        return EXIT_NON_FINITE
    except LstmAccumError as err:
        sys.stdout.flush()
        sys.stderr.write(prefix + "error: " + one_line(err) + "\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stdout.flush()
        sys.stderr.write(prefix + "aborted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Stop quietly; stdout goes to /dev/null so that Python's final
        # flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def console_main():
    """Entry point of the ``lstm-accum`` script (and of ``python -m
    lstm_accum.cli``).

    First it may start the program again with faster OpenBLAS kernels
    (:func:`lstm_accum.backend.openblas.select_kernels`;
    ``LSTM_ACCUM_CORETYPE=off`` opts out).  Under ``mpirun`` an error on one
    rank ends every rank (none is left waiting in a collective).
    """
    try:
        # First thing: before anything changes directory or writes output.
        openblas.select_kernels(prog=PROG)
    except LstmAccumError as err:
        sys.stderr.write(PROG + ": error: " + one_line(err) + "\n")
        sys.exit(EXIT_USER_ERROR)
    status = main()
    if status:
        exit_all(status)
    sys.exit(0)
