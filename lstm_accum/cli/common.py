"""What every ``lstm-accum`` subcommand shares: the program's name, its exit
statuses, printing a line, checking that an input file exists, and the
CHECKPOINT argument of eval, score and sample."""
import os

from ..exceptions import InputError

__all__ = ["PROG", "EXIT_USER_ERROR", "EXIT_NON_FINITE", "EXIT_INTERRUPTED",
           "EXIT_BROKEN_PIPE",
           "say", "add_checkpoint_argument", "check_file", "one_line"]

PROG = "lstm-accum"
#: A bad argument, input file or checkpoint (one line on stderr).
EXIT_USER_ERROR = 2
#: Training stopped by too many non-finite windows (last good checkpoint kept).
EXIT_NON_FINITE = 3
#: Interrupted by Ctrl-C (a checkpoint was saved; continue with --resume).
EXIT_INTERRUPTED = 130
#: The reader of stdout went away (``... | head``): 128 + SIGPIPE, as a
#: shell reports a command that signal ended.
EXIT_BROKEN_PIPE = 141


def say(line):
    """Print one line of a command's output on stdout, at once."""
    print(line, flush=True)


def add_checkpoint_argument(parser):
    """Add the positional CHECKPOINT (``args.checkpoint``) of eval, score
    and sample."""
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="checkpoint.npz or best.npz of a run")


def check_file(path, what):
    """Refuse a path that is not an existing file.

    Parameters
    ----------
    path : str
    what : str
        What the file is, for the message (``'checkpoint'``).

    Raises
    ------
    InputError
        ``"checkpoint x.npz does not exist (or is not a file)"``.
    """
    if not os.path.isfile(path):
        raise InputError("%s %s does not exist (or is not a file)"
                         % (what, path))


def one_line(err):
    """An exception's message on one line (its type's name if it is empty)."""
    text = " ".join(str(err).split())
    return text or type(err).__name__
