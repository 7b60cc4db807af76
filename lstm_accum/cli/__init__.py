"""The ``lstm-accum`` command line: ``train``, ``eval`` and ``sample``.

Each subcommand has ``add_arguments(parser)`` and ``run(args)``. A user
error -- a missing file, a bad value, a damaged checkpoint or one of another
model -- prints one line on stderr and exits with status 2, without a
traceback, before anything is written.

Exit statuses: 0 success; 2 user error (bad argument, input file or
checkpoint); 3 training stopped by too many non-finite windows (the last good
checkpoint is kept); 130 interrupted by Ctrl-C (a checkpoint was saved;
continue with ``--resume``).
"""
import argparse
import math
import os
import sys

from ..exceptions import (CheckpointError, IncompatibleStateError, InputError,
                         LstmAccumError, NonFiniteError)

__all__ = ["main", "build_parser", "TrainCommand", "EvalCommand",
           "SampleCommand", "EXIT_USER_ERROR", "EXIT_NON_FINITE",
           "EXIT_INTERRUPTED"]

EXIT_USER_ERROR = 2
EXIT_NON_FINITE = 3
EXIT_INTERRUPTED = 130
PROG = "lstm-accum"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (and exit status 2)."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, "%s: error: %s (see %s --help)\n"
                  % (self.prog, message, self.prog))


# -- argument types: each rejects a bad value with a clear message ----------
def _int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                "expected an integer >= %d, got %r" % (minimum, text))
        if value < minimum:
            raise argparse.ArgumentTypeError(
                "expected an integer >= %d, got %r" % (minimum, text))
        return value
    parse.__name__ = "int>=%d" % minimum
    return parse


def _float_in(low, high=math.inf, low_open=False, what=None):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and value <= high and (
            value > low if low_open else value >= low)
        if not ok:
            raise argparse.ArgumentTypeError(
                "expected %s, got %r" % (what or "a finite number %s %g" % (
                    ">" if low_open else ">=", low), text))
        return value
    parse.__name__ = "number"
    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _one_line(err):
    text = " ".join(str(err).split())
    return text or type(err).__name__


