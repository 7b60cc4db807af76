"""``lstm-accum sample CHECKPOINT [-n 5 --temperature 1.0 --seed 0]``:
sentences drawn from a trained model (it does not import the training
loop)."""
from ..evaluation import sample_sentences
from ..models import load_model
from .arguments import int_argument, number_argument
from .common import add_checkpoint_argument, check_file, say

__all__ = ["NAME", "HELP", "add_arguments", "run"]

NAME = "sample"
HELP = "sample sentences from a trained model"


def add_arguments(parser):
    """Add CHECKPOINT and the sampling options."""
    add_checkpoint_argument(parser)
    parser.add_argument("-n", "--num", type=int_argument(1), default=5,
                        help="number of sentences (default %(default)s)")
    parser.add_argument("--temperature", type=number_argument(
        lambda value: value > 0, "a finite number > 0"), default=1.0,
        help="< 1 sharper, > 1 flatter (default %(default)s)")
    parser.add_argument("--seed", type=int_argument(0), default=0,
                        help="random seed (default %(default)s)")
    parser.add_argument("--max-length", type=int_argument(1), default=30,
                        help="most words per sentence (default %(default)s)")
    parser.add_argument("--greedy", action="store_true",
                        help="take the most likely word at each step")


def run(args):
    """Print ``args.num`` sentences, one per line; returns 0.

    Raises
    ------
    InputError
        A missing checkpoint.
    CheckpointError, IncompatibleStateError
        A damaged or foreign checkpoint.
    """
    check_file(args.checkpoint, "checkpoint")
    model, vocab, _ = load_model(args.checkpoint)
    sentences = sample_sentences(model, vocab, n=args.num,
                                 temperature=args.temperature,
                                 seed=args.seed, max_length=args.max_length,
                                 greedy=args.greedy)
    for words in sentences:
        say(" ".join(words))
    return 0
