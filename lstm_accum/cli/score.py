"""``lstm-accum score CHECKPOINT TEXT``: the log-probability of each line of
a text, of each word, or the perplexity in SRILM's terms.

The text is read with the checkpoint's reader settings (lowercasing,
maximum length), so its words are those the model was trained on; scoring
is :func:`~lstm_accum.evaluation.score_sentences`.  Every input line gives
one output line (``sentence-scores``, ``word-scores``), in input order.
"""
from ..data import read_lines
from ..evaluation import score_sentences
from ..evaluation.sentences import BATCH_SIZE, LOG_BASES, UNK_CONVENTIONS
from ..models import load_model
from .arguments import int_argument
from .common import add_checkpoint_argument, check_file, say

__all__ = ["NAME", "HELP", "OUTPUTS", "add_arguments", "run"]

NAME = "score"
HELP = ("log-probabilities of the sentences of a text file: perplexity "
        "(SRILM's figures), one total per line, or per word")

#: ``--output`` choices, the default first.
OUTPUTS = ("perplexity", "sentence-scores", "word-scores")


def add_arguments(parser):
    """Add CHECKPOINT, TEXT, ``--output``, ``--log-base``, ``--unk`` and
    ``--batch-size``."""
    add_checkpoint_argument(parser)
    parser.add_argument("text", metavar="TEXT",
                        help="UTF-8 text file, one sentence per line; an "
                             "empty line is a sentence of no words (scored "
                             "as <s> </s>). Lines of more words than the "
                             "checkpoint's max_length are scored as "
                             "training read them, in pieces of max_length "
                             "words, each from <s> to </s>, and their "
                             "pieces' scores summed on the line's one "
                             "output line: nothing is dropped")
    parser.add_argument("--output", choices=OUTPUTS, default=OUTPUTS[0],
                        help="perplexity: SRILM's summary (sentences, "
                             "words, OOVs, logprob, ppl, ppl1); "
                             "sentence-scores: one total log-probability "
                             "per input line; word-scores: one line per "
                             "input line of 'word logprob' pairs, </s> "
                             "included (default %(default)s)")
    parser.add_argument("--log-base", choices=sorted(LOG_BASES),
                        default="e",
                        help="base of the log-probabilities printed "
                             "(SRILM uses 10; default %(default)s)")
    parser.add_argument("--unk", choices=UNK_CONVENTIONS,
                        default=UNK_CONVENTIONS[0],
                        help="include: words outside the vocabulary are "
                             "scored as <unk> (eval's convention); exclude: "
                             "they are not scored and count as OOVs, as "
                             "SRILM does (shown as OOV in word-scores) "
                             "(default %(default)s)")
    parser.add_argument("--batch-size", type=int_argument(1),
                        default=BATCH_SIZE,
                        help="most sentences per compiled call (default "
                             "%(default)s)")


def run(args):
    """Score the text with the checkpoint's model and print; returns 0.

    Raises
    ------
    InputError
        A missing file, or a text that cannot be read (binary,
        undecodable, empty, all blank).
    CheckpointError, IncompatibleStateError
        A damaged or foreign checkpoint.
    """
    check_file(args.checkpoint, "checkpoint")
    model, vocab, saved = load_model(args.checkpoint, batching="bucket")
    config = saved.metadata["config"]
    lines = read_lines(args.text, lowercase=config["lowercase"])
    scores = score_sentences(
        model, [vocab.encode(tokens) for tokens in lines],
        word_scores=args.output == "word-scores", unk=args.unk,
        max_length=config["max_length"], batch_size=args.batch_size)
    scale = 1.0 / LOG_BASES[args.log_base]
    if args.output == "sentence-scores":
        for total in scores.log_probs:
            say("%.6f" % (total * scale))
    elif args.output == "word-scores":
        for tokens, values in zip(lines, scores.word_log_probs):
            say(" ".join(_word_pairs(tokens, values, config["max_length"],
                                     scale)))
    else:
        _print_summary(args, scores, lines, config["max_length"])
    return 0


def _word_pairs(tokens, values, max_length, scale):
    """``word logprob`` for each target of a line (a piece's ``</s>`` after
    its words); ``OOV`` for an ``<unk>`` target that is not scored."""
    words = []
    for i, token in enumerate(tokens):
        words.append(token)
        if max_length and (i + 1) % max_length == 0 and i + 1 < len(tokens):
            words.append("</s>")
    words.append("</s>")
    return ["%s %s" % (w, "OOV" if v != v else "%.6f" % (v * scale))
            for w, v in zip(words, values)]


def _print_summary(args, scores, lines, max_length):
    s = scores.summary(args.log_base)
    long_lines = sum(1 for tokens in lines
                     if max_length and len(tokens) > max_length)
    say("file %s: %d sentences, %d words, %d OOVs"
        % (args.text, s.sentences, s.words, s.oovs))
    say("%d zeroprobs, logprob= %.6f ppl= %.10g ppl1= %.10g"
        % (s.zeroprobs, s.logprob, s.ppl, s.ppl1))
    say("log base %s; --unk %s: %d words outside the vocabulary %s; %d "
        "lines, %d longer than max_length=%s scored in pieces (each a "
        "sentence)" % (s.log_base, s.unk, int(scores.unks.sum()),
                       "scored as <unk>" if s.unk == "include"
                       else "not scored (OOVs)", len(lines), long_lines,
                       max_length))
