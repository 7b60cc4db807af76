"""Checkpoints: a flat dict of numpy arrays plus JSON metadata in one ``.npz``.

A checkpoint file is an uncompressed ``.npz`` archive that
``numpy.load(path, allow_pickle=False)`` reads; nothing in it is ever
executed. Besides the caller's arrays it holds three reserved entries:

``__format__``
    int64 scalar, the format version (:data:`FORMAT_VERSION`).
``__metadata__``
    uint8 array: UTF-8 JSON (configuration, vocabulary, counters, ...).
``__sha256__``
    0-d unicode array: the hex SHA-256 of every other entry (name, dtype,
    shape and bytes, in sorted name order), so a file that was changed after
    it was written is refused even when the zip archive itself is intact.

Writes are atomic: the archive is written to a temporary file in the same
directory, flushed and fsync'ed, renamed over the target with
:func:`os.replace`, and the directory is fsync'ed. A process killed at any
moment leaves either the previous file or the new one, never a mixture.
A failed write (full disk, unwritable directory) raises
:class:`~lstm_accum.exceptions.CheckpointError`, removes the temporary file
and leaves the previous checkpoint untouched.
"""
import errno
import hashlib
import json
import os
import zipfile
from collections import namedtuple

import numpy as np

from .exceptions import CheckpointError, IncompatibleStateError
from .files import atomic_open

__all__ = ["FORMAT_VERSION", "LATEST_NAME", "BEST_NAME", "Checkpoint",
           "save_checkpoint", "load_checkpoint", "copy_checkpoint",
           "check_compatible", "remove_stale_temporaries", "checksum",
           "read_metadata"]

#: Version of the file layout written by :func:`save_checkpoint`.
FORMAT_VERSION = 1
#: File name of the latest checkpoint in a run directory.
LATEST_NAME = "checkpoint.npz"
#: File name of the checkpoint with the best validation perplexity.
BEST_NAME = "best.npz"

_FORMAT_KEY = "__format__"
_META_KEY = "__metadata__"
_SHA_KEY = "__sha256__"
_TMP_PREFIX = ".tmp-"
_TMP_SUFFIX = ".npz.part"

#: A loaded checkpoint: ``arrays`` (dict name -> ndarray, reserved entries
#: removed), ``metadata`` (dict from the JSON) and ``path``.
Checkpoint = namedtuple("Checkpoint", ["arrays", "metadata", "path"])


def checksum(arrays):
    """SHA-256 (hex) of a dict of arrays: names, dtypes, shapes and bytes.

    Parameters
    ----------
    arrays : dict of str -> ndarray

    Returns
    -------
    str
        64 hexadecimal digits; independent of the dict's order.
    """
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(value.dtype.str.encode("ascii") + b"\0")
        digest.update(repr(tuple(value.shape)).encode("ascii") + b"\0")
        digest.update(value.tobytes())
    return digest.hexdigest()


def _write_npz(fileobj, entries):
    """Write the archive (a separate function so tests can make it fail)."""
    np.savez(fileobj, **entries)


def _atomic_write(path, write, before_sync=None):
    """Call ``write(fileobj)`` on a temporary file, then rename it to path.

    The temporary file is named ``.tmp-<name>.<random>.npz.part``, which
    :func:`remove_stale_temporaries` sweeps; an ``OSError`` becomes a
    :class:`CheckpointError` saying what to do.
    """
    path = os.path.abspath(path)
    try:
        with atomic_open(path, "wb",
                         prefix=_TMP_PREFIX + os.path.basename(path) + ".",
                         suffix=_TMP_SUFFIX, before_sync=before_sync) as f:
            write(f)
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno == errno.ENOSPC:
            hint = "free some disk space"
        elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = "make the directory writable or choose another one"
        else:
            hint = "check the output directory"
        raise CheckpointError(
            "could not write checkpoint %s: %s; the previous checkpoint "
            "there is untouched; %s and try again" % (path, reason, hint)
        ) from None
    return path


