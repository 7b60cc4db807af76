"""The run's data: vocabulary, encoded corpus, its seeded train/validation
split and the unigram baseline of the validation sentences."""
from ..data import encode_file, prepare_corpus, split_corpus
from ..evaluation import unigram_perplexity
from ..exceptions import InputError

__all__ = ["RunData"]


class RunData(object):
    """Vocabulary, encoded train/validation corpora and their statistics.

    Parameters
    ----------
    config : TrainConfig
        Reads ``corpus``, ``vocab_size``, ``lowercase``, ``max_length``,
        ``valid_fraction``, ``valid_max`` and ``seed``.
    vocab : Vocabulary, optional
        The vocabulary to encode with (a resumed run's); default: count
        the ``vocab_size`` most frequent words of the corpus.

    Attributes
    ----------
    vocab : Vocabulary
    train, valid : EncodedCorpus
    read_stats : ReadStats
    unigram_perplexity : float
        Add-one unigram perplexity of ``valid`` under ``train``'s counts.

    Raises
    ------
    InputError
        A corpus with fewer than two sentences, or a ``valid_fraction``
        that leaves one side of the split empty.
    """

    def __init__(self, config, vocab=None):
        # The encoded corpus is cached beside the text file (keyed by its
        # content, the vocabulary and these settings), so the second run
        # of the same corpus skips reading and tokenizing it.
        read_kwargs = {"lowercase": config.lowercase,
                       "max_length": config.max_length}
        if vocab is None:
            vocab, corpus, self.read_stats = prepare_corpus(
                config.corpus, config.vocab_size, **read_kwargs)
        else:
            corpus, self.read_stats = encode_file(config.corpus, vocab,
                                                  **read_kwargs)
        self.vocab = vocab
        if len(corpus) < 2:
            raise InputError("corpus %s has %d sentence(s); at least 2 are "
                             "needed (one to train on, one to validate)"
                             % (config.corpus, len(corpus)))
        train_c, valid_c, _ = split_corpus(corpus, config.valid_fraction,
                                           0.0, config.seed,
                                           valid_max=config.valid_max)
        if len(train_c) == 0 or len(valid_c) == 0:
            raise InputError("valid_fraction=%r leaves %d training and %d "
                             "validation sentences of %d; choose a fraction "
                             "that leaves at least one of each"
                             % (config.valid_fraction, len(train_c),
                                len(valid_c), len(corpus)))
        self.train, self.valid = train_c, valid_c
        self.unigram_perplexity = float(unigram_perplexity(
            train_c, valid_c, len(vocab)))

    @property
    def coverage(self):
        """Share of the corpus's tokens inside the vocabulary."""
        return float(self.read_stats.coverage)
