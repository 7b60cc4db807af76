"""The word vocabulary: special tokens, the K most frequent words, JSON files.

Ids are laid out as::

    0 <unk>    1 <s>    2 </s>    3 .. K+2   the K most frequent words

so ``len(vocab) == K + 3`` is the ``vocab_size`` (V) of the model. Words are
ranked by decreasing count; ties are broken by the words themselves in
increasing Unicode code-point order (Python's ``str`` ordering), so the same
counts always give the same vocabulary.

The three special strings are reserved. When they occur in a text they are
not ranked as words, and :meth:`Vocabulary.encode` maps every one of them to
``<unk>`` (0): a PTB-style ``<unk>`` in a corpus means "unknown" anyway, and a
literal ``<s>`` or ``</s>`` inside a sentence must not look like a boundary,
which only the iterators add.

This module does not import Theano.
"""
import collections
import hashlib
import json
import os
from collections.abc import Mapping

import numpy as np

from ..exceptions import InputError
from ..files import atomic_open

__all__ = ["Vocabulary", "UNK", "BOS", "EOS", "UNK_ID", "BOS_ID", "EOS_ID",
           "SPECIAL_TOKENS"]

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIAL_TOKENS = (UNK, BOS, EOS)

_FORMAT = "lstm_accum.vocabulary"
_VERSION = 1


def _check_size(size):
    if isinstance(size, (bool, np.bool_)) or not isinstance(
            size, (int, np.integer)):
        raise InputError(
            "vocabulary size must be a positive integer (the number of words "
            "besides <unk>, <s>, </s>), got %r" % (size,))
    if size < 1:
        raise InputError(
            "vocabulary size must be at least 1, got %d: it is the number of "
            "most frequent words kept besides <unk>, <s> and </s>; pass e.g. "
            "2000" % size)
    return int(size)


def _count(counts_or_tokens):
    """Return a dict word -> count from a mapping or an iterable of tokens."""
    if isinstance(counts_or_tokens, Mapping):
        counts = {}
        for word, count in counts_or_tokens.items():
            if not isinstance(word, str):
                raise InputError("vocabulary counts must be keyed by str, got "
                                 "key %r of type %s"
                                 % (word, type(word).__name__))
            if isinstance(count, (bool, np.bool_)) or not isinstance(
                    count, (int, np.integer)) or count < 0:
                raise InputError("the count of %r must be a non-negative "
                                 "integer, got %r" % (word, count))
            counts[word] = int(count)
        return counts
    if isinstance(counts_or_tokens, (str, bytes)):
        raise InputError(
            "Vocabulary.build expects a mapping word -> count or an iterable "
            "of tokens (or of token lists), got a single %s; split it into "
            "tokens first" % type(counts_or_tokens).__name__)
    def tokens():
        for item in counts_or_tokens:
            if isinstance(item, str):
                yield item
            elif isinstance(item, (list, tuple)):
                for t in item:
                    if not isinstance(t, str):
                        raise InputError("tokens must be str, got %r" % (t,))
                yield from item
            else:
                raise InputError(
                    "Vocabulary.build expects str tokens or lists of str "
                    "tokens, got an item of type %s" % type(item).__name__)
    counter = collections.Counter()
    counter.update(tokens())      # counted in C
    return dict(counter)


