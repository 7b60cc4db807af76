"""Fuzz the corpus reader and the vocabulary with arbitrary bytes and text.

Every input either gives the documented InputError or exactly what an
independent, line-by-line reference reader gives: the same sentences, every
line accounted for in the stats, and a vocabulary that encodes them the same
way after a JSON round trip. Read sizes are fuzzed too, down to one byte, so
lines, UTF-8 sequences and long lines are cut at every possible place.
"""
import collections
import os
import re
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

import lstm_accum.data.corpus as C
import lstm_accum.data.reader as R
from lstm_accum.exceptions import InputError
from lstm_accum.data.vocabulary import Vocabulary

SETTINGS = settings(max_examples=250, deadline=None, derandomize=True,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow])

BOM = b"\xef\xbb\xbf"


def reference_read(data, lowercase, split_punctuation, errors, max_length,
                   policy):
    """The documented format, written plainly, one line at a time.

    Returns ('error', regex) or ('ok', sentences, stats-dict).
    """
    if data.startswith(BOM):
        data = data[3:]
    raw_lines = data.split(b"\n") if data else []
    if data.endswith(b"\n"):
        raw_lines.pop()
    stats = collections.Counter()
    sentences = []
    for k, raw in enumerate(raw_lines, 1):
        if b"\0" in raw:
            # a NUL is found when its read chunk arrives: an earlier bad
            # line may be reported first
            return ("error", r"looks like a binary file|not valid UTF-8")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            if errors == "strict":
                if b"\0" in data:
                    return ("error", r"binary|line %d: bytes that are not "
                                     r"valid UTF-8" % k)
                return ("error", r", line %d: bytes that are not valid "
                                 r"UTF-8" % k)
            line = raw.decode("utf-8", "replace")
            stats["replaced"] += 1
        if lowercase:
            line = line.lower()
        if split_punctuation:
            line = "".join(
                ch if (ch.isalnum() or ch == "_" or ch.isspace())
                else " " + ch + " " for ch in line)
        toks = line.split()
        stats["lines"] += 1
        if not toks:
            stats["blank"] += 1
        elif max_length is None or len(toks) <= max_length:
            sentences.append(toks)
        elif policy == "drop":
            stats["dropped"] += 1
            stats["dropped_tokens"] += len(toks)
        else:
            stats["split"] += 1
            sentences.extend(toks[i:i + max_length]
                             for i in range(0, len(toks), max_length))
    if not sentences:
        if not raw_lines:
            return ("error", r"is empty")
        if stats["blank"] == stats["lines"]:
            return ("error", r"has no sentences: all of its")
        return ("error", r"has no sentences left")
    stats["sentences"] = len(sentences)
    stats["tokens"] = sum(len(s) for s in sentences)
    return ("ok", sentences, stats)


pieces = st.one_of(
    st.binary(max_size=12),
    st.text(max_size=16).map(lambda t: t.encode("utf-8")),
    st.sampled_from([b"\n", b"\r\n", b" ", b"\t", b"  ", BOM, b"\xff",
                     b"\xc3", b"\x00", b"\r", b"\xc2\xa0", b"\xe3\x80\x80",
                     "\u03a3A\u03a3 ".encode("utf-8"), b"a,b.", b"x y z\n"]),
)
corpora = st.one_of(
    st.binary(max_size=120),
    st.lists(pieces, max_size=30).map(b"".join),
    st.lists(st.text(max_size=30), max_size=12).map(
        lambda lines: "\n".join(lines).encode("utf-8")),
)
reader_settings = st.fixed_dictionaries({
    "lowercase": st.booleans(),
    "split_punctuation": st.booleans(),
    "errors": st.sampled_from(["strict", "replace"]),
    "max_length": st.sampled_from([None, 1, 2, 5]),
    "max_length_policy": st.sampled_from(["split", "drop"]),
})


def run_with_chunk(chunk, fn, *args, **kwargs):
    old = R.READ_CHUNK
    R.READ_CHUNK = chunk
    try:
        return fn(*args, **kwargs)
    finally:
        R.READ_CHUNK = old