# -- train --------------------------------------------------------------------
class TrainCommand(object):
    """``lstm-accum train CORPUS --out DIR [options]``."""

    name = "train"
    help = "train a language model on a text file (one sentence per line)"

    @staticmethod
    def add_arguments(parser):
        from ..training.trainer import OPTIMIZERS, TrainConfig
        d = TrainConfig()
        parser.add_argument("corpus", metavar="CORPUS",
                            help="UTF-8 text file, one sentence per line")
        parser.add_argument("--out", required=True, metavar="DIR",
                            help="run directory: checkpoint.npz, best.npz, "
                                 "metrics.jsonl, curves.png")
        g = parser.add_argument_group("data")
        g.add_argument("--vocab-size", type=_positive_int, default=d.vocab_size,
                       help="words kept besides <unk> <s> </s> (default "
                            "%(default)s)")
        g.add_argument("--valid-fraction", type=_float_in(
            0, 1, low_open=True, what="a number in (0, 1)"),
            default=d.valid_fraction,
            help="share of sentences held out for validation "
                 "(default %(default)s)")
        g.add_argument("--max-length", type=_positive_int,
                       default=d.max_length,
                       help="split longer sentences (words; default "
                            "%(default)s)")
        g.add_argument("--no-lowercase", dest="lowercase",
                       action="store_false", help="keep the text's case")
        g = parser.add_argument_group("model")
        g.add_argument("--units", type=_positive_int, default=d.units,
                       help="hidden units H (default %(default)s)")
        g.add_argument("--layers", type=_positive_int, default=d.layers,
                       help="stacked recurrent layers (default %(default)s)")
        g.add_argument("--cell", choices=("lstm", "gru"), default=d.cell,
                       help="recurrent cell (default %(default)s)")
        g.add_argument("--input", choices=("onehot", "ids"), default=d.input,
                       help="one-hot vectors as in the original question, or "
                            "word ids with a row lookup (same maths, "
                            "faster; default %(default)s)")
        g.add_argument("--impl", choices=("auto", "fused", "scan"),
                       default=d.impl,
                       help="LSTM layers as one fused C operation on the "
                            "CPU ('auto': when the configuration allows, "
                            "else Lasagne's scan; 'scan': always Lasagne's "
                            "scan; same numbers; default %(default)s)")
        g.add_argument("--dropout", type=_float_in(
            0, 0.999, what="a number in [0, 1)"), default=d.dropout,
            help="dropout after each recurrent layer (default %(default)s)")
        g = parser.add_argument_group("batching and gradient accumulation")
        g.add_argument("--batching", choices=("sample", "bucket", "mask"),
                       default=d.batching,
                       help="sample: one sentence per call (the question); "
                            "bucket: equal-length minibatches, no mask; "
                            "mask: padded minibatches (default %(default)s)")
        g.add_argument("--batch-size", type=_positive_int,
                       default=d.batch_size,
                       help="sentences per minibatch for bucket/mask "
                            "(default %(default)s)")
        x = g.add_mutually_exclusive_group()
        x.add_argument("--accumulate", type=_positive_int,
                       default=d.accumulate, metavar="N",
                       help="sentences per update (default %(default)s)")
        x.add_argument("--accumulate-tokens", type=_positive_int, default=0,
                       metavar="T",
                       help="instead: at least T target tokens per update")
        g.add_argument("--normalize", choices=("samples", "tokens", "sum"),
                       default=d.normalize,
                       help="divide the summed gradient by the window's "
                            "sentences or target tokens (default "
                            "%(default)s)")
        g.add_argument("--partial-window", choices=("apply", "drop", "carry"),
                       default=d.partial_window,
                       help="at epoch end, a window that is not full is "
                            "applied with its true count, dropped, or "
                            "carried into the next epoch (default "
                            "%(default)s)")
        g = parser.add_argument_group("optimizer and schedule")
        g.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                       help="Lasagne update rule (default %(default)s)")
        g.add_argument("--lr", type=_float_in(0, low_open=True,
                                              what="a finite number > 0"),
                       default=d.lr, help="learning rate (default "
                                          "%(default)s)")
        g.add_argument("--max-norm", type=_float_in(0), default=d.max_norm,
                       help="clip the averaged gradient to this total norm "
                            "(0: off; default %(default)s)")
        g.add_argument("--epochs", type=_positive_int, default=d.epochs,
                       help="passes over the training data (default "
                            "%(default)s)")
        g.add_argument("--max-updates", type=_nonneg_int,
                       default=d.max_updates,
                       help="stop after this many updates (0: no limit)")
        g.add_argument("--valid-every", type=_nonneg_int,
                       default=d.valid_every,
                       help="validate every this many updates, and at each "
                            "epoch end (0: epoch ends only; default "
                            "%(default)s)")
        g.add_argument("--patience", type=_nonneg_int, default=d.patience,
                       help="stop after this many validations without "
                            "improvement; each halves the learning rate "
                            "(0: never stop; default %(default)s)")
        g.add_argument("--lr-decay", type=_float_in(
            0, 1, low_open=True, what="a number in (0, 1]"),
            default=d.lr_decay, help="learning-rate factor when validation "
                                     "does not improve (default %(default)s)")
        g.add_argument("--max-bad-windows", type=_positive_int,
                       default=d.max_bad_windows,
                       help="stop after this many consecutive non-finite "
                            "windows (default %(default)s)")
        g = parser.add_argument_group("run")
        g.add_argument("--seed", type=_nonneg_int, default=d.seed,
                       help="weights, split, minibatch order (default "
                            "%(default)s)")
        g.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its "
                            "checkpoint.npz (bit-identical to not stopping)")
        g.add_argument("--float64", action="store_true",
                       help="build the model in float64 (default: Theano's "
                            "floatX, float32 unless THEANO_FLAGS says "
                            "otherwise)")
        g.add_argument("--distributed", choices=("auto", "on", "off"),
                       default=d.distributed,
                       help="data-parallel over MPI: auto (on when started "
                            "by 'mpirun -n K' with K > 1), on (needs "
                            "mpi4py + Open MPI), off (default %(default)s)")
        g.add_argument("--progress", choices=("auto", "on", "off"),
                       default=d.progress,
                       help="progress bar (auto: when stderr is a terminal)")

    @staticmethod
    def config_from_args(args):
        from ..training.trainer import TrainConfig
        return TrainConfig(
            corpus=args.corpus, out=args.out, vocab_size=args.vocab_size,
            valid_fraction=args.valid_fraction, lowercase=args.lowercase,
            max_length=args.max_length, units=args.units, layers=args.layers,
            cell=args.cell, input=args.input, dropout=args.dropout,
            impl=args.impl,
            batching=args.batching, batch_size=args.batch_size,
            accumulate=args.accumulate,
            accumulate_tokens=args.accumulate_tokens,
            normalize=args.normalize, partial_window=args.partial_window,
            optimizer=args.optimizer, lr=args.lr, max_norm=args.max_norm,
            max_bad_windows=args.max_bad_windows, epochs=args.epochs,
            max_updates=args.max_updates, valid_every=args.valid_every,
            lr_decay=args.lr_decay, patience=args.patience, seed=args.seed,
            float64=args.float64, resume=args.resume, progress=args.progress,
            distributed=args.distributed)

    @classmethod
    def run(cls, args):
        from ..backend.openblas import coretype_hint
        from ..training.trainer import Trainer, validate_config
        config = cls.config_from_args(args)
        validate_config(config)     # a user error stays one line
        hint = coretype_hint()
        if hint:
            # console_main did not select faster kernels itself (opted out,
            # under MPI, or run through main()): advice only.
            sys.stderr.write(PROG + ": note: " + hint + "\n")
        trainer = Trainer(config, log=_print)
        result = trainer.run()
        if result.status == "interrupted":
            return EXIT_INTERRUPTED
        if not trainer.dist.is_root:
            return 0
        _print("done (%s) after %d updates: validation perplexity %s "
               "(best %s), unigram baseline %s; checkpoint %s"
               % (result.status.replace("_", " "), result.updates,
                  _number(result.last_perplexity),
                  _number(result.best_perplexity),
                  _number(result.unigram_perplexity), result.checkpoint))
        return 0


