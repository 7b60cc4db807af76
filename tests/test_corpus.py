"""Reading, tokenizing, encoding, caching and splitting corpus files."""
import os
import tracemalloc
import warnings

import numpy as np
import pytest

import lstm_accum.data.reader as R
from lstm_accum.data import (EncodedCorpus, count_words, encode_file,
                             load_text, prepare_corpus, split_corpus,
                             tokenize)
from lstm_accum.exceptions import InputError
from lstm_accum.data.vocabulary import Vocabulary


def write(tmp_path, data, name="corpus.txt"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


# ----------------------------------------------------------------------
# tokenizer

def test_tokenizer_documented_rules():
    assert tokenize("  The cat's\that.\r") == ["The", "cat's", "hat."]
    assert tokenize("The CAT's hat.", lowercase=True) == \
        ["the", "cat's", "hat."]
    assert tokenize("don't stop-now, ok?!", split_punctuation=True) == \
        ["don", "'", "t", "stop", "-", "now", ",", "ok", "?", "!"]
    # \w is Unicode letters, digits and underscore; other symbols split
    assert tokenize("Ärger_1 über 3€+x", lowercase=True,
                    split_punctuation=True) == \
        ["ärger_1", "über", "3", "€", "+", "x"]
    # Unicode whitespace (no-break space, ideographic space) separates
    assert tokenize("a\u00a0b\u3000c") == ["a", "b", "c"]
    assert tokenize(" \t\r ") == []


# ----------------------------------------------------------------------
# reading

def test_blank_lines_and_windows_line_endings(tmp_path):
    path = write(tmp_path, b"The cat sat .\r\n\r\n  \t \r\nthe dog\r\n"
                           b"\r\nlast line")
    sents, st = load_text(path)
    assert sents == [["The", "cat", "sat", "."], ["the", "dog"],
                     ["last", "line"]]
    assert (st.lines, st.blank, st.sentences, st.tokens) == (6, 3, 3, 8)
    assert st.kept_lines == 3
    assert (st.split, st.dropped, st.replaced) == (0, 0, 0)


def test_final_newline_does_not_add_a_line_and_bom_is_skipped(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfa b\nc\n")
    sents, st = load_text(path)
    assert sents == [["a", "b"], ["c"]]
    assert st.lines == 2 and st.blank == 0


def test_lone_cr_is_whitespace_not_a_line_end(tmp_path):
    sents, st = load_text(write(tmp_path, b"a\rb\nc"))
    assert sents == [["a", "b"], ["c"]] and st.lines == 2


def test_undecodable_bytes_strict_names_file_and_line(tmp_path):
    path = write(tmp_path, b"good line\nsecond\nbad \xff\xfe here\nok\n")
    with pytest.raises(InputError) as e:
        load_text(path)
    msg = str(e.value)
    assert "corpus.txt, line 3" in msg and "0xff" in msg
    assert "errors='replace'" in msg
    # also when the bad line is far into the file, across read chunks
    path2 = write(tmp_path, b"w x\n" * 300000 + b"\x80\n", "big.txt")
    with pytest.raises(InputError, match="big.txt, line 300001"):
        encode_file(path2, Vocabulary(["w"]), use_cache=False)


def test_undecodable_bytes_replace_counts_lines(tmp_path):
    path = write(tmp_path, b"bad \xff\xfe here\nok\nal\xc3so\n\xe9\n")
    sents, st = load_text(path, errors="replace")
    assert sents == [["bad", "\ufffd\ufffd", "here"], ["ok"],
                     ["al\ufffdso"], ["\ufffd"]]
    assert st.replaced == 3 and st.lines == 4 and st.sentences == 4


def test_over_long_lines_split(tmp_path):
    path = write(tmp_path, "1 2 3 4 5 6 7\na b\nx y z\n\nq r s t\n")
    sents, st = load_text(path, max_length=3)
    assert sents == [["1", "2", "3"], ["4", "5", "6"], ["7"], ["a", "b"],
                     ["x", "y", "z"], ["q", "r", "s"], ["t"]]
    assert (st.lines, st.blank, st.split, st.dropped) == (5, 1, 2, 0)
    assert st.sentences == 7 and st.tokens == 16


def test_over_long_lines_drop(tmp_path):
    path = write(tmp_path, "1 2 3 4 5 6 7\na b\nx y z\n\nq r s t\n")
    sents, st = load_text(path, max_length=3, max_length_policy="drop")
    assert sents == [["a", "b"], ["x", "y", "z"]]
    assert (st.lines, st.blank, st.split, st.dropped) == (5, 1, 0, 2)
    assert st.dropped_tokens == 11 and st.tokens == 5
    counts, _ = count_words(path, max_length=3, max_length_policy="drop")
    assert counts == {"a": 1, "b": 1, "x": 1, "y": 1, "z": 1}


@pytest.mark.parametrize("data, match", [
    (b"", "is empty"),
    (b"\n\n  \r\n\t\n", "has no sentences: all of its 4 lines are blank"),
])
def test_no_sentences_is_a_clear_error(tmp_path, data, match):
    path = write(tmp_path, data)
    for call in (lambda: load_text(path), lambda: count_words(path),
                 lambda: prepare_corpus(path, 5),
                 lambda: encode_file(path, Vocabulary(["a"]))):
        with pytest.raises(InputError, match="corpus.txt " + match):
            call()
    # no cache file is left behind by a failed encoding
    assert not os.path.exists(path + ".lstm_accum-cache") or \
        os.listdir(path + ".lstm_accum-cache") == []


def test_everything_dropped_is_a_clear_error(tmp_path):
    path = write(tmp_path, "a b c\nd e f g\n")
    with pytest.raises(InputError, match="2 lines longer than max_length=2 "
                                         "dropped"):
        load_text(path, max_length=2, max_length_policy="drop")


def test_binary_file_is_refused(tmp_path):
    path = write(tmp_path, b"text\nmore\n\x89PNG\x00\x00\x01\x02")
    with pytest.raises(InputError, match="looks like a binary file.*line 3"):
        load_text(path)
    utf16 = write(tmp_path, "hello world\n".encode("utf-16"), "u16.txt")
    with pytest.raises(InputError, match="u16.txt looks like a binary"):
        prepare_corpus(utf16, 10)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_text(str(tmp_path / "missing.txt"))
    with pytest.raises(InputError, match="not a regular file"):
        load_text(str(tmp_path))


@pytest.mark.parametrize("kwargs, match", [
    ({"errors": "ignore"}, "errors"),
    ({"max_length": 0}, "max_length"),
    ({"max_length": 2.0}, "max_length"),
    ({"max_length_policy": "truncate"}, "max_length_policy"),
])
def test_bad_settings(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        load_text(write(tmp_path, "a\n"), **kwargs)


def test_small_read_chunks_give_the_same_result(tmp_path, monkeypatch):
    """Lines and multi-byte characters cut across reads, long lines cut in
    pieces at blanks: same sentences and counts as one big read."""
    text = ("Ünïcödé wörds  here\r\n\n" + "long " * 40 + "\n"
            + "x" * 50 + " tail\n\u3000\n" + "end line\r\n")
    path = write(tmp_path, text.encode("utf-8"))
    expected, st0 = load_text(path, max_length=7)
    for chunk in (1, 2, 3, 5, 8, 13):
        monkeypatch.setattr(R, "READ_CHUNK", chunk)
        sents, st = load_text(path, max_length=7)
        assert sents == expected
        assert st == st0
    assert st0.lines == 6 and st0.blank == 2 and st0.split == 1
    assert expected[0] == ["Ünïcödé", "wörds", "here"]
    assert expected[-1] == ["end", "line"]


def test_ten_megabyte_line_is_split_in_proportional_memory(tmp_path):
    words = ["wd%d" % (i % 997) for i in range(2000000)]
    line = " ".join(words)                      # about 10 MB
    assert len(line) > 10 * 10 ** 6
    path = write(tmp_path, ("first line\n" + line + "\nlast line\n").encode())
    vocab = Vocabulary.build({"wd%d" % i: 1000 - i for i in range(997)}, 500)
    tracemalloc.start()
    try:
        corpus, st = encode_file(path, vocab, max_length=1000,
                                 use_cache=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert st.lines == 3 and st.split == 1
    assert st.sentences == 2 + 2000 and st.tokens == 2000004
    assert corpus.lengths.tolist() == [2] + [1000] * 2000 + [2]
    expected = np.array([vocab.index.get(w, 0) for w in words],
                        dtype=np.int32)
    np.testing.assert_array_equal(corpus.ids[2:-2], expected)
    # ids are 8 MB, the line 11.8 MB (measured peak: ~20 MB); holding the
    # line's tokens as str objects would take ~115 MB
    assert peak < 32 * 2 ** 20, peak / 2.0 ** 20
    # the drop policy counts it and keeps the others
    corpus, st = encode_file(path, vocab, max_length=1000,
                             max_length_policy="drop", use_cache=False)
    assert st.dropped == 1 and st.dropped_tokens == 2000000
    assert corpus.lengths.tolist() == [2, 2]


# ----------------------------------------------------------------------
# encoding and the cache

def test_encode_file_ids_offsets_and_unk_count(tmp_path):
    path = write(tmp_path, "the cat sat\n\nthe dog sat on the mat\n")
    vocab = Vocabulary.build({"the": 5, "sat": 3, "cat": 2}, 3)
    corpus, st = encode_file(path, vocab, use_cache=False)
    # the=3 sat=4 cat=5, others <unk>=0
    assert corpus.ids.dtype == np.int32 and corpus.offsets.dtype == np.int64
    assert corpus.ids.tolist() == [3, 5, 4, 3, 0, 4, 0, 3, 0]
    assert corpus.offsets.tolist() == [0, 3, 9]
    assert corpus.sentence(1).tolist() == [3, 0, 4, 0, 3, 0]
    assert corpus.lengths.tolist() == [3, 6]
    assert (st.tokens, st.unk_tokens, st.blank) == (9, 3, 1)
    assert st.coverage == pytest.approx(6 / 9)
    assert corpus.num_targets == 11


def test_prepare_corpus_one_pass_equals_two_passes(tmp_path):
    text = "b a c a\nd a b\n\ne e e e x\n<unk> a\n"
    path = write(tmp_path, text)
    vocab, corpus, st = prepare_corpus(path, 3, use_cache=False)
    # counts: a 4, e 4, b 2, c 1, d 1, x 1; ties by code point
    assert vocab.words == ("a", "e", "b")
    counts, _ = count_words(path)
    assert counts == {"a": 4, "b": 2, "c": 1, "d": 1, "e": 4, "x": 1,
                      "<unk>": 1}
    vocab2 = Vocabulary.build(counts, 3)
    corpus2, st2 = encode_file(path, vocab2, use_cache=False)
    assert vocab2 == vocab
    np.testing.assert_array_equal(corpus.ids, corpus2.ids)
    np.testing.assert_array_equal(corpus.offsets, corpus2.offsets)
    assert st == st2
    assert corpus.ids.tolist() == [5, 3, 0, 3, 0, 3, 5, 4, 4, 4, 4, 0, 0, 3]


def test_cache_second_call_does_not_read_the_text(tmp_path, monkeypatch):
    path = write(tmp_path, "a b c\nb c\nc\n")
    vocab = Vocabulary.build({"a": 1, "b": 2, "c": 3}, 3)
    corpus, st = encode_file(path, vocab)
    assert not st.from_cache
    cache = path + ".lstm_accum-cache"
    assert len(os.listdir(cache)) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("the text was read again")
    monkeypatch.setattr(R, "_decoded_blocks", no_reading)
    corpus2, st2 = encode_file(path, vocab)
    assert st2.from_cache
    np.testing.assert_array_equal(corpus.ids, corpus2.ids)
    np.testing.assert_array_equal(corpus.offsets, corpus2.offsets)
    assert (st2.lines, st2.tokens) == (st.lines, st.tokens)
    # other settings or another vocabulary miss the cache: they must read
    with pytest.raises(AssertionError, match="read again"):
        encode_file(path, vocab, lowercase=True)
    with pytest.raises(AssertionError, match="read again"):
        encode_file(path, Vocabulary.build({"a": 1}, 1))
    monkeypatch.undo()
    # a changed file misses the cache too
    write(tmp_path, "a b c\nb c\nc c\n")
    corpus4, st4 = encode_file(path, vocab)
    assert not st4.from_cache and corpus4.num_tokens == 7


def test_prepare_corpus_cache_and_custom_cache_dir(tmp_path, monkeypatch):
    path = write(tmp_path, "x y\ny z z\n")
    cdir = tmp_path / "cachedir"
    v, c, st = prepare_corpus(path, 2, cache_dir=str(cdir))
    assert not st.from_cache and len(os.listdir(cdir)) == 1
    assert not os.path.exists(path + ".lstm_accum-cache")
    monkeypatch.setattr(R, "_decoded_blocks", None)
    v2, c2, st2 = prepare_corpus(path, 2, cache_dir=str(cdir))
    assert st2.from_cache and v2 == v and v2.counts == v.counts
    np.testing.assert_array_equal(c.ids, c2.ids)


def test_damaged_cache_is_ignored_and_rewritten(tmp_path):
    path = write(tmp_path, "x y\ny z z\n")
    vocab = Vocabulary(["z", "y"])
    corpus, _ = encode_file(path, vocab)
    cache = path + ".lstm_accum-cache"
    (cfile,) = os.listdir(cache)
    with open(os.path.join(cache, cfile), "r+b") as f:
        f.truncate(50)
    corpus2, st2 = encode_file(path, vocab)
    assert not st2.from_cache
    np.testing.assert_array_equal(corpus.ids, corpus2.ids)
    assert encode_file(path, vocab)[1].from_cache


def test_unwritable_cache_warns_and_still_returns(tmp_path):
    path = write(tmp_path, "x y\n")
    blocker = write(tmp_path, "", "a_file")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        corpus, st = encode_file(path, Vocabulary(["x"]),
                                 cache_dir=os.path.join(blocker, "sub"))
    assert corpus.ids.tolist() == [3, 0]
    assert any("could not write the encoding cache" in str(x.message)
               for x in w)


def test_use_cache_false_writes_nothing(tmp_path):
    path = write(tmp_path, "x y\n")
    prepare_corpus(path, 3, use_cache=False)
    encode_file(path, Vocabulary(["x"]), use_cache=False)
    assert os.listdir(tmp_path) == ["corpus.txt"]


def test_bad_vocab_arguments(tmp_path):
    path = write(tmp_path, "x y\n")
    with pytest.raises(InputError, match="vocab_size"):
        prepare_corpus(path, 0)
    with pytest.raises(InputError, match="needs a Vocabulary"):
        encode_file(path, ["x"])


# ----------------------------------------------------------------------
# EncodedCorpus and split_corpus

def small_corpus(n=10):
    lengths = [(i % 4) + 1 for i in range(n)]
    ids = np.arange(3, 3 + sum(lengths))
    return EncodedCorpus(ids, np.r_[0, np.cumsum(lengths)])


def test_encoded_corpus_validation():
    with pytest.raises(InputError, match="offsets"):
        EncodedCorpus([3, 4], [0, 3])
    with pytest.raises(InputError, match="offsets"):
        EncodedCorpus([3, 4], [0, 2, 1, 2])
    with pytest.raises(InputError, match="word ids"):
        EncodedCorpus([3, -1], [0, 2])
    with pytest.raises(InputError, match="1-D integer"):
        EncodedCorpus([3.0, 4.0], [0, 2])
    with pytest.raises(IndexError):
        small_corpus(3).sentence(3)
    c = small_corpus(3)
    assert c.sentence(-1).tolist() == [6, 7, 8]
    with pytest.raises(ValueError):
        c.sentence(0)[0] = 9        # views are read-only


def test_encoded_corpus_save_load_and_subset(tmp_path):
    c = small_corpus(6)
    c.save(tmp_path / "c.npz")
    d = EncodedCorpus.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(c.ids, d.ids)
    np.testing.assert_array_equal(c.offsets, d.offsets)
    sub = c.subset([4, 0, 4])
    assert [s.tolist() for s in sub] == [c.sentence(4).tolist(),
                                         c.sentence(0).tolist(),
                                         c.sentence(4).tolist()]
    assert len(c.subset([])) == 0
    np.savez(tmp_path / "bad.npz", ids=np.array([1, 2]),
             offsets=np.array([0, 5]))
    with pytest.raises(InputError, match="bad.npz"):
        EncodedCorpus.load(tmp_path / "bad.npz")


def test_split_corpus_deterministic_disjoint_complete():
    c = small_corpus(100)
    tr, va, te = split_corpus(c, 0.1, 0.2, seed=7)
    assert (len(tr), len(va), len(te)) == (70, 10, 20)
    # identify sentences by their first id (unique here)
    key = lambda corp: sorted(int(s[0]) for s in corp)
    all_keys = key(c)
    assert sorted(key(tr) + key(va) + key(te)) == all_keys
    tr2, va2, te2 = split_corpus(c, 0.1, 0.2, seed=7)
    np.testing.assert_array_equal(va.ids, va2.ids)
    np.testing.assert_array_equal(te.ids, te2.ids)
    _, va3, _ = split_corpus(c, 0.1, 0.2, seed=8)
    assert key(va3) != key(va)
    # original order kept within each part
    firsts = [int(s[0]) for s in tr]
    assert firsts == sorted(firsts)
    # the split is the one a RandomState(7) permutation gives
    perm = np.random.RandomState(7).permutation(100)
    assert key(va) == sorted(int(c.sentence(i)[0]) for i in perm[:10])


def test_split_corpus_edges():
    c = small_corpus(3)
    tr, va, te = split_corpus(c, 0.01)
    assert (len(tr), len(va), len(te)) == (2, 1, 0)
    with pytest.raises(InputError, match="train would be empty"):
        split_corpus(small_corpus(2), 0.4, 0.4)
    with pytest.raises(InputError, match="below 1"):
        split_corpus(c, 0.5, 0.5)
    with pytest.raises(InputError, match="valid_fraction"):
        split_corpus(c, -0.1)
