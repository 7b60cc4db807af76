"""From a text file to a compact, cached array of word ids.

The text format
---------------
* One sentence per line. A line ends at a LF byte (``\\n``); a CR before it
  (Windows ``\\r\\n``) is whitespace and disappears in tokenization. A lone CR
  does *not* end a line (old Mac files read as one line). A final line
  without a newline counts; a final newline does not start an empty line.
* UTF-8, with an optional byte-order mark at the very start (skipped).
  Undecodable bytes: with ``errors='strict'`` (default) an
  :class:`~lstm_accum.exceptions.InputError` names the file and the line;
  with ``errors='replace'`` they become U+FFFD and every line where that
  happened is counted in ``ReadStats.replaced``.
* A file containing a NUL byte is refused as binary (UTF-16 text is refused
  the same way: convert it to UTF-8).
* A line with no tokens is *blank*: skipped and counted (``ReadStats.blank``).
* An empty file, or one that leaves no sentence, is an ``InputError``.

The tokenizer (:func:`tokenize`)
--------------------------------
1. if ``lowercase``: ``str.lower()`` (Unicode-aware: ``"ÄB" -> "äb"``);
2. if ``split_punctuation``: every character that is neither a word character
   (``\\w`` of Python's ``re``: Unicode letters, digits, underscore) nor
   whitespace becomes a token of its own (``"don't." -> "don ' t ."``);
3. ``str.split()``: tokens are the maximal runs of non-whitespace characters
   (Python's Unicode whitespace, which includes ``\\r``, ``\\t``, ``\\x0b``,
   ``\\x0c``, ``\\x1c``-``\\x1f``, ``\\x85``, U+2028, U+3000 ...).

Maximum sentence length
-----------------------
``max_length=None`` keeps lines of any length. Otherwise a line of n >
``max_length`` tokens is, by ``max_length_policy``:

* ``'split'`` (default): cut into consecutive sentences of ``max_length``
  tokens, the last one shorter (``ReadStats.split`` counts such lines; each
  piece counts in ``ReadStats.sentences``);
* ``'drop'``: skipped (``ReadStats.dropped`` lines, ``dropped_tokens``).

The file is read in chunks of 256 KiB and a very long line is processed
in pieces cut at ASCII blanks, so memory stays proportional to the longest
line's *ids* (4 bytes a token), not to its text.

Encoded corpora and the cache
-----------------------------
:class:`EncodedCorpus` is one flat int32 array of word ids (no boundary
tokens) plus int64 offsets. :func:`encode_file` and :func:`prepare_corpus`
save it as ``.npz`` in a cache directory (default ``<corpus>.lstm_accum-cache``
beside the file) under a key made of the sha256 of the file's bytes, the
vocabulary (or requested size) and every reader setting, so a second run with
the same inputs loads it instead of reading the text (``stats.from_cache``).

This module does not import Theano.
"""
import dataclasses
import hashlib
import json
import os
import re
import warnings
import zipfile
from itertools import chain, repeat

import numpy as np

from ..exceptions import InputError
from .vocabulary import Vocabulary, _atomic_open

__all__ = ["ReadStats", "EncodedCorpus", "tokenize", "load_text",
           "count_words", "encode_file", "prepare_corpus", "split_corpus",
           "file_sha256", "default_cache_dir", "MAX_LENGTH_POLICIES",
           "ERRORS_POLICIES"]

MAX_LENGTH_POLICIES = ("split", "drop")
ERRORS_POLICIES = ("strict", "replace")

_CHUNK = 1 << 18            # bytes read at a time
_CACHE_FORMAT = 1           # bump when the cached arrays change meaning
_BOM = b"\xef\xbb\xbf"
_PUNCT = re.compile(r"([^\w\s])")