def _number(value):
    return "n/a" if value is None else "%.2f" % value


def _print(line):
    print(line, flush=True)


def _check_file(path, what):
    if not os.path.isfile(path):
        raise InputError("%s %s does not exist (or is not a file)"
                         % (what, path))


# -- eval ---------------------------------------------------------------------
class EvalCommand(object):
    """``lstm-accum eval CHECKPOINT CORPUS``: perplexity and the baseline."""

    name = "eval"
    help = "perplexity of a trained model on a text file"

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("checkpoint", metavar="CHECKPOINT",
                            help="checkpoint.npz or best.npz of a run")
        parser.add_argument("corpus", metavar="CORPUS",
                            help="UTF-8 text file, one sentence per line")
        parser.add_argument("--batch-size", type=_positive_int, default=32,
                            help="sentences per scoring batch (default "
                                 "%(default)s)")

    @staticmethod
    def run(args):
        from ..data.corpus import encode_file
        from ..evaluation.scoring import score_corpus
        from ..training.trainer import load_model, unigram_baseline
        _check_file(args.checkpoint, "checkpoint")
        _check_file(args.corpus, "corpus")
        # Scoring one sentence per call is slow; equal-length minibatches
        # compute the same numbers (same parameters, no mask needed).
        model, vocab, saved = load_model(args.checkpoint, batching="bucket")
        config = saved.metadata["config"]
        corpus, stats = encode_file(args.corpus, vocab,
                                    lowercase=config["lowercase"],
                                    max_length=config["max_length"])
        score = score_corpus(model, corpus, batch_size=args.batch_size)
        baseline = unigram_baseline(saved.arrays["data/train_target_counts"],
                                    corpus)
        _print("%s: %d sentences, %d target tokens (</s> included), "
               "coverage %.1f%%" % (args.corpus, score.sentences,
                                     score.tokens, 100 * stats.coverage))
        _print("perplexity %.2f" % score.perplexity)
        _print("unigram baseline perplexity %.2f (add-one unigram of the "
               "training split)" % baseline)
        return 0


