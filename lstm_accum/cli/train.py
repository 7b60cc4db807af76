"""``lstm-accum train CORPUS --out DIR [options]``: one training run.

The options are the run's settings (:class:`~lstm_accum.training.TrainConfig`
declares each one's type, default, help and range), placed in ``--help`` by
:data:`LAYOUT`; the parsed values become a ``TrainConfig``, which the
trainer checks before it creates anything, so a bad setting is one line and
nothing is written. With ``--resume``, the settings not given take the
checkpoint's values.
"""
import sys

from ..backend import openblas
from ..training import SETTINGS, TrainConfig, Trainer, settings_for_resume
from .arguments import Flag, add_settings, given_settings
from .common import EXIT_INTERRUPTED, PROG, say

__all__ = ["NAME", "HELP", "LAYOUT", "NOT_ON_COMMAND_LINE", "add_arguments",
           "run"]

NAME = "train"
HELP = "train a language model on a text file (one sentence per line)"

#: Where the settings appear in ``--help``: (group title, or None for the
#: command's own arguments; the flags in order, a tuple of flags being a
#: set of mutually exclusive options).
LAYOUT = (
    (None, (Flag("corpus", metavar="CORPUS"),
            Flag("--out", metavar="DIR", required=True))),
    ("data", (Flag("--vocab-size"), Flag("--valid-fraction"),
              Flag("--valid-max", metavar="N"), Flag("--max-length"),
              Flag("--no-lowercase", setting="lowercase",
                   action="store_false", help="keep the text's case"))),
    ("model", (Flag("--units"), Flag("--layers"), Flag("--cell"),
               Flag("--input"), Flag("--impl"), Flag("--dropout"))),
    ("batching and gradient accumulation",
     (Flag("--batching"), Flag("--batch-size"),
      (Flag("--accumulate", metavar="N"),
       Flag("--accumulate-tokens", metavar="T")),
      Flag("--normalize"), Flag("--partial-window"))),
    ("optimizer and schedule",
     (Flag("--optimizer"), Flag("--lr"), Flag("--warmup", metavar="N"),
      Flag("--max-norm"), Flag("--epochs"), Flag("--max-updates"),
      Flag("--valid-every"), Flag("--patience"), Flag("--lr-decay"),
      Flag("--max-bad-windows"))),
    ("run", (Flag("--seed"), Flag("--resume", action="store_true"),
             Flag("--float64", action="store_true"), Flag("--distributed"),
             Flag("--progress"))),
)

#: The settings only the Python API sets.
NOT_ON_COMMAND_LINE = ("grad_clipping", "min_improvement", "log_every")


def add_arguments(parser):
    """Add CORPUS, ``--out`` and the options of a run's settings (every
    setting but :data:`NOT_ON_COMMAND_LINE`, placed as :data:`LAYOUT`
    says)."""
    add_settings(parser, SETTINGS, LAYOUT, NOT_ON_COMMAND_LINE)


def run(args):
    """Train with the settings parsed into ``args``; returns the exit status.

    Raises
    ------
    InputError, CheckpointError, IncompatibleStateError, NonFiniteError
        As :class:`~lstm_accum.training.Trainer` raises them (the caller
        prints them as one line).
    """
    values = {s.name: getattr(args, s.name) for s in SETTINGS
              if s.name not in NOT_ON_COMMAND_LINE}
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