def tokenize(line, lowercase=False, split_punctuation=False):
    """Split one line into tokens (see the module notes for the exact rule).

    Parameters
    ----------
    line : str
    lowercase : bool
        Apply ``str.lower()`` first.
    split_punctuation : bool
        Make every character that is neither ``\\w`` nor whitespace a token.

    Returns
    -------
    list of str

    Examples
    --------
    >>> tokenize("The cat's hat.\\r")
    ['The', "cat's", 'hat.']
    >>> tokenize("The cat's hat.", lowercase=True, split_punctuation=True)
    ['the', 'cat', "'", 's', 'hat', '.']
    """
    if lowercase:
        line = line.lower()
    if split_punctuation:
        line = _PUNCT.sub(r" \1 ", line)
    return line.split()


@dataclasses.dataclass
class ReadStats:
    """What reading a corpus file did, line by line.

    Every line is exactly one of: blank, dropped, or kept (``kept_lines``);
    a kept line gives one sentence, or several when split.

    Attributes
    ----------
    path : str
    lines : int
        Lines in the file.
    sentences : int
        Sentences produced (kept lines plus the extra pieces of split ones).
    blank : int
        Lines without any token (skipped).
    replaced : int
        Lines in which undecodable bytes were replaced (``errors='replace'``).
    split : int
        Lines longer than ``max_length`` cut into several sentences.
    dropped : int
        Lines longer than ``max_length`` skipped (policy ``'drop'``).
    dropped_tokens : int
        Tokens in the dropped lines.
    tokens : int
        Tokens in the sentences produced (boundaries not included).
    unk_tokens : int
        Tokens that encoded to ``<unk>`` (0 when no vocabulary was applied).
    from_cache : bool
        True when the result was loaded from the encoding cache.
    """
    path: str = ""
    lines: int = 0
    sentences: int = 0
    blank: int = 0
    replaced: int = 0
    split: int = 0
    dropped: int = 0
    dropped_tokens: int = 0
    tokens: int = 0
    unk_tokens: int = 0
    from_cache: bool = False

    @property
    def kept_lines(self):
        """Lines that gave at least one sentence."""
        return self.lines - self.blank - self.dropped

    @property
    def coverage(self):
        """Fraction of tokens inside the vocabulary (nan without tokens)."""
        if not self.tokens:
            return float("nan")
        return 1.0 - self.unk_tokens / self.tokens

    def as_dict(self):
        """The counters as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------
# Reader settings and validation

@dataclasses.dataclass(frozen=True)
class _Settings:
    lowercase: bool
    split_punctuation: bool
    errors: str
    max_length: object
    max_length_policy: str

    def as_dict(self):
        return dataclasses.asdict(self)


def _settings(lowercase, split_punctuation, errors, max_length,
              max_length_policy):
    if errors not in ERRORS_POLICIES:
        raise InputError("errors must be one of %s, got %r"
                         % (ERRORS_POLICIES, errors))
    if max_length_policy not in MAX_LENGTH_POLICIES:
        raise InputError("max_length_policy must be one of %s, got %r"
                         % (MAX_LENGTH_POLICIES, max_length_policy))
    if max_length is not None:
        if isinstance(max_length, (bool, np.bool_)) or not isinstance(
                max_length, (int, np.integer)) or max_length < 1:
            raise InputError("max_length must be a positive integer (tokens "
                             "per sentence) or None for no limit, got %r"
                             % (max_length,))
        max_length = int(max_length)
    return _Settings(bool(lowercase), bool(split_punctuation), errors,
                     max_length, max_length_policy)


def _check_file(path):
    name = os.fspath(path)
    if not os.path.exists(name):
        raise InputError("corpus file %s does not exist" % name)
    if not os.path.isfile(name):
        raise InputError("corpus %s is not a regular file (expected a UTF-8 "
                         "text file with one sentence per line)" % name)
    return name


# ----------------------------------------------------------------------
# The streaming reader

def _decoded_blocks(name, errors, stats, chunk_size):
    """Yield ``(text, continues, open_end)`` for the file's bytes.

    `text` holds whole lines joined by ``\\n``, except that its first line
    continues the previous block's last line when `continues`, and its last
    line goes on in the next block when `open_end` (a very long line is cut
    at ASCII blanks, which never occur inside a UTF-8 sequence or a token).
    """
    last_replaced = [0]

    def decode(block, lineno):
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError as e:
            if errors == "strict":
                line = lineno + block.count(b"\n", 0, e.start)
                raise InputError(
                    "%s, line %d: bytes that are not valid UTF-8 (0x%s); "
                    "convert the file to UTF-8, or pass errors='replace' to "
                    "replace them with U+FFFD (counted)"
                    % (name, line, block[e.start:e.end].hex())) from None
        for k, seg in enumerate(block.split(b"\n")):
            try:
                seg.decode("utf-8")
            except UnicodeDecodeError:
                if lineno + k != last_replaced[0]:
                    stats.replaced += 1
                    last_replaced[0] = lineno + k
        return block.decode("utf-8", "replace")

    try:
        f = open(name, "rb")
    except OSError as e:
        raise InputError("cannot read corpus file %s: %s"
                         % (name, e.strerror or e)) from None
    with f:
        pending = b""
        lineno = 1            # number of the first line in `pending`
        first = True
        cont = False
        while True:
            data = f.read(max(chunk_size, len(_BOM)) if first else chunk_size)
            if first:
                first = False
                if data.startswith(_BOM):
                    data = data[len(_BOM):]
            if not data:
                break
            nul = data.find(b"\0")
            if nul >= 0:
                line = (lineno + pending.count(b"\n")
                        + data.count(b"\n", 0, nul))
                raise InputError(
                    "%s looks like a binary file, not text: NUL byte on line "
                    "%d. Expected UTF-8 text with one sentence per line "
                    "(UTF-16 text also has NUL bytes: convert it to UTF-8)"
                    % (name, line))
            buf = pending + data if pending else data
            cut = buf.rfind(b"\n")
            if cut >= 0:
                block, pending = buf[:cut], buf[cut + 1:]
                yield decode(block, lineno), cont, False
                lineno += block.count(b"\n") + 1
                cont = False
            elif len(buf) >= chunk_size:
                blank = max(buf.rfind(b" "), buf.rfind(b"\t"))
                if blank > 0:
                    yield decode(buf[:blank], lineno), cont, True
                    cont = True
                    pending = buf[blank:]
                else:
                    pending = buf   # one giant token: it must be held anyway
            else:
                pending = buf
        if pending:
            yield decode(pending, lineno), cont, False


# str.split()'s whitespace among ASCII characters (\n included)
_ASCII_SPACE = np.array([chr(c).isspace() for c in range(256)]) & (
    np.arange(256) < 128)


def _ascii_line_lengths(block):
    """Tokens per line of an ASCII block, as ``str.split()`` counts them.

    A token starts at a non-space byte at the start or after a space byte;
    each start is assigned to its line by the newline positions. Same
    result as ``[len(l.split()) for l in text.split("\n")]``, vectorised.
    """
    u = np.frombuffer(block, dtype=np.uint8)
    space = _ASCII_SPACE[u]
    start = ~space
    start[1:] &= space[:-1]
    newlines = np.flatnonzero(u == 10)
    return np.bincount(np.searchsorted(newlines, np.flatnonzero(start)),
                       minlength=len(newlines) + 1).astype(np.int64)


def _apply_policy(lens, s, stats):
    """Sentence lengths from complete lines' token counts; token keep-mask.

    Returns ``(pieces, keep)``: int64 sentence lengths in order, and a bool
    mask over the lines' tokens (None when every token is kept).
    """
    stats.lines += len(lens)
    nonblank = lens > 0
    stats.blank += int(len(lens) - np.count_nonzero(nonblank))
    keep = None
    L = s.max_length
    if L is None:
        pieces = lens[nonblank]
    elif s.max_length_policy == "drop":
        long_ = lens > L
        if long_.any():
            stats.dropped += int(np.count_nonzero(long_))
            stats.dropped_tokens += int(lens[long_].sum())
            keep = np.repeat(~long_, lens)
        pieces = lens[nonblank & ~long_]
    else:
        npieces = -(-lens // L)
        if (npieces > 1).any():
            stats.split += int(np.count_nonzero(npieces > 1))
            pieces = np.full(int(npieces.sum()), L, dtype=np.int64)
            last = np.cumsum(npieces)[nonblank] - 1
            pieces[last] = lens[nonblank] - (npieces[nonblank] - 1) * L
        else:
            pieces = lens[nonblank]
    stats.sentences += len(pieces)
    stats.tokens += int(pieces.sum())
    return pieces, keep


def _stream(name, s, mapper, chunk_size=None):
    """Read `name` and yield ``(ids, sentence_lengths)`` block by block.

    `mapper` turns a list of tokens into a 1-D array (ids, or objects). The
    returned generator's ``stats`` are filled in as it runs; read them after
    it is exhausted. Raises InputError when the file holds no sentence.
    """
    stats = ReadStats(path=name)

    def gen():
        carry = None
        for text, cont, open_end in _decoded_blocks(
                name, s.errors, stats, chunk_size or _CHUNK):
            if s.lowercase:
                text = text.lower()
            if s.split_punctuation:
                text = _PUNCT.sub(r" \1 ", text)
            if text.isascii():          # O(1) for str; the common case
                flat = text.split()
                lens = _ascii_line_lengths(text.encode("ascii"))
            else:
                toks = [seg.split() for seg in text.split("\n")]
                lens = np.fromiter(map(len, toks), dtype=np.int64,
                                   count=len(toks))
                flat = list(chain.from_iterable(toks))
                del toks
            del text
            ids = mapper(flat)
            del flat
            # `carry`: the pieces of a long line whose end has not come
            # yet; joined once, when it does
            if cont and open_end and len(lens) == 1:
                carry.append(ids)
                continue
            if cont:
                lens[0] += sum(len(c) for c in carry)
                ids = np.concatenate(carry + [ids])
                carry = None
            if open_end:
                cut = len(ids) - int(lens[-1])
                carry = [ids[cut:].copy()]
                ids, lens = ids[:cut], lens[:-1]
            if len(lens):
                pieces, keep = _apply_policy(lens, s, stats)
                if keep is not None:
                    ids = ids[keep]
                if len(pieces):
                    yield ids, pieces
        if stats.sentences == 0:
            raise InputError(_no_sentence_message(name, stats, s))

    return gen(), stats


def _no_sentence_message(name, stats, s):
    if stats.lines == 0:
        return ("%s is empty: expected UTF-8 text with one sentence per line"
                % name)
    if stats.blank == stats.lines:
        return ("%s has no sentences: all of its %d lines are blank; "
                "expected one sentence per line" % (name, stats.lines))
    return ("%s has no sentences left: %d blank lines and %d lines longer "
            "than max_length=%s dropped; raise max_length or use "
            "max_length_policy='split'"
            % (name, stats.blank, stats.dropped, s.max_length))


def _vocab_mapper(vocab):
    get = vocab.index.get

    def mapper(flat):
        return np.fromiter(map(get, flat, repeat(0)), dtype=np.int32,
                           count=len(flat))
    return mapper


class _TypeMapper(object):
    """Map tokens to provisional type ids, numbered as they are first seen
    (new words of a block in sorted order, so the numbering is
    deterministic)."""

    def __init__(self):
        self.index = {}

    def __call__(self, flat):
        index = self.index
        ids = np.fromiter(map(index.get, flat, repeat(-1)), dtype=np.int32,
                          count=len(flat))
        missing = np.flatnonzero(ids < 0)
        if len(missing):      # new words: rare once the corpus is under way
            words = [flat[i] for i in missing.tolist()]
            for w in sorted(set(words)):
                index[w] = len(index)
            ids[missing] = [index[w] for w in words]
        return ids

    def counts(self, type_counts):
        """dict word -> count for the words with a non-zero count."""
        words = list(self.index)   # insertion order == type id order
        nz = np.flatnonzero(type_counts)
        return {words[i]: int(type_counts[i]) for i in nz.tolist()}


def _object_mapper(flat):
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr


# ----------------------------------------------------------------------
# Public readers

def load_text(path, lowercase=False, split_punctuation=False,
              errors="strict", max_length=None, max_length_policy="split"):
    """Read and tokenize a corpus file into lists of tokens.

    Parameters
    ----------
    path : str or os.PathLike
        UTF-8 text, one sentence per line (see the module notes).
    lowercase, split_punctuation : bool
        Tokenizer settings, see :func:`tokenize`.
    errors : {'strict', 'replace'}
        What undecodable bytes do: raise, or become U+FFFD (counted).
    max_length : int or None
        Longest sentence in tokens; None for no limit.
    max_length_policy : {'split', 'drop'}
        What happens to longer lines.

    Returns
    -------
    sentences : list of list of str
    stats : ReadStats

    Raises
    ------
    InputError
        Missing, empty, all-blank or binary file; undecodable bytes with
        ``errors='strict'``; bad settings.
    """
    s = _settings(lowercase, split_punctuation, errors, max_length,
                  max_length_policy)
    gen, stats = _stream(_check_file(path), s, _object_mapper)
    sentences = []
    for toks, pieces in gen:
        bounds = np.concatenate([[0], np.cumsum(pieces)]).tolist()
        toks = toks.tolist()
        sentences.extend(toks[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
    return sentences, stats


def count_words(path, lowercase=False, split_punctuation=False,
                errors="strict", max_length=None, max_length_policy="split"):
    """Count the tokens of the sentences of a corpus file (one pass).

    Parameters are those of :func:`load_text`; tokens of dropped lines are
    not counted.

    Returns
    -------
    counts : dict
        word -> count, ready for :meth:`Vocabulary.build`.
    stats : ReadStats
    """
    s = _settings(lowercase, split_punctuation, errors, max_length,
                  max_length_policy)
    mapper = _TypeMapper()
    gen, stats = _stream(_check_file(path), s, mapper)
    total = np.zeros(0, dtype=np.int64)
    for ids, _ in gen:
        c = np.bincount(ids, minlength=len(mapper.index))
        c[:len(total)] += total
        total = c
    return mapper.counts(total), stats


def file_sha256(path, chunk_size=_CHUNK):
    """The sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for data in iter(lambda: f.read(chunk_size), b""):
            h.update(data)
    return h.hexdigest()


