"""``lstm-accum train CORPUS --out DIR [options]``: one training run.

The options are derived from the declarations of the run's settings
(:mod:`lstm_accum.training.settings`); the parsed values become a
:class:`~lstm_accum.training.TrainConfig`, which the trainer checks before
it creates anything, so a bad setting is one line and nothing is written.
With ``--resume``, the settings not given take the checkpoint's values.
"""
import sys

from ..backend import openblas
from ..training import (CLI_LAYOUT, SETTINGS, TrainConfig, Trainer,
                        settings_for_resume)
from .arguments import add_settings, given_settings
from .common import EXIT_INTERRUPTED, PROG, say

__all__ = ["NAME", "HELP", "add_arguments", "run"]

NAME = "train"
HELP = "train a language model on a text file (one sentence per line)"


def add_arguments(parser):
    """Add CORPUS, ``--out`` and the options of a run's settings (every
    setting that has a flag, grouped as :data:`CLI_LAYOUT` says)."""
    add_settings(parser, SETTINGS, CLI_LAYOUT)


def run(args):
    """Train with the settings parsed into ``args``; returns the exit status.

    Raises
    ------
    InputError, CheckpointError, IncompatibleStateError, NonFiniteError
        As :class:`~lstm_accum.training.Trainer` raises them (the caller
        prints them as one line).
    """
    values = {s.name: getattr(args, s.name) for s in SETTINGS
              if s.flag is not None}
    if values["resume"]:
        # Settings not given continue the checkpoint's run (not today's
        # defaults, which may have changed since it was written).
        values = settings_for_resume(values, given_settings(args))
    config = TrainConfig(**values)
    # The trainer validates the settings and the corpus first: a user error
    # stops here, before the hint and before anything is written.
    trainer = Trainer(config, log=say)
    hint = openblas.coretype_hint()
    if hint:
        # console_main did not select faster kernels itself (opted out,
        # under MPI, or run through main()): advice only.
        sys.stderr.write(PROG + ": note: " + hint + "\n")
    result = trainer.run()
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    if not trainer.dist.is_root:
        return 0
    say("done (%s) after %d updates: validation perplexity %s (best %s), "
        "unigram baseline %s; checkpoint %s"
        % (result.status.replace("_", " "), result.updates,
           _number(result.last_perplexity), _number(result.best_perplexity),
           _number(result.unigram_perplexity), result.checkpoint))
    return 0


def _number(value):
    return "n/a" if value is None else "%.2f" % value
