"""The encoded corpus: sentences of word ids in one flat array, and its split.

:class:`EncodedCorpus` is one flat int32 array of word ids (no boundary
tokens) plus int64 offsets; :func:`split_corpus` draws the seeded
train/validation/test split. This module does not import Theano.
"""
import zipfile

import numpy as np

from ..checks import check_int
from ..exceptions import InputError
from ..files import atomic_open

__all__ = ["EncodedCorpus", "split_corpus"]


class EncodedCorpus(object):
    """Sentences of word ids, stored as one flat array plus offsets.

    Sentence ``i`` is ``ids[offsets[i]:offsets[i + 1]]``: word ids only, no
    ``<s>``/``</s>`` (the iterators add them).

    Parameters
    ----------
    ids : array_like of int
        Non-negative word ids; stored as int32.
    offsets : array_like of int
        Non-decreasing, ``offsets[0] == 0``, ``offsets[-1] == len(ids)``;
        length ``n_sentences + 1``; stored as int64.

    Raises
    ------
    InputError
        If the arrays do not satisfy the above.
    """

    def __init__(self, ids, offsets):
        ids = np.asarray(ids)
        offsets = np.asarray(offsets)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype,
                                                            np.integer)):
            raise InputError("ids must be a 1-D integer array, got dtype %s "
                             "shape %s" % (ids.dtype, ids.shape))
        if offsets.ndim != 1 or len(offsets) < 1 or not np.issubdtype(
                offsets.dtype, np.integer):
            raise InputError("offsets must be a 1-D integer array of length "
                             "n_sentences + 1, got dtype %s shape %s"
                             % (offsets.dtype, offsets.shape))
        if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(np.int32).max):
            raise InputError("word ids must be in [0, 2**31), got range "
                             "[%d, %d]" % (ids.min(), ids.max()))
        if offsets[0] != 0 or offsets[-1] != len(ids) or (
                np.diff(offsets) < 0).any():
            raise InputError("offsets must start at 0, never decrease and "
                             "end at len(ids)=%d; got %s .. %s"
                             % (len(ids), offsets[0], offsets[-1]))
        self.ids = ids.astype(np.int32, copy=False)
        self.offsets = offsets.astype(np.int64, copy=False)

    def __len__(self):
        return len(self.offsets) - 1

    def __iter__(self):
        for i in range(len(self)):
            yield self.sentence(i)

    def __repr__(self):
        return "EncodedCorpus(%d sentences, %d tokens)" % (len(self),
                                                           self.num_tokens)

    def sentence(self, i):
        """The ids of sentence `i` (a read-only view, int32)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError("sentence %d out of range for %d sentences"
                             % (i, n))
        i = int(i) % n
        view = self.ids[self.offsets[i]:self.offsets[i + 1]]
        view.flags.writeable = False
        return view

    @property
    def lengths(self):
        """Words per sentence (int64), boundaries not included."""
        return np.diff(self.offsets)

    @property
    def num_tokens(self):
        """Word tokens in all sentences, boundaries not included."""
        return int(len(self.ids))

    @property
    def num_targets(self):
        """Target tokens per epoch: words plus one ``</s>`` per sentence."""
        return self.num_tokens + len(self)

    @property
    def max_id(self):
        """The largest id (-1 for an empty corpus)."""
        return int(self.ids.max()) if self.ids.size else -1

    def subset(self, indices):
        """A new corpus with sentences `indices`, in that order."""
        indices = np.asarray(indices, dtype=np.int64).ravel()
        lengths = self.lengths
        if indices.size and (indices.min() < -len(self)
                             or indices.max() >= len(self)):
            raise InputError("sentence indices out of range for %d sentences"
                             % len(self))
        sel = lengths[indices]
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(sel, out=offsets[1:])
        if len(indices):
            starts = self.offsets[:-1][indices]
            # token positions: start of each sentence + 0..len-1
            pos = np.repeat(starts - offsets[:-1], sel) + np.arange(
                offsets[-1])
            ids = self.ids[pos]
        else:
            ids = np.zeros(0, dtype=np.int32)
        return EncodedCorpus(ids, offsets)

    def save(self, path):
        """Write ``ids`` and ``offsets`` to an ``.npz`` file, atomically."""
        with atomic_open(path, "wb") as f:
            np.savez(f, ids=self.ids, offsets=self.offsets)

    @classmethod
    def load(cls, path):
        """Read a corpus written by :meth:`save` (never unpickles).

        Raises
        ------
        InputError
            If the file is missing or not such a corpus.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["ids"], z["offsets"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile,
                EOFError) as e:
            if isinstance(e, InputError):
                raise InputError("%s: %s" % (path, e)) from None
            raise InputError("cannot read encoded corpus %s: %s"
                             % (path, e)) from None


def split_corpus(corpus, valid_fraction, test_fraction=0.0, seed=0,
                 valid_max=0):
    """Split sentences at random into train, validation and test corpora.

    Parameters
    ----------
    corpus : EncodedCorpus
    valid_fraction, test_fraction : float
        Fractions of the sentences, each in [0, 1), summing to less than 1.
        A positive fraction gets at least one sentence.
    seed : int
        Seed of ``numpy.random.RandomState``; same seed, same split.
    valid_max : int
        If > 0, at most this many validation sentences (the rest of the
        fraction trains); a cap that does not bind changes nothing, and
        a binding one keeps a prefix of the same random draw.

    Returns
    -------
    train, valid, test : EncodedCorpus
        Each keeps the sentences in their original file order.

    Raises
    ------
    InputError
        Bad fractions, or too few sentences to give train a sentence.
    """
    for nm, frac in (("valid_fraction", valid_fraction),
                     ("test_fraction", test_fraction)):
        if not isinstance(frac, (int, float, np.floating, np.integer)) or \
                isinstance(frac, bool) or not 0 <= frac < 1:
            raise InputError("%s must be a number in [0, 1), got %r"
                             % (nm, frac))
    if valid_fraction + test_fraction >= 1:
        raise InputError("valid_fraction + test_fraction must be below 1, "
                         "got %g + %g" % (valid_fraction, test_fraction))
    n = len(corpus)

    def count(frac):
        k = int(round(frac * n))
        return max(k, 1) if frac > 0 else k

    valid_max = check_int("valid_max", valid_max, 0)
    n_valid, n_test = count(valid_fraction), count(test_fraction)
    if valid_max:
        n_valid = min(n_valid, valid_max)
    if n - n_valid - n_test < 1:
        raise InputError("cannot split %d sentences into train/valid/test "
                         "with fractions %g/%g: train would be empty; use a "
                         "larger corpus or smaller fractions"
                         % (n, valid_fraction, test_fraction))
    perm = np.random.RandomState(seed).permutation(n)
    valid = np.sort(perm[:n_valid])
    test = np.sort(perm[n_valid:n_valid + n_test])
    train = np.sort(perm[n_valid + n_test:])
    return corpus.subset(train), corpus.subset(valid), corpus.subset(test)