def default_cache_dir(path):
    """``<path>.lstm_accum-cache``: the cache directory beside a corpus."""
    return os.fspath(path) + ".lstm_accum-cache"


def _cache_path(name, cache_dir, what, s):
    digest = file_sha256(name)
    key = hashlib.sha256(json.dumps(
        {"format": _CACHE_FORMAT, "sha256": digest, "vocabulary": what,
         "settings": s.as_dict()}, sort_keys=True).encode("utf-8")).hexdigest()
    if cache_dir is None:
        cache_dir = default_cache_dir(name)
    fname = "%s.%s.npz" % (os.path.basename(name), key[:32])
    return os.path.join(os.fspath(cache_dir), fname), key


def _cache_load(cpath, key, name):
    """Return the cached arrays, or None when missing, stale or damaged."""
    if not os.path.isfile(cpath):
        return None
    try:
        with np.load(cpath, allow_pickle=False) as z:
            if str(z["key"][()]) != key:
                return None
            data = {k: z[k] for k in z.files}
        corpus = EncodedCorpus(data["ids"], data["offsets"])
        fields = json.loads(str(data["stats"][()]))
        stats = ReadStats(**fields)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile,
            EOFError):
        return None
    stats.path, stats.from_cache = name, True
    vocab = None
    if "vocabulary" in data:
        try:
            vocab = Vocabulary.from_json(str(data["vocabulary"][()]))
        except InputError:
            return None
    return corpus, stats, vocab


def _cache_save(cpath, key, corpus, stats, vocab=None):
    """Write the cache file atomically; warn (do not fail) if impossible."""
    arrays = {"key": np.array(key), "ids": corpus.ids,
              "offsets": corpus.offsets,
              "stats": np.array(json.dumps(stats.as_dict()))}
    if vocab is not None:
        arrays["vocabulary"] = np.array(vocab.to_json())
    try:
        os.makedirs(os.path.dirname(cpath), exist_ok=True)
        with _atomic_open(cpath, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:
        warnings.warn("could not write the encoding cache %s (%s); the "
                      "corpus will be encoded again next time. Pass "
                      "cache_dir= a writable directory, or use_cache=False"
                      % (cpath, e.strerror or e), RuntimeWarning,
                      stacklevel=3)


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
    s = _settings(lowercase, split_punctuation, errors, max_length,
                  max_length_policy)
    name = _check_file(path)
    if use_cache:
        cpath, key = _cache_path(name, cache_dir, vocab.fingerprint(), s)
        hit = _cache_load(cpath, key, name)
        if hit is not None:
            return hit[0], hit[1]
    gen, stats = _stream(name, s, _vocab_mapper(vocab))
    ids, offsets = _collect(gen)
    stats.unk_tokens = int(np.count_nonzero(ids == 0))
    corpus = EncodedCorpus(ids, offsets)
    if use_cache:
        _cache_save(cpath, key, corpus, stats)
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
    lowercase, split_punctuation, errors, max_length, max_length_policy,
    cache_dir, use_cache
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
    if isinstance(vocab_size, (bool, np.bool_)) or not isinstance(
            vocab_size, (int, np.integer)) or vocab_size < 1:
        raise InputError("vocab_size must be a positive integer (words kept "
                         "besides <unk>, <s>, </s>), got %r" % (vocab_size,))
    s = _settings(lowercase, split_punctuation, errors, max_length,
                  max_length_policy)
    name = _check_file(path)
    if use_cache:
        cpath, key = _cache_path(name, cache_dir,
                                 "vocab_size=%d" % vocab_size, s)
        hit = _cache_load(cpath, key, name)
        if hit is not None and hit[2] is not None:
            return hit[2], hit[0], hit[1]
    mapper = _TypeMapper()
    gen, stats = _stream(name, s, mapper)
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
    for a in range(0, len(ids), _CHUNK):     # in place, in slices: no copy
        ids[a:a + _CHUNK] = remap[ids[a:a + _CHUNK]]
    stats.unk_tokens = int(np.count_nonzero(ids == 0))
    corpus = EncodedCorpus(ids, offsets)
    if use_cache:
        _cache_save(cpath, key, corpus, stats, vocab)
    return vocab, corpus, stats


# ----------------------------------------------------------------------
# The encoded corpus

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
        with _atomic_open(path, "wb") as f:
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


def split_corpus(corpus, valid_fraction, test_fraction=0.0, seed=0):
    """Split sentences at random into train, validation and test corpora.

    Parameters
    ----------
    corpus : EncodedCorpus
    valid_fraction, test_fraction : float
        Fractions of the sentences, each in [0, 1), summing to less than 1.
        A positive fraction gets at least one sentence.
    seed : int
        Seed of ``numpy.random.RandomState``; same seed, same split.

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

    n_valid, n_test = count(valid_fraction), count(test_fraction)
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
