"""Reading a corpus file: UTF-8 lines to tokens, streamed in chunks.

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

This module does not import Theano.
"""
import dataclasses
import os
import re
from itertools import chain, repeat

import numpy as np

from ..checks import is_int
from ..exceptions import InputError

__all__ = ["ReadStats", "ReaderSettings", "tokenize", "load_text",
           "count_words", "reader_settings", "check_corpus_file",
           "stream_sentences", "read_lines", "vocab_mapper", "TypeMapper",
           "MAX_LENGTH_POLICIES", "ERRORS_POLICIES", "READ_CHUNK"]

MAX_LENGTH_POLICIES = ("split", "drop")
ERRORS_POLICIES = ("strict", "replace")

READ_CHUNK = 1 << 18        # bytes read at a time
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
class ReaderSettings:
    lowercase: bool
    split_punctuation: bool
    errors: str
    max_length: object
    max_length_policy: str

    def as_dict(self):
        return dataclasses.asdict(self)


def reader_settings(lowercase, split_punctuation, errors, max_length,
                    max_length_policy):
    """Check the reader's settings and return them as one value.

    Raises
    ------
    InputError
        An unknown ``errors`` or ``max_length_policy``, or a ``max_length``
        that is not a positive integer or None.
    """
    if errors not in ERRORS_POLICIES:
        raise InputError("errors must be one of %s, got %r"
                         % (ERRORS_POLICIES, errors))
    if max_length_policy not in MAX_LENGTH_POLICIES:
        raise InputError("max_length_policy must be one of %s, got %r"
                         % (MAX_LENGTH_POLICIES, max_length_policy))
    if max_length is not None:
        if not is_int(max_length) or max_length < 1:
            raise InputError("max_length must be a positive integer (tokens "
                             "per sentence) or None for no limit, got %r"
                             % (max_length,))
        max_length = int(max_length)
    return ReaderSettings(bool(lowercase), bool(split_punctuation), errors,
                          max_length, max_length_policy)


def check_corpus_file(path):
    """Return ``path`` as a string if it names a regular file.

    Raises
    ------
    InputError
        When it does not exist or is not a regular file.
    """
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


def stream_sentences(name, s, mapper, chunk_size=None):
    """Read `name` and yield ``(ids, sentence_lengths)`` block by block.

    `mapper` turns a list of tokens into a 1-D array (ids, or objects). The
    returned generator's ``stats`` are filled in as it runs; read them after
    it is exhausted. Raises InputError when the file holds no sentence.
    """
    stats = ReadStats(path=name)

    def gen():
        carry = None
        for text, cont, open_end in _decoded_blocks(
                name, s.errors, stats, chunk_size or READ_CHUNK):
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


def read_lines(path, lowercase=False, split_punctuation=False,
               errors="strict"):
    """The tokens of every line of a text file, blank lines kept.

    For scoring, where each input line needs its output line: the file is
    decoded and checked as :func:`load_text` does it (the same errors for a
    missing, binary, undecodable, empty or all-blank file), but a blank line
    is kept as an empty sentence and no line is cut or dropped.

    Parameters
    ----------
    path : str or os.PathLike
    lowercase, split_punctuation, errors
        As for :func:`load_text`.

    Returns
    -------
    list of list of str
        One list of tokens per line, in file order.

    Raises
    ------
    InputError
        As :func:`load_text`, or when every line is blank.
    """
    s = reader_settings(lowercase, split_punctuation, errors, None, "split")
    name = check_corpus_file(path)
    stats = ReadStats(path=name)
    lines, partial = [], ""
    for text, cont, open_end in _decoded_blocks(name, s.errors, stats,
                                                READ_CHUNK):
        segments = text.split("\n")
        if cont:    # a long line cut at a blank: the text joins as it was
            segments[0] = partial + segments[0]
        partial = segments.pop() if open_end else ""
        lines.extend(tokenize(seg, s.lowercase, s.split_punctuation)
                     for seg in segments)
    stats.lines = len(lines)
    stats.blank = sum(1 for tokens in lines if not tokens)
    if stats.blank == stats.lines:
        raise InputError(_no_sentence_message(name, stats, s))
    return lines


def vocab_mapper(vocab):
    """A mapper for :func:`stream_sentences`: tokens to ``vocab`` ids (0 if
    unknown)."""
    get = vocab.index.get

    def mapper(flat):
        return np.fromiter(map(get, flat, repeat(0)), dtype=np.int32,
                           count=len(flat))
    return mapper


class TypeMapper(object):
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
    s = reader_settings(lowercase, split_punctuation, errors, max_length,
                  max_length_policy)
    gen, stats = stream_sentences(check_corpus_file(path), s, _object_mapper)
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
    s = reader_settings(lowercase, split_punctuation, errors, max_length,
                  max_length_policy)
    mapper = TypeMapper()
    gen, stats = stream_sentences(check_corpus_file(path), s, mapper)
    total = np.zeros(0, dtype=np.int64)
    for ids, _ in gen:
        c = np.bincount(ids, minlength=len(mapper.index))
        c[:len(total)] += total
        total = c
    return mapper.counts(total), stats
