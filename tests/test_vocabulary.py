"""Vocabulary: ranking and ties, unknown words, sizes, coverage, JSON files."""
import collections
import json
import os

import numpy as np
import pytest

from lstm_accum.exceptions import InputError
from lstm_accum.data.vocabulary import (BOS_ID, EOS_ID, UNK_ID, Vocabulary,
                                   SPECIAL_TOKENS)
import lstm_accum.files as files_module


def test_special_ids_are_fixed():
    assert (UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2)
    assert SPECIAL_TOKENS == ("<unk>", "<s>", "</s>")
    v = Vocabulary.build({"x": 1}, 5)
    assert [v.word(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert [v.id(w) for w in ("<unk>", "<s>", "</s>")] == [0, 1, 2]


def test_most_frequent_words_ties_broken_by_code_point():
    counts = {"b": 2, "a": 2, "c": 5, "d": 1, "B": 2}
    v = Vocabulary.build(counts, 3)
    # 'c' (5) first; then the three words with count 2 in code point
    # order: 'B' (66) < 'a' (97) < 'b' (98); only two fit
    assert v.words == ("c", "B", "a")
    assert len(v) == 6 and v.size == 3
    assert [v.id(w) for w in ("c", "B", "a", "b", "d")] == [3, 4, 5, 0, 0]
    # a non-ASCII tie sorts after ASCII by code point
    v2 = Vocabulary.build({"é": 1, "z": 1, "A": 1}, 10)
    assert v2.words == ("A", "z", "é")


def test_build_from_tokens_and_token_lists_equals_counts():
    sents = [["a", "b", "a"], ["c", "a", "b"], ["d"]]
    from_lists = Vocabulary.build(sents, 10)
    from_tokens = Vocabulary.build([t for s in sents for t in s], 10)
    from_counts = Vocabulary.build(collections.Counter(
        t for s in sents for t in s), 10)
    assert from_lists.words == from_tokens.words == from_counts.words \
        == ("a", "b", "c", "d")
    assert from_lists.counts == (3, 2, 1, 1)


def test_unknown_words_encode_to_unk_and_decode_back():
    v = Vocabulary.build({"the": 3, "cat": 2}, 2)
    ids = v.encode(["the", "dog", "cat", "the"])
    assert ids.dtype == np.int32
    assert ids.tolist() == [3, 0, 4, 3]
    assert v.decode(ids) == ["the", "<unk>", "cat", "the"]
    assert v.decode(np.array([1, 3, 2])) == ["<s>", "the", "</s>"]
    assert v.encode([]).shape == (0,)


def test_special_strings_in_text_are_not_words_and_encode_to_unk():
    v = Vocabulary.build({"<unk>": 50, "<s>": 40, "</s>": 30, "x": 1}, 5)
    assert v.words == ("x",)
    assert v.encode(["<unk>", "<s>", "</s>", "x"]).tolist() == [0, 0, 0, 3]


def test_size_larger_than_distinct_words_keeps_all_and_reports():
    v = Vocabulary.build({"a": 1, "b": 4, "c": 0}, 100)
    # 'c' has count 0: never ranked
    assert v.words == ("b", "a")
    assert len(v) == 5
    assert v.requested_size == 100


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "10", None])
def test_bad_size_is_an_input_error(size):
    with pytest.raises(InputError, match="size"):
        Vocabulary.build({"a": 1}, size)


def test_bad_counts_are_input_errors():
    with pytest.raises(InputError, match="non-negative"):
        Vocabulary.build({"a": -1}, 3)
    with pytest.raises(InputError, match="str"):
        Vocabulary.build({1: 2}, 3)
    with pytest.raises(InputError, match="single str"):
        Vocabulary.build("a b c", 3)
    with pytest.raises(InputError, match="unique"):
        Vocabulary(["a", "a"])
    with pytest.raises(InputError, match="reserved"):
        Vocabulary(["<s>"])


def test_word_and_decode_reject_out_of_range_ids():
    v = Vocabulary.build({"a": 1}, 1)
    with pytest.raises(InputError, match=r"\[0, 4\)"):
        v.word(4)
    with pytest.raises(InputError):
        v.word(-1)
    with pytest.raises(InputError):
        v.decode([0, 4])


def test_coverage_by_hand():
    v = Vocabulary.build({"a": 5, "b": 3, "c": 2}, 2)
    # tokens: a x4, b x1, c x3, <unk> x2 -> covered 5 of 10
    assert v.coverage({"a": 4, "b": 1, "c": 3, "<unk>": 2}) == 0.5
    assert v.coverage(["a", "c"]) == 0.5
    assert np.isnan(v.coverage({}))


def test_save_load_round_trip(tmp_path):
    v = Vocabulary.build({"zebra": 3, "äpfel": 3, "日本": 7, "x": 1}, 3)
    path = tmp_path / "vocab.json"
    v.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["words"] == ["日本", "zebra", "äpfel"]
    assert data["counts"] == [7, 3, 3]
    assert data["requested_size"] == 3
    w = Vocabulary.load(path)
    assert w == v
    assert w.counts == v.counts and w.requested_size == 3
    assert w.fingerprint() == v.fingerprint()
    assert [w.word(i) for i in range(len(w))] == \
        ["<unk>", "<s>", "</s>", "日本", "zebra", "äpfel"]
    assert os.listdir(tmp_path) == ["vocab.json"]   # no temporary left


def test_failed_save_leaves_previous_file_and_no_temporary(tmp_path,
                                                           monkeypatch):
    path = tmp_path / "vocab.json"
    old = Vocabulary.build({"old": 1}, 1)
    old.save(path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(files_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        Vocabulary.build({"new": 1}, 1).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["vocab.json"]


def test_fingerprint_depends_on_the_order_of_words():
    assert Vocabulary(["a", "b"]).fingerprint() != \
        Vocabulary(["b", "a"]).fingerprint()


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="nope.json"):
        Vocabulary.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="bad.json.*not valid JSON"):
        Vocabulary.load(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"words": ["a"]}), encoding="utf-8")
    with pytest.raises(InputError, match="other.json.*not an lstm_accum"):
        Vocabulary.load(other)
    newer = Vocabulary(["a"]).to_dict()
    newer["version"] = 99
    other.write_text(json.dumps(newer), encoding="utf-8")
    with pytest.raises(InputError, match="version 99"):
        Vocabulary.load(other)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe{")
    with pytest.raises(InputError, match="not UTF-8"):
        Vocabulary.load(binary)