def save_checkpoint(path, arrays, metadata, before_sync=None):
    """Write arrays and metadata to ``path`` atomically.

    Parameters
    ----------
    path : str
        Target file, normally ``<run dir>/checkpoint.npz``. Its directory
        must exist.
    arrays : dict of str -> array_like
        Numeric arrays (no object arrays). Names must not start with
        ``'__'``.
    metadata : dict
        JSON-serialisable data (configuration, vocabulary, counters).
    before_sync : callable, optional
        Called once the data is written, before it is fsync'ed and renamed
        (see :func:`lstm_accum.files.atomic_open`; a test hook).

    Returns
    -------
    str
        The absolute path written.

    Raises
    ------
    CheckpointError
        When the file cannot be written (full disk, unwritable directory);
        the previous file at ``path`` is then untouched and no temporary
        file is left behind.
    ValueError
        For a reserved name, an object array or metadata that is not JSON.
    """
    entries = {}
    for name, value in arrays.items():
        if name.startswith("__"):
            raise ValueError("array name %r is reserved (starts with '__'); "
                             "rename it" % name)
        value = np.asarray(value)
        if value.dtype.hasobject:
            raise ValueError("array %r has dtype object, which cannot be "
                             "saved without pickle; convert it to a numeric "
                             "array" % name)
        entries[name] = value
    meta = dict(metadata)
    meta["format_version"] = FORMAT_VERSION
    try:
        text = json.dumps(meta, sort_keys=True, allow_nan=True)
    except TypeError as err:
        raise ValueError("checkpoint metadata is not JSON-serialisable: %s"
                         % err) from None
    entries[_META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    entries[_FORMAT_KEY] = np.asarray(FORMAT_VERSION, dtype=np.int64)
    entries[_SHA_KEY] = np.asarray(checksum(entries))
    return _atomic_write(path, lambda fileobj: _write_npz(fileobj, entries),
                         before_sync)


def copy_checkpoint(source, target, before_sync=None):
    """Copy a checkpoint file atomically (used to keep ``best.npz``).

    Parameters
    ----------
    source, target : str
        Paths; ``target`` is replaced atomically.
    before_sync : callable, optional
        As in :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        As :func:`save_checkpoint`.
    """
    def write(fileobj):
        with open(source, "rb") as src:
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                fileobj.write(block)
    return _atomic_write(target, write, before_sync)


def _damaged(path, detail):
    return CheckpointError(
        "checkpoint %s is damaged (%s); resume from %s in the same directory "
        "or start a new run" % (path, detail, BEST_NAME))


def _decode_metadata(raw):
    """The metadata dict of its stored entry (UTF-8 JSON as uint8 bytes)."""
    return json.loads(raw.tobytes().decode("utf-8"))


def read_metadata(path):
    """A checkpoint's metadata alone, without reading or verifying its
    arrays (:func:`load_checkpoint` verifies them).

    Parameters
    ----------
    path : str

    Returns
    -------
    dict or None
        None when the file is missing or its metadata cannot be read.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            return _decode_metadata(archive[_META_KEY])
    except Exception:  # any damage: load_checkpoint will say what
        return None


def load_checkpoint(path):
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str

    Returns
    -------
    Checkpoint
        ``(arrays, metadata, path)``.

    Raises
    ------
    CheckpointError
        Missing, truncated or corrupted file, or a checksum mismatch.
    IncompatibleStateError
        A file written by a newer format version.
    """
    if not os.path.isfile(path):
        raise CheckpointError("checkpoint %s does not exist; give the path of "
                              "a %s written by 'lstm-accum train'"
                              % (path, LATEST_NAME))
    try:
        with np.load(path, allow_pickle=False) as archive:
            entries = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as err:
        raise _damaged(path, "%s: %s" % (type(err).__name__, err)) from None
    except Exception as err:  # zlib.error, struct.error on mangled headers
        raise _damaged(path, "%s: %s" % (type(err).__name__, err)) from None
    if _FORMAT_KEY not in entries or _META_KEY not in entries:
        raise CheckpointError("%s is not an lstm_accum checkpoint (no %s "
                              "entry); give a %s written by 'lstm-accum "
                              "train'" % (path, _FORMAT_KEY, LATEST_NAME))
    try:
        version = int(entries[_FORMAT_KEY])
    except (TypeError, ValueError):
        raise _damaged(path, "unreadable format version") from None
    if version > FORMAT_VERSION:
        raise IncompatibleStateError(
            "checkpoint %s has format version %d, this lstm_accum reads "
            "versions up to %d; upgrade lstm_accum to load it"
            % (path, version, FORMAT_VERSION))
    if _SHA_KEY not in entries:
        raise _damaged(path, "no checksum entry")
    stored = str(entries.pop(_SHA_KEY))
    actual = checksum(entries)
    if stored != actual:
        raise _damaged(path, "checksum mismatch: stored %s..., computed %s..."
                       % (stored[:12], actual[:12]))
    try:
        metadata = _decode_metadata(entries.pop(_META_KEY))
    except (UnicodeDecodeError, ValueError) as err:
        raise _damaged(path, "unreadable metadata: %s" % err) from None
    entries.pop(_FORMAT_KEY)
    return Checkpoint(entries, metadata, path)


def check_compatible(saved, wanted, keys, what="checkpoint"):
    """Raise when ``saved[key] != wanted[key]`` for one of ``keys``.

    Parameters
    ----------
    saved : dict
        Values recorded in the checkpoint (e.g. its model configuration).
    wanted : dict
        Values of the model or run that wants to use it.
    keys : sequence of str
        The keys that must agree (those that define parameter shapes, or
        the whole run for a bit-identical resume). Keys missing from
        ``wanted`` are not compared.
    what : str
        How to name the saved side in the message.

    Raises
    ------
    IncompatibleStateError
        Naming the first key that differs and both values.
    """
    for key in keys:
        if key not in wanted:
            continue
        if key not in saved:
            raise IncompatibleStateError(
                "%s has no value for %r (this run has %r); it was written "
                "by another version or for another model" % (what, key,
                                                              wanted[key]))
        if saved[key] != wanted[key]:
            raise IncompatibleStateError(
                "%s was made with %s=%r but this run has %s=%r; use the same "
                "value (or a new output directory)"
                % (what, key, saved[key], key, wanted[key]))


def remove_stale_temporaries(directory):
    """Delete temporary files left by a process killed while saving.

    Parameters
    ----------
    directory : str

    Returns
    -------
    list of str
        The files removed.
    """
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in os.listdir(directory):
        if name.startswith(_TMP_PREFIX) and name.endswith(_TMP_SUFFIX):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed
