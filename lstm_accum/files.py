"""Files written whole or not at all, and their fingerprints.

The one place that writes a file atomically (temporary file beside the
target, fsync, rename, fsync of the directory) and that hashes a file.
Imports nothing of the package but :mod:`lstm_accum.exceptions`, so every
part may use it.
"""
import contextlib
import hashlib
import os
import tempfile

__all__ = ["atomic_open", "fsync_directory", "file_sha256"]

_CHUNK = 1 << 20


def fsync_directory(directory):
    """Flush a directory's entries (a rename in it) to disk, where possible."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse it
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path, mode="wb", prefix=None, suffix=".tmp", before_sync=None):
    """Open a temporary file beside ``path``; on success it replaces ``path``.

    Readers see either the old file or the complete new one, never a part:
    the data is flushed and fsync'ed, the file renamed over ``path``, and the
    directory fsync'ed so that the rename survives a crash. On any error
    (including ``KeyboardInterrupt``) the temporary file is removed, ``path``
    is untouched and the error propagates.

    Parameters
    ----------
    path : str or os.PathLike
        The file to (re)place.
    mode : str
        ``'wb'`` or ``'w'`` (text, UTF-8).
    prefix, suffix : str, optional
        Of the temporary file's name (default ``'.<name>.'`` and ``'.tmp'``),
        so that a directory can be swept of leftovers by name.
    before_sync : callable, optional
        Called after the data is written and before it is fsync'ed (a test
        hook: the kill tests stop the process there).

    Yields
    ------
    file object
    """
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    if prefix is None:
        prefix = "." + os.path.basename(path) + "."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        kwargs = {} if "b" in mode else {"encoding": "utf-8"}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            if before_sync is not None:
                before_sync()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_directory(directory)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def file_sha256(path, chunk_size=_CHUNK):
    """The hex SHA-256 of a file's bytes, read in chunks.

    Parameters
    ----------
    path : str or os.PathLike
    chunk_size : int
        Bytes read at a time.

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()
