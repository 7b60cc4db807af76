"""Checkpoint files: round trip, integrity checks, atomic writes that survive
full disks and unwritable directories."""
import errno
import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest

from lstm_accum import checkpoint as ckpt
from lstm_accum import files
from lstm_accum.exceptions import CheckpointError, IncompatibleStateError


def sample_arrays():
    rng = np.random.RandomState(0)
    return {"acc/W": rng.randn(3, 4), "acc/b": rng.randn(4).astype(np.float32),
            "rng/keys": np.arange(624, dtype=np.uint32),
            "counter": np.asarray(7, dtype=np.int64)}


META = {"config": {"units": 8, "vocab_size": 23}, "vocabulary": ["<unk>", "a"],
        "counters": {"update": 3}}


def test_round_trip_exact_and_pickle_free(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    arrays = sample_arrays()
    assert ckpt.save_checkpoint(path, arrays, META) == path
    loaded = ckpt.load_checkpoint(path)
    assert sorted(loaded.arrays) == sorted(arrays)
    for name, value in arrays.items():
        assert loaded.arrays[name].dtype == value.dtype
        assert loaded.arrays[name].tobytes() == value.tobytes()
    assert loaded.metadata["config"] == META["config"]
    assert loaded.metadata["format_version"] == ckpt.FORMAT_VERSION
    # readable by plain numpy without pickle, with the documented entries
    with np.load(path, allow_pickle=False) as archive:
        assert int(archive["__format__"]) == ckpt.FORMAT_VERSION
        meta = json.loads(archive["__metadata__"].tobytes().decode("utf-8"))
        assert meta["counters"] == {"update": 3}
        assert len(str(archive["__sha256__"])) == 64
    assert os.listdir(str(tmp_path)) == ["checkpoint.npz"]


def test_checksum_is_sha256_of_names_dtypes_shapes_bytes():
    value = np.arange(3, dtype=np.int16)
    expected = hashlib.sha256(b"x\0" + b"<i2\0" + b"(3,)\0"
                              + value.tobytes()).hexdigest()
    assert ckpt.checksum({"x": value}) == expected
    assert ckpt.checksum({"x": value.astype(np.int32)}) != expected


def test_object_arrays_and_reserved_names_refused(tmp_path):
    path = str(tmp_path / "c.npz")
    with pytest.raises(ValueError, match="object"):
        ckpt.save_checkpoint(path, {"x": np.array([None, 1])}, {})
    with pytest.raises(ValueError, match="reserved"):
        ckpt.save_checkpoint(path, {"__x": np.zeros(1)}, {})
    assert not os.path.exists(path)


def test_truncated_file_refused(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    ckpt.save_checkpoint(path, sample_arrays(), META)
    data = open(path, "rb").read()
    for cut in (10, len(data) // 2, len(data) - 5):
        with open(path, "wb") as f:
            f.write(data[:cut])
        with pytest.raises(CheckpointError, match="damaged") as info:
            ckpt.load_checkpoint(path)
        assert "\n" not in str(info.value)


def test_flipped_byte_refused(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    arrays = {"big": np.zeros(10000)}
    ckpt.save_checkpoint(path, arrays, META)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF          # inside the array's bytes
    open(path, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        ckpt.load_checkpoint(path)


def rewrite(path, change):
    """Rewrite the archive with consistent zip CRCs, changing entries."""
    with np.load(path, allow_pickle=False) as archive:
        entries = {k: archive[k] for k in archive.files}
    change(entries)
    buf = io.BytesIO()
    np.savez(buf, **entries)
    open(path, "wb").write(buf.getvalue())


def test_modified_array_with_valid_zip_fails_checksum(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    ckpt.save_checkpoint(path, sample_arrays(), META)

    def change(entries):
        entries["acc/W"] = entries["acc/W"] + 1e-12
    rewrite(path, change)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        ckpt.load_checkpoint(path)


def test_newer_format_version_refused(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    ckpt.save_checkpoint(path, sample_arrays(), META)

    def change(entries):
        entries["__format__"] = np.asarray(ckpt.FORMAT_VERSION + 1)
        del entries["__sha256__"]
        entries["__sha256__"] = np.asarray(ckpt.checksum(entries))
    rewrite(path, change)
    with pytest.raises(IncompatibleStateError,
                       match="format version %d" % (ckpt.FORMAT_VERSION + 1)):
        ckpt.load_checkpoint(path)


def test_not_a_checkpoint_and_missing_file(tmp_path):
    other = str(tmp_path / "other.npz")
    np.savez(other, x=np.zeros(2))
    with pytest.raises(CheckpointError, match="not an lstm_accum checkpoint"):
        ckpt.load_checkpoint(other)
    text = str(tmp_path / "text.npz")
    open(text, "w").write("hello\n")
    with pytest.raises(CheckpointError, match="damaged"):
        ckpt.load_checkpoint(text)
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(str(tmp_path / "missing.npz"))


def test_check_compatible_names_the_key():
    saved = {"vocab_size": 23, "num_units": 8, "cell": "lstm"}
    ckpt.check_compatible(saved, {"vocab_size": 23, "num_units": 8},
                          ["vocab_size", "num_units", "cell"])
    with pytest.raises(IncompatibleStateError,
                       match=r"num_units=8 but this run has num_units=16"):
        ckpt.check_compatible(saved, {"vocab_size": 23, "num_units": 16},
                              ["vocab_size", "num_units"])
    with pytest.raises(IncompatibleStateError, match="'layers'"):
        ckpt.check_compatible(saved, {"layers": 2}, ["layers"])


def test_full_disk_leaves_previous_checkpoint_and_no_temporary(tmp_path,
                                                               monkeypatch):
    path = str(tmp_path / "checkpoint.npz")
    ckpt.save_checkpoint(path, sample_arrays(), META)
    before = open(path, "rb").read()

    def fail(fileobj, entries):
        fileobj.write(b"partial bytes")          # half-written, then ENOSPC
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(ckpt, "_write_npz", fail)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        ckpt.save_checkpoint(path, {"x": np.ones(5)}, META)
    assert "untouched" in str(info.value)
    assert open(path, "rb").read() == before
    assert os.listdir(str(tmp_path)) == ["checkpoint.npz"]
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path).arrays["counter"] == 7


def test_unwritable_directory(tmp_path, monkeypatch):
    path = str(tmp_path / "checkpoint.npz")
    ckpt.save_checkpoint(path, sample_arrays(), META)
    before = open(path, "rb").read()

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    # root ignores directory permissions, so the refusal is simulated at the
    # place the kernel would refuse: creating the temporary file.
    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    with pytest.raises(CheckpointError, match="Permission denied.*writable"):
        ckpt.save_checkpoint(path, {"x": np.ones(5)}, META)
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    # a real unwritable location: the "directory" is a regular file
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="could not write"):
        ckpt.save_checkpoint(str(blocker / "checkpoint.npz"), {}, META)
    if os.geteuid() != 0:   # real permissions where they apply
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(CheckpointError, match="Permission denied"):
                ckpt.save_checkpoint(str(ro / "checkpoint.npz"), {}, META)
        finally:
            ro.chmod(0o700)


def test_copy_checkpoint_and_stale_temporaries(tmp_path):
    path = str(tmp_path / ckpt.LATEST_NAME)
    ckpt.save_checkpoint(path, sample_arrays(), META)
    best = str(tmp_path / ckpt.BEST_NAME)
    ckpt.copy_checkpoint(path, best)
    assert open(best, "rb").read() == open(path, "rb").read()
    stale = tmp_path / ".tmp-checkpoint.npz.abc123.npz.part"
    stale.write_bytes(b"half")
    other = tmp_path / "notes.txt"
    other.write_text("keep")
    assert ckpt.remove_stale_temporaries(str(tmp_path)) == [stale.name]
    assert sorted(os.listdir(str(tmp_path))) == sorted(
        [ckpt.LATEST_NAME, ckpt.BEST_NAME, "notes.txt"])


def test_replace_is_atomic_even_if_rename_fails(tmp_path, monkeypatch):
    path = str(tmp_path / "checkpoint.npz")
    ckpt.save_checkpoint(path, sample_arrays(), META)
    before = open(path, "rb").read()

    def broken_replace(src, dst):
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(CheckpointError, match="Input/output error"):
        ckpt.save_checkpoint(path, {"x": np.ones(3)}, META)
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert os.listdir(str(tmp_path)) == ["checkpoint.npz"]
    assert zipfile.is_zipfile(path)


def test_before_sync_runs_with_the_data_in_the_temporary_file(tmp_path):
    # The kill test stops the process in this hook: at that moment the new
    # data is only in a '.tmp-...npz.part' file that remove_stale_temporaries
    # sweeps, and the target still holds the previous checkpoint.
    path = str(tmp_path / ckpt.LATEST_NAME)
    ckpt.save_checkpoint(path, sample_arrays(), META)
    before = open(path, "rb").read()
    seen = []

    def hook():
        temporaries = [n for n in os.listdir(str(tmp_path))
                       if n != ckpt.LATEST_NAME]
        seen.append((temporaries, open(path, "rb").read() == before))
    ckpt.save_checkpoint(path, {"x": np.ones(3)}, META, before_sync=hook)
    ckpt.copy_checkpoint(path, str(tmp_path / ckpt.BEST_NAME),
                         before_sync=hook)
    assert len(seen) == 2
    temporaries, untouched = seen[0]
    assert untouched and len(temporaries) == 1
    assert temporaries[0].startswith(".tmp-checkpoint.npz.")
    assert temporaries[0].endswith(".npz.part")
    assert seen[1][0][0].startswith(".tmp-best.npz.")
    assert ckpt.load_checkpoint(path).arrays["x"].tolist() == [1, 1, 1]
    assert sorted(os.listdir(str(tmp_path))) == sorted(
        [ckpt.LATEST_NAME, ckpt.BEST_NAME])