class Vocabulary(object):
    """Map words to int ids and back.

    Build one with :meth:`build` (from counts or tokens) or :meth:`load`
    (from a JSON file written by :meth:`save`).

    Parameters
    ----------
    words : sequence of str
        The ranked words, most frequent first; they get ids 3, 4, ...
    counts : sequence of int, optional
        Their counts in the text the vocabulary was built from (kept for
        :meth:`coverage` reports and saved with the words).
    requested_size : int, optional
        The size asked for when building; may exceed ``len(words)``.

    Attributes
    ----------
    words : tuple of str
        The ranked words (without the special tokens).
    requested_size : int
        The size that was asked for (``len(words)`` if not given).

    Raises
    ------
    InputError
        If a word is repeated, is a special token or is not a non-empty str.
    """

    def __init__(self, words, counts=None, requested_size=None):
        words = tuple(words)
        for w in words:
            if not isinstance(w, str) or not w:
                raise InputError("vocabulary words must be non-empty str, got "
                                 "%r" % (w,))
            if w in SPECIAL_TOKENS:
                raise InputError("%r is a reserved special token and cannot "
                                 "be a ranked vocabulary word" % w)
        self.words = words
        self._itos = SPECIAL_TOKENS + words
        # Used by encode(): only ranked words; every other string -> <unk>.
        self.index = {w: i + 3 for i, w in enumerate(words)}
        if len(self.index) != len(words):
            dup = [w for w, c in collections.Counter(words).items() if c > 1]
            raise InputError("vocabulary words must be unique; repeated: %r"
                             % dup[:5])
        if counts is not None:
            counts = tuple(int(c) for c in counts)
            if len(counts) != len(words):
                raise InputError("got %d counts for %d words"
                                 % (len(counts), len(words)))
        self.counts = counts
        self.requested_size = (len(words) if requested_size is None
                               else int(requested_size))

    # ------------------------------------------------------------------
    @classmethod
    def build(cls, counts_or_tokens, size):
        """Keep the `size` most frequent words.

        Parameters
        ----------
        counts_or_tokens : mapping or iterable
            A mapping word -> count (e.g. a ``collections.Counter``), or an
            iterable of str tokens, or an iterable of token lists.
        size : int
            K, the number of words to keep besides ``<unk>``, ``<s>`` and
            ``</s>``; the model's V is then ``K + 3``.

        Returns
        -------
        Vocabulary

        Raises
        ------
        InputError
            If `size` is not a positive integer, or a count is negative.

        Notes
        -----
        Ranking: decreasing count, ties by increasing code point order of the
        word. Words with count 0 and the special tokens are never ranked.
        When `size` exceeds the number of distinct words, every word is kept
        and the vocabulary is smaller than asked: ``len(vocab)`` is then
        ``distinct + 3`` and ``vocab.requested_size`` records `size`; nothing
        is padded and no error is raised (use ``len(vocab)`` as V).

        Examples
        --------
        >>> v = Vocabulary.build({"b": 2, "a": 2, "c": 5}, size=2)
        >>> v.words
        ('c', 'a')
        >>> len(v)
        5
        """
        size = _check_size(size)
        counts = _count(counts_or_tokens)
        ranked = sorted(((c, w) for w, c in counts.items()
                         if c > 0 and w not in SPECIAL_TOKENS),
                        key=lambda cw: (-cw[0], cw[1]))[:size]
        return cls([w for _, w in ranked], [c for c, _ in ranked],
                   requested_size=size)

    # ------------------------------------------------------------------
    def __len__(self):
        return len(self._itos)

    def __contains__(self, word):
        return word in self.index or word in SPECIAL_TOKENS

    def __eq__(self, other):
        """Equal when they map the same ids to the same words (counts and
        requested size are not compared)."""
        return (isinstance(other, Vocabulary) and self.words == other.words)

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __repr__(self):
        return "Vocabulary(%d words + 3 specials, requested %d)" % (
            len(self.words), self.requested_size)

    @property
    def size(self):
        """The number of ranked words K (``len(self) - 3``)."""
        return len(self.words)

    def word(self, i):
        """Return the string of id `i` (specials included).

        Raises
        ------
        InputError
            If `i` is not in ``range(len(self))``.
        """
        if isinstance(i, (bool, np.bool_)) or not isinstance(
                i, (int, np.integer)) or not 0 <= i < len(self._itos):
            raise InputError("word id must be an integer in [0, %d), got %r"
                             % (len(self._itos), i))
        return self._itos[int(i)]

    def id(self, word):
        """Return the id of `word`: a ranked word or a special token.

        Any other string gives ``UNK_ID`` (0).
        """
        if word in SPECIAL_TOKENS:
            return SPECIAL_TOKENS.index(word)
        return self.index.get(word, UNK_ID)

    def encode(self, tokens):
        """Map tokens to an int32 array of ids; unknown words -> 0.

        The special strings ``<unk>``, ``<s>``, ``</s>`` inside `tokens` also
        map to 0 (see the module notes): boundaries are added by the
        iterators, never read from text.

        Parameters
        ----------
        tokens : iterable of str

        Returns
        -------
        numpy.ndarray of int32, shape (len(tokens),)
        """
        tokens = list(tokens)
        get = self.index.get
        return np.fromiter((get(t, UNK_ID) for t in tokens), dtype=np.int32,
                           count=len(tokens))

    def decode(self, ids):
        """Map ids back to strings (special tokens included).

        Raises
        ------
        InputError
            If an id is outside ``[0, len(self))``.
        """
        ids = np.asarray(ids)
        if ids.size and (not np.issubdtype(ids.dtype, np.integer)
                         or ids.min() < 0 or ids.max() >= len(self._itos)):
            raise InputError("ids to decode must be integers in [0, %d); got "
                             "dtype %s, range [%s, %s]"
                             % (len(self._itos), ids.dtype, ids.min(),
                                ids.max()))
        return [self._itos[i] for i in ids.ravel().tolist()]

    def coverage(self, counts):
        """Fraction of the tokens counted in `counts` that are ranked words.

        Parameters
        ----------
        counts : mapping or iterable
            word -> count, or tokens, or token lists (as for :meth:`build`).

        Returns
        -------
        float
            Tokens that encode to an id >= 3 divided by all tokens; special
            strings and out-of-vocabulary words count as not covered.
            ``nan`` when there are no tokens.
        """
        counts = _count(counts)
        total = sum(counts.values())
        if total == 0:
            return float("nan")
        known = sum(c for w, c in counts.items() if w in self.index)
        return known / total

    # ------------------------------------------------------------------
    def fingerprint(self):
        """A sha256 hex digest of the id -> word mapping (cache keys,
        checkpoint compatibility checks)."""
        data = json.dumps(self._itos, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(data).hexdigest()

    def to_dict(self):
        """Plain-data form (JSON-serialisable) of the vocabulary."""
        return {"format": _FORMAT, "version": _VERSION,
                "specials": list(SPECIAL_TOKENS), "words": list(self.words),
                "counts": None if self.counts is None else list(self.counts),
                "requested_size": self.requested_size}

    @classmethod
    def from_dict(cls, data, source="vocabulary data"):
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        InputError
            If `data` is not a vocabulary of this format (naming `source`).
        """
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise InputError("%s is not an lstm_accum vocabulary (expected a "
                             "JSON object with format=%r)" % (source, _FORMAT))
        if data.get("version") != _VERSION:
            raise InputError("%s has vocabulary format version %r; this "
                             "lstm_accum reads version %d"
                             % (source, data.get("version"), _VERSION))
        if list(data.get("specials", ())) != list(SPECIAL_TOKENS):
            raise InputError("%s has special tokens %r, expected %r"
                             % (source, data.get("specials"),
                                list(SPECIAL_TOKENS)))
        words = data.get("words")
        if not isinstance(words, list):
            raise InputError("%s: 'words' must be a list" % source)
        try:
            return cls(words, data.get("counts"),
                       data.get("requested_size"))
        except (TypeError, ValueError) as e:
            raise InputError("%s: %s" % (source, e)) from None

    def to_json(self):
        """The JSON text written by :meth:`save`."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=0)

    @classmethod
    def from_json(cls, text, source="vocabulary JSON"):
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InputError("%s is not valid JSON: %s"
                             % (source, e)) from None
        return cls.from_dict(data, source)

    def save(self, path):
        """Write the vocabulary as UTF-8 JSON, atomically.

        The file is written to a temporary file in the same directory, synced
        and renamed over `path`, so an interrupted save leaves any previous
        file intact.
        """
        with atomic_open(path, "wb") as f:
            f.write(self.to_json().encode("utf-8"))

    @classmethod
    def load(cls, path):
        """Read a vocabulary written by :meth:`save`.

        Raises
        ------
        InputError
            If the file is missing, not UTF-8 JSON, or not a vocabulary.
        """
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise InputError("cannot read vocabulary file %s: %s"
                             % (path, e.strerror or e)) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("vocabulary file %s is not UTF-8 JSON" % path) \
                from None
        return cls.from_json(text, source=os.fspath(path))
