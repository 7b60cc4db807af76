"""``lstm-accum eval CHECKPOINT CORPUS``: perplexity and the unigram baseline.

Uses the saved model and the training split's saved target counts only; it
does not import the training loop.
"""
from ..data import encode_file
from ..evaluation import score_corpus, unigram_perplexity_from_counts
from ..models import load_model
from .arguments import int_argument
from .common import add_checkpoint_argument, check_file, say

__all__ = ["NAME", "HELP", "add_arguments", "run"]

NAME = "eval"
HELP = "perplexity of a trained model on a text file"


def add_arguments(parser):
    """Add CHECKPOINT, CORPUS and ``--batch-size``."""
    add_checkpoint_argument(parser)
    parser.add_argument("corpus", metavar="CORPUS",
                        help="UTF-8 text file, one sentence per line")
    parser.add_argument("--batch-size", type=int_argument(1), default=32,
                        help="sentences per scoring batch (default "
                             "%(default)s)")


def run(args):
    """Score the corpus with the checkpoint's model; returns 0.

    Raises
    ------
    InputError
        A missing file, or a corpus that cannot be read.
    CheckpointError, IncompatibleStateError
        A damaged or foreign checkpoint.
    """
    check_file(args.checkpoint, "checkpoint")
    check_file(args.corpus, "corpus")
    # Scoring one sentence per call is slow; equal-length minibatches
    # compute the same numbers (same parameters, no mask needed).
    model, vocab, saved = load_model(args.checkpoint, batching="bucket")
    config = saved.metadata["config"]
    corpus, stats = encode_file(args.corpus, vocab,
                                lowercase=config["lowercase"],
                                max_length=config["max_length"])
    score = score_corpus(model, corpus, batch_size=args.batch_size)
    baseline = unigram_perplexity_from_counts(
        saved.arrays["data/train_target_counts"], corpus)
    say("%s: %d sentences, %d target tokens (</s> included), coverage "
        "%.1f%%" % (args.corpus, score.sentences, score.tokens,
                    100 * stats.coverage))
    say("perplexity %.2f" % score.perplexity)
    say("unigram baseline perplexity %.2f (add-one unigram of the training "
        "split)" % baseline)
    return 0