def check_stats(stats, expected):
    for field in ("lines", "blank", "replaced", "split", "dropped",
                  "dropped_tokens", "sentences", "tokens"):
        assert getattr(stats, field) == expected[field], field
    # every line is blank, dropped or kept
    assert stats.blank + stats.dropped + stats.kept_lines == stats.lines


@SETTINGS
@given(data=corpora, kw=reader_settings,
       chunk=st.sampled_from([1, 2, 3, 7, 64, 1 << 18]))
def test_reader_matches_reference_or_raises_documented_error(data, kw, chunk):
    expected = reference_read(data, kw["lowercase"], kw["split_punctuation"],
                              kw["errors"], kw["max_length"],
                              kw["max_length_policy"])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fuzz.txt")
        with open(path, "wb") as f:
            f.write(data)
        try:
            sentences, stats = run_with_chunk(chunk, R.load_text, path, **kw)
        except InputError as e:
            assert expected[0] == "error", (str(e), expected)
            assert re.search(expected[1], str(e)), (str(e), expected[1])
            assert "fuzz.txt" in str(e)
            return
        assert expected[0] == "ok", expected
        assert sentences == expected[1]
        check_stats(stats, expected[2])


@SETTINGS
@given(data=corpora, kw=reader_settings, size=st.integers(1, 6),
       chunk=st.sampled_from([1, 5, 1 << 18]))
def test_vocabulary_and_encoding_agree_with_reference(data, kw, size, chunk):
    expected = reference_read(data, kw["lowercase"], kw["split_punctuation"],
                              kw["errors"], kw["max_length"],
                              kw["max_length_policy"])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fuzz.txt")
        with open(path, "wb") as f:
            f.write(data)
        try:
            vocab, corpus, stats = run_with_chunk(
                chunk, C.prepare_corpus, path, size, use_cache=False, **kw)
        except InputError as e:
            assert expected[0] == "error", (str(e), expected)
            assert re.search(expected[1], str(e))
            return
        assert expected[0] == "ok", expected
        sentences = expected[1]
        check_stats(stats, expected[2])
        # the vocabulary: the `size` most frequent, ties by code point
        counts = collections.Counter(t for s in sentences for t in s)
        for special in ("<unk>", "<s>", "</s>"):
            counts.pop(special, None)
        ranked = sorted(counts, key=lambda w: (-counts[w], w))[:size]
        assert list(vocab.words) == ranked
        assert len(vocab) == len(ranked) + 3
        assert vocab.counts == tuple(counts[w] for w in ranked)
        # the encoding: word ids, offsets, unknown-token count
        index = {w: i + 3 for i, w in enumerate(ranked)}
        ids = [index.get(t, 0) for s in sentences for t in s]
        assert corpus.ids.tolist() == ids
        assert corpus.lengths.tolist() == [len(s) for s in sentences]
        assert stats.unk_tokens == ids.count(0)
        # JSON round trip keeps every id
        vpath = os.path.join(d, "vocab.json")
        vocab.save(vpath)
        again = Vocabulary.load(vpath)
        assert again == vocab
        enc = np.concatenate([again.encode(s) for s in sentences])
        assert enc.tolist() == ids
        assert again.decode([i for i in ids if i]) == \
            [t for s in sentences for t in s if t in index]


@SETTINGS
@given(counts=st.dictionaries(st.text(min_size=1, max_size=8),
                              st.integers(0, 5), max_size=30),
       size=st.integers(1, 40))
def test_vocabulary_build_properties(counts, size):
    vocab = Vocabulary.build(counts, size)
    eligible = {w: c for w, c in counts.items()
                if c > 0 and w not in ("<unk>", "<s>", "</s>")}
    assert len(vocab) == min(size, len(eligible)) + 3
    keys = [(-eligible[w], w) for w in vocab.words]
    assert keys == sorted(keys)
    # nothing left out ranks above the last word kept
    if vocab.words:
        last = keys[-1]
        assert all((-c, w) > last for w, c in eligible.items()
                   if w not in vocab.index)
    for w in vocab.words:
        assert vocab.word(vocab.id(w)) == w
    again = Vocabulary.from_json(vocab.to_json())
    assert again == vocab and again.counts == vocab.counts
