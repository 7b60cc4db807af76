"""From a text file to a compact, cached array of word ids, in one pass.

:func:`encode_file` encodes a corpus file with a given vocabulary;
:func:`prepare_corpus` builds the vocabulary of a file and encodes it in
the same pass. Both read through :mod:`lstm_accum.data.reader` (the text
format, the tokenizer, sentence-length policies) and the cache of
:mod:`lstm_accum.data.cache`; the result is an
:class:`~lstm_accum.data.encoded.EncodedCorpus`. This module does not
import Theano.
"""
import numpy as np

from ..checks import is_int
from ..exceptions import InputError
from .cache import cache_load, cache_path, cache_save
from .encoded import EncodedCorpus, split_corpus
from .reader import (READ_CHUNK, TypeMapper, check_corpus_file,
                     reader_settings, stream_sentences, vocab_mapper)
from .vocabulary import Vocabulary

__all__ = ["encode_file", "prepare_corpus",
           # defined beside, used with these two
           "EncodedCorpus", "split_corpus"]


class _Growable(object):
    """An int32 array that grows by doubling with ``ndarray.resize``:
    large blocks are realloc'ed (mremap on Linux) rather than copied, so
    collecting n ids costs about 4n bytes, not 8n as with a final
    ``np.concatenate``."""

    def __init__(self, capacity=1 << 20):
        self.array = np.empty(capacity, dtype=np.int32)
        self.n = 0

    def extend(self, a):
        need = self.n + len(a)
        if need > len(self.array):
            self.array.resize(max(need, 2 * len(self.array)), refcheck=False)
        self.array[self.n:need] = a
        self.n = need

    def finish(self):
        self.array.resize(self.n, refcheck=False)
        out, self.array = self.array, None
        return out


def _collect(gen, on_block=None):
    ids, lengths = _Growable(), []
    for a, p in gen:
        ids.extend(a)
        lengths.append(p)
        if on_block is not None:
            on_block(a)
    ids = ids.finish()
    offsets = np.zeros(sum(len(p) for p in lengths) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths), out=offsets[1:])
    return ids, offsets


def encode_file(path, vocab, lowercase=False, split_punctuation=False,
                errors="strict", max_length=None, max_length_policy="split",
                cache_dir=None, use_cache=True):
    """Encode a corpus file with a given vocabulary, through the cache.

    Parameters
    ----------
    path : str or os.PathLike
        UTF-8 text, one sentence per line.
    vocab : Vocabulary
    lowercase, split_punctuation, errors, max_length, max_length_policy
        Reader settings, as for :func:`load_text`.
    cache_dir : str, optional
        Where encoded corpora are cached; default
        ``<path>.lstm_accum-cache`` beside the file.
    use_cache : bool
        False reads the text every time and writes no cache file.

    Returns
    -------
    corpus : EncodedCorpus
    stats : ReadStats
        ``stats.from_cache`` tells whether the text was read.

    Raises
    ------
    InputError
        See :func:`load_text`.

    Notes
    -----
    The cache key is the sha256 of the file's bytes, the vocabulary's
    :meth:`~Vocabulary.fingerprint` and every reader setting; a damaged or
    stale cache file is ignored and rewritten. If the cache cannot be
    written a ``RuntimeWarning`` is issued and the result returned anyway.
    """
    if not isinstance(vocab, Vocabulary):
        raise InputError("encode_file needs a Vocabulary, got %s"
                         % type(vocab).__name__)
    s = reader_settings(lowercase, split_punctuation, errors, max_length,
                  max_length_policy)
    name = check_corpus_file(path)
    if use_cache:
        cpath, key = cache_path(name, cache_dir, vocab.fingerprint(), s)
        hit = cache_load(cpath, key, name)
        if hit is not None:
            return hit[0], hit[1]
    gen, stats = stream_sentences(name, s, vocab_mapper(vocab))
    ids, offsets = _collect(gen)
    stats.unk_tokens = int(np.count_nonzero(ids == 0))
    corpus = EncodedCorpus(ids, offsets)
    if use_cache:
        cache_save(cpath, key, corpus, stats)
    return corpus, stats


def prepare_corpus(path, vocab_size, lowercase=False, split_punctuation=False,
                   errors="strict", max_length=None,
                   max_length_policy="split", cache_dir=None, use_cache=True):
    """Build the vocabulary of a corpus file and encode it, in one pass.

    Tokens are first numbered by type as they are read; the counts then give
    the vocabulary (:meth:`Vocabulary.build`) and one vectorised lookup maps
    the type numbers to vocabulary ids. The result is cached like
    :func:`encode_file`'s (key: file hash, `vocab_size`, reader settings).

    Parameters
    ----------
    path : str or os.PathLike
    vocab_size : int
        K, the number of words kept besides the three special tokens.
    lowercase, split_punctuation, errors, max_length
        As for :func:`encode_file`.
    max_length_policy, cache_dir, use_cache
        As for :func:`encode_file`.

    Returns
    -------
    vocab : Vocabulary
    corpus : EncodedCorpus
    stats : ReadStats

    Raises
    ------
    InputError
        `vocab_size` not a positive integer, or see :func:`load_text`.
    """
    if not is_int(vocab_size) or vocab_size < 1:
        raise InputError("vocab_size must be a positive integer (words kept "
                         "besides <unk>, <s>, </s>), got %r" % (vocab_size,))
    s = reader_settings(lowercase, split_punctuation, errors, max_length,
                  max_length_policy)
    name = check_corpus_file(path)
    if use_cache:
        cpath, key = cache_path(name, cache_dir,
                                 "vocab_size=%d" % vocab_size, s)
        hit = cache_load(cpath, key, name)
        if hit is not None and hit[2] is not None:
            return hit[2], hit[0], hit[1]
    mapper = TypeMapper()
    gen, stats = stream_sentences(name, s, mapper)
    counts = [np.zeros(0, dtype=np.int64)]

    def count(block_ids):   # per block: bincount casts its input to intp
        c = np.bincount(block_ids, minlength=len(mapper.index))
        c[:len(counts[0])] += counts[0]
        counts[0] = c
    ids, offsets = _collect(gen, count)
    vocab = Vocabulary.build(mapper.counts(counts[0]), vocab_size)
    remap = np.zeros(len(mapper.index), dtype=np.int32)
    get = vocab.index.get
    remap[:] = [get(w, 0) for w in mapper.index]
    del mapper
    for a in range(0, len(ids), READ_CHUNK):     # in place, in slices: no copy
        ids[a:a + READ_CHUNK] = remap[ids[a:a + READ_CHUNK]]
    stats.unk_tokens = int(np.count_nonzero(ids == 0))
    corpus = EncodedCorpus(ids, offsets)
    if use_cache:
        cache_save(cpath, key, corpus, stats, vocab)
    return vocab, corpus, stats
