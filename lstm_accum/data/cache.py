"""The cache of encoded corpora, beside the text file.

:class:`EncodedCorpus` is one flat int32 array of word ids (no boundary
tokens) plus int64 offsets. :func:`encode_file` and :func:`prepare_corpus`
save it as ``.npz`` in a cache directory (default ``<corpus>.lstm_accum-cache``
beside the file) under a key made of the sha256 of the file's bytes, the
vocabulary (or requested size) and every reader setting, so a second run with
the same inputs loads it instead of reading the text (``stats.from_cache``).

A damaged or stale cache file is ignored (and rewritten); one that cannot be
written costs a ``RuntimeWarning``, never the result. This module does not
import Theano.
"""
import hashlib
import json
import os
import warnings
import zipfile

import numpy as np

from ..exceptions import InputError
from ..files import atomic_open, file_sha256
from .encoded import EncodedCorpus
from .reader import ReadStats
from .vocabulary import Vocabulary

__all__ = ["default_cache_dir", "cache_path", "cache_load", "cache_save",
           "CACHE_FORMAT"]

CACHE_FORMAT = 1            # bump when the cached arrays change meaning


def default_cache_dir(path):
    """``<path>.lstm_accum-cache``: the cache directory beside a corpus."""
    return os.fspath(path) + ".lstm_accum-cache"


def cache_path(name, cache_dir, what, s):
    """The cache file of corpus ``name`` and its key.

    The key is the SHA-256 of the cache format, the file's SHA-256, ``what``
    (the vocabulary's fingerprint or requested size) and the reader settings
    ``s``; returns ``(path, key)``.
    """
    digest = file_sha256(name)
    key = hashlib.sha256(json.dumps(
        {"format": CACHE_FORMAT, "sha256": digest, "vocabulary": what,
         "settings": s.as_dict()}, sort_keys=True).encode("utf-8")).hexdigest()
    if cache_dir is None:
        cache_dir = default_cache_dir(name)
    fname = "%s.%s.npz" % (os.path.basename(name), key[:32])
    return os.path.join(os.fspath(cache_dir), fname), key


def cache_load(cpath, key, name):
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


def cache_save(cpath, key, corpus, stats, vocab=None):
    """Write the cache file atomically; warn (do not fail) if impossible."""
    arrays = {"key": np.array(key), "ids": corpus.ids,
              "offsets": corpus.offsets,
              "stats": np.array(json.dumps(stats.as_dict()))}
    if vocab is not None:
        arrays["vocabulary"] = np.array(vocab.to_json())
    try:
        os.makedirs(os.path.dirname(cpath), exist_ok=True)
        with atomic_open(cpath, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:
        warnings.warn("could not write the encoding cache %s (%s); the "
                      "corpus will be encoded again next time. Pass "
                      "cache_dir= a writable directory, or use_cache=False"
                      % (cpath, e.strerror or e), RuntimeWarning,
                      stacklevel=3)