# -- sample -------------------------------------------------------------------
class SampleCommand(object):
    """``lstm-accum sample CHECKPOINT [-n 5 --temperature 1.0 --seed 0]``."""

    name = "sample"
    help = "sample sentences from a trained model"

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("checkpoint", metavar="CHECKPOINT",
                            help="checkpoint.npz or best.npz of a run")
        parser.add_argument("-n", "--num", type=_positive_int, default=5,
                            help="number of sentences (default %(default)s)")
        parser.add_argument("--temperature", type=_float_in(
            0, low_open=True, what="a finite number > 0"), default=1.0,
            help="< 1 sharper, > 1 flatter (default %(default)s)")
        parser.add_argument("--seed", type=_nonneg_int, default=0,
                            help="random seed (default %(default)s)")
        parser.add_argument("--max-length", type=_positive_int, default=30,
                            help="most words per sentence (default "
                                 "%(default)s)")
        parser.add_argument("--greedy", action="store_true",
                            help="take the most likely word at each step")

    @staticmethod
    def run(args):
        from ..evaluation.sampling import sample_sentences
        from ..training.trainer import load_model
        _check_file(args.checkpoint, "checkpoint")
        model, vocab, _ = load_model(args.checkpoint)
        sentences = sample_sentences(model, vocab, n=args.num,
                                     temperature=args.temperature,
                                     seed=args.seed,
                                     max_length=args.max_length,
                                     greedy=args.greedy)
        for words in sentences:
            _print(" ".join(words))
        return 0


COMMANDS = (TrainCommand, EvalCommand, SampleCommand)


def build_parser():
    """The argument parser of ``lstm-accum`` and its subcommands.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = _Parser(
        prog=PROG,
        description="Train, evaluate and sample word-level LSTM language "
                    "models whose gradients are accumulated on the device "
                    "over windows of sentences (Theano/Lasagne).",
        epilog="Exit status: 0 ok, 2 user error, 3 non-finite training "
               "stopped, 130 interrupted (resume with --resume).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=_Parser)
    sub.required = True
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help,
                           description=command.help)
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
        sys.stderr.write(prefix + "error: " + _one_line(err) + "\n")
        return EXIT_USER_ERROR
    except NonFiniteError as err:
        sys.stdout.flush()
        sys.stderr.write(prefix + "stopped: " + _one_line(err) + "\n")
        return EXIT_NON_FINITE
    except LstmAccumError as err:
        sys.stdout.flush()
        sys.stderr.write(prefix + "error: " + _one_line(err) + "\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stdout.flush()
        sys.stderr.write(prefix + "aborted\n")
        return EXIT_INTERRUPTED


def console_main():
    """Entry point of the ``lstm-accum`` script (and of ``python -m
    lstm_accum.cli``).

    First it may start the program again with faster OpenBLAS kernels
    (:func:`lstm_accum.blas.select_kernels`; ``LSTM_ACCUM_CORETYPE=off``
    opts out).  Under ``mpirun`` an error on one rank ends every rank (none
    is left waiting in a collective).
    """
    from ..backend.openblas import select_kernels
    try:
        # First thing: before anything changes directory or writes output.
        select_kernels(prog=PROG)
    except LstmAccumError as err:
        sys.stderr.write(PROG + ": error: " + _one_line(err) + "\n")
        sys.exit(EXIT_USER_ERROR)
    status = main()
    if status:
        from ..accumulation.distributed import exit_all
        exit_all(status)
    sys.exit(0)


if __name__ == "__main__":
    console_main()
