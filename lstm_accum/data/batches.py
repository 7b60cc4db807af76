"""Batches of an :class:`~lstm_accum.corpus.EncodedCorpus` for the models.

Convention
----------
A sentence of n words ``w1 .. wn`` gives T = n + 1 time steps::

    input   <s>  w1  w2 .. wn
    target  w1   w2  .. wn  </s>

so every word and the end of the sentence are predicted, and ``<s>`` is never
a target.

Batching kinds (what :func:`make_batch` returns, in the order the compiled
functions of :func:`lstm_accum.model.build_model` take them):

``'sample'``  one sentence, as the original question feeds the network:
    ``X`` one-hot float ``(1, T, V)`` or int32 ids ``(1, T)``; ``y`` int32
    ``(T,)``.
``'bucket'``  up to `batch_size` sentences of the *same* length, no mask:
    ``X`` int32 ``(B, T)`` or one-hot ``(B, T, V)``; ``y`` int32 ``(B, T)``.
``'mask'``    up to `batch_size` sentences of any length, padded to the
    longest: ``X`` ``(B, Tmax)`` ids or ``(B, Tmax, V)`` one-hot, ``y`` int32
    ``(B, Tmax)``, ``mask`` float ``(B, Tmax)`` with 1 on real steps. Padding
    is id 0 (``<unk>``) in ``X`` and ``y`` (one-hot of 0 in a one-hot ``X``,
    so one-hot and id inputs stay the same data); the mask removes it from
    the loss.

One-hot arrays are built per batch; no iterator ever materialises the
one-hot corpus. Float arrays use ``dtype`` (default: Theano's ``floatX`` at
call time).

Epoch plans
-----------
:func:`plan_epoch` lists the sentence indices of every batch of an epoch and
depends only on ``(seed, epoch)`` (``RandomState([seed, epoch])``), so a
trainer resumes an epoch by re-planning it and skipping the batches done.

* ``'sample'``: a random permutation, one sentence a batch (`batch_size` is
  ignored).
* ``'bucket'``: sentences grouped by length, shuffled within each length and
  cut into batches of at most `batch_size` (the last batch of a length may
  be smaller); then the batches of all lengths are shuffled together. Every
  sentence is in exactly one batch.
* ``'mask'``: a random permutation cut into batches of `batch_size` (the last
  may be smaller). With ``pool_size=k`` the permutation is first cut into
  pools of ``k * batch_size`` sentences, each pool is sorted by length
  (stable) before cutting it into batches, and then all batches are shuffled:
  less padding, still random. ``pool_size=None`` (default) does no sorting.

With ``shuffle=False`` plans are in corpus order (``'bucket'``: by
increasing length, then corpus order), for evaluation.

This module imports Theano only to read the default ``floatX``.
"""
from collections.abc import Sequence

import numpy as np

from ..checks import check_choice, check_int
from ..exceptions import InputError
from .vocabulary import BOS_ID, EOS_ID

__all__ = ["BATCHINGS", "INPUT_KINDS", "EpochPlan", "plan_epoch", "make_batch",
           "iterate_batches", "iterate_sentences", "iterate_buckets",
           "iterate_padded", "PAD_ID"]

BATCHINGS = ("sample", "bucket", "mask")
INPUT_KINDS = ("onehot", "ids")
PAD_ID = 0


def _default_dtype(dtype):
    if dtype is not None:
        return np.dtype(dtype)
    from ..backend import theano   # lazy: only the floatX default needs it
    return np.dtype(theano.config.floatX)


def _rng(seed, epoch):
    seed = check_int("seed", seed, 0)
    epoch = check_int("epoch", epoch, 0)
    if seed >= 2 ** 32 or epoch >= 2 ** 32:
        raise InputError("seed and epoch must be below 2**32, got %d, %d"
                         % (seed, epoch))
    return np.random.RandomState([seed, epoch])


class EpochPlan(Sequence):
    """The batches of one epoch: a read-only sequence of index arrays.

    Behaves like a list of int64 arrays (``len``, indexing, slicing,
    iteration) but stores one flat array of sentence indices and the batch
    boundaries, so a plan of a million one-sentence batches costs 16 MB,
    not a million array objects.

    Attributes
    ----------
    indices : numpy.ndarray of int64
        All sentence indices, batch after batch.
    bounds : numpy.ndarray of int64
        Batch ``k`` is ``indices[bounds[k]:bounds[k + 1]]``.
    """

    def __init__(self, indices, bounds):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.bounds = np.asarray(bounds, dtype=np.int64)
        self.indices.flags.writeable = False

    def __len__(self):
        return len(self.bounds) - 1

    def __getitem__(self, k):
        if isinstance(k, slice):
            start, stop, step = k.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            stop = max(stop, start)
            b = self.bounds[start:stop + 1]
            return EpochPlan(self.indices[b[0]:b[-1]], b - b[0])
        n = len(self)
        if not -n <= k < n:
            raise IndexError("batch %d out of range for %d batches" % (k, n))
        k = int(k) % n
        return self.indices[self.bounds[k]:self.bounds[k + 1]]

    def __repr__(self):
        return "EpochPlan(%d batches, %d sentences)" % (len(self),
                                                        len(self.indices))


def _plan(order, starts, sizes, perm=None):
    """An EpochPlan of batches ``order[starts[k]:starts[k]+sizes[k]]``, in
    the order `perm` (a permutation of the batches) when given."""
    if perm is not None:
        starts, sizes = starts[perm], sizes[perm]
    bounds = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=bounds[1:])
    pos = np.repeat(starts - bounds[:-1], sizes) + np.arange(bounds[-1])
    return EpochPlan(order[pos], bounds)


def plan_epoch(corpus, batching, batch_size=1, seed=0, epoch=0, shuffle=True,
               pool_size=None):
    """The sentence indices of every batch of one epoch.

    Parameters
    ----------
    corpus : EncodedCorpus
    batching : {'sample', 'bucket', 'mask'}
    batch_size : int
        Most sentences in a batch (ignored for 'sample').
    seed, epoch : int
        The plan is a function of these two only (and of the corpus).
    shuffle : bool
        False gives corpus order (see the module notes).
    pool_size : int, optional
        'mask' only: sort by length within pools of ``pool_size * batch_size``
        sentences.

    Returns
    -------
    EpochPlan
        A sequence of int64 arrays of sentence indices, one per batch;
        together they hold every sentence exactly once.

    Raises
    ------
    InputError
        Unknown `batching`, `batch_size` < 1, bad seed/epoch/pool_size.
    """
    check_choice("batching", batching, BATCHINGS)
    if batching == "sample":
        batch_size = 1
    batch_size = check_int("batch_size", batch_size, 1)
    if pool_size is not None:
        pool_size = check_int("pool_size", pool_size, 1)
    rng = _rng(seed, epoch)
    n = len(corpus)
    order = rng.permutation(n) if shuffle else np.arange(n)
    order = order.astype(np.int64)
    if batching == "bucket":
        lengths = corpus.lengths
        order = order[np.argsort(lengths[order], kind="stable")]
        sorted_len = lengths[order]
        group = np.flatnonzero(np.r_[True, sorted_len[1:] != sorted_len[:-1]])
        group_end = np.r_[group[1:], n].astype(np.int64)
    elif batching == "mask" and pool_size is not None:
        lengths = corpus.lengths
        pool = pool_size * batch_size
        for p in range(0, n, pool):
            chunk = order[p:p + pool]
            order[p:p + pool] = chunk[np.argsort(lengths[chunk],
                                                 kind="stable")]
        group = np.arange(0, n, pool, dtype=np.int64)
        group_end = np.minimum(group + pool, n)
    else:
        group = np.zeros(1 if n else 0, dtype=np.int64)
        group_end = np.full(len(group), n, dtype=np.int64)
    # cut every group [group, group_end) into batches of batch_size
    per_group = -(-(group_end - group) // batch_size)
    first = np.repeat(np.cumsum(per_group) - per_group, per_group)
    k = np.arange(int(per_group.sum()), dtype=np.int64) - first
    starts = np.repeat(group, per_group) + k * batch_size
    sizes = np.minimum(starts + batch_size, np.repeat(group_end, per_group)) \
        - starts
    perm = None
    if shuffle and batching != "sample" and (batching == "bucket"
                                             or pool_size is not None):
        perm = rng.permutation(len(starts))
    return _plan(order, starts, sizes, perm)


def _one_hot(x_ids, vocab_size, dtype):
    out = np.zeros(x_ids.shape + (vocab_size,), dtype=dtype)
    flat = out.reshape(-1, vocab_size)
    flat[np.arange(flat.shape[0]), x_ids.ravel()] = 1
    return out


def make_batch(corpus, indices, batching, input_kind, vocab_size=None,
               dtype=None):
    """Build the arrays of one batch.

    Parameters
    ----------
    corpus : EncodedCorpus
    indices : sequence of int
        Sentence indices (one array of :func:`plan_epoch`'s list).
    batching : {'sample', 'bucket', 'mask'}
    input_kind : {'onehot', 'ids'}
    vocab_size : int
        V = ``len(vocab)``; required for 'onehot', and checked against the
        ids when given.
    dtype : numpy dtype, optional
        Of one-hot inputs and masks; default Theano's ``floatX``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(X, y)`` for 'sample' and 'bucket', ``(X, y, mask)`` for 'mask';
        shapes in the module notes.

    Raises
    ------
    InputError
        'sample' with other than one index, 'bucket' with sentences of
        different lengths, an id >= `vocab_size`, no `vocab_size` for
        one-hot input, or an empty `indices`.

    Examples
    --------
    With sentence 0 = [5, 7]: ``make_batch(c, [0], 'sample', 'ids')`` gives
    ``X = [[1, 5, 7]]`` and ``y = [5, 7, 2]``.
    """
    check_choice("batching", batching, BATCHINGS)
    check_choice("input_kind", input_kind, INPUT_KINDS)
    indices = np.asarray(indices, dtype=np.int64).ravel()
    if indices.size == 0:
        raise InputError("make_batch needs at least one sentence index")
    if vocab_size is not None:
        vocab_size = check_int("vocab_size", vocab_size, 3)
    elif input_kind == "onehot":
        raise InputError("one-hot input needs vocab_size (len(vocab))")
    if batching == "sample" and indices.size != 1:
        raise InputError("'sample' batches hold exactly one sentence, got %d "
                         "indices; use 'bucket' or 'mask' for minibatches"
                         % indices.size)
    sents = [corpus.sentence(int(i)) for i in indices]
    lengths = np.array([len(s) for s in sents], dtype=np.int64)
    if batching == "bucket" and (lengths != lengths[0]).any():
        raise InputError("a 'bucket' batch needs sentences of one length, got "
                         "lengths %s; plan it with plan_epoch(..., 'bucket', "
                         "...) or use 'mask'" % sorted(set(lengths.tolist())))
    if vocab_size is not None:
        top = max((int(s.max()) for s in sents if len(s)), default=-1)
        if top >= vocab_size:
            raise InputError("the corpus holds word id %d but vocab_size is "
                             "%d; encode the corpus with the vocabulary of "
                             "the model" % (top, vocab_size))
    B, T = len(sents), int(lengths.max()) + 1
    x = np.full((B, T), PAD_ID, dtype=np.int32)
    y = np.full((B, T), PAD_ID, dtype=np.int32)
    x[:, 0] = BOS_ID
    for b, s in enumerate(sents):
        n = len(s)
        x[b, 1:n + 1] = s
        y[b, :n] = s
        y[b, n] = EOS_ID
    if input_kind == "onehot":
        X = _one_hot(x, vocab_size, _default_dtype(dtype))
    else:
        X = x
    if batching == "sample":
        return X, y[0]
    if batching == "bucket":
        return X, y
    mask = (np.arange(T)[None, :] <= lengths[:, None]).astype(
        _default_dtype(dtype))
    return X, y, mask


def iterate_batches(corpus, batching, batch_size=1, vocab_size=None,
                    input_kind="ids", shuffle=True, seed=0, epoch=0,
                    start=0, pool_size=None, dtype=None):
    """Yield :func:`make_batch` tuples of one epoch's :func:`plan_epoch`.

    Arguments are checked at the call, not at the first ``next()``.
    `start` skips the first batches of the plan (resuming mid-epoch).
    Other parameters are those of the two functions.

    Returns
    -------
    iterator of tuple of numpy.ndarray
    """
    check_choice("input_kind", input_kind, INPUT_KINDS)
    if vocab_size is not None:
        vocab_size = check_int("vocab_size", vocab_size, 3)
        if corpus.max_id >= vocab_size:
            raise InputError("the corpus holds word id %d but vocab_size is "
                             "%d; encode the corpus with the vocabulary of "
                             "the model" % (corpus.max_id, vocab_size))
    elif input_kind == "onehot":
        raise InputError("one-hot input needs vocab_size (len(vocab))")
    start = check_int("start", start, 0)
    dtype = _default_dtype(dtype) if input_kind == "onehot" or \
        batching == "mask" else None
    plan = plan_epoch(corpus, batching, batch_size, seed, epoch,
                      shuffle=shuffle, pool_size=pool_size)
    return (make_batch(corpus, indices, batching, input_kind, vocab_size,
                       dtype) for indices in plan[start:])


def iterate_sentences(corpus, vocab_size=None, input_kind="onehot",
                      shuffle=True, seed=0, epoch=0, start=0, dtype=None):
    """Yield ``(X, y)`` one sentence at a time ('sample' batching).

    ``X`` is one-hot ``(1, T, V)`` (`dtype`, default floatX) or int32 ids
    ``(1, T)``; ``y`` is int32 ``(T,)``. See :func:`make_batch`.
    """
    return iterate_batches(corpus, "sample", 1, vocab_size, input_kind,
                           shuffle, seed, epoch, start, None, dtype)


def iterate_buckets(corpus, batch_size, vocab_size=None, input_kind="ids",
                    shuffle=True, seed=0, epoch=0, start=0, dtype=None):
    """Yield ``(X, y)`` minibatches of equal-length sentences, no mask.

    ``X`` int32 ``(B, T)`` (or one-hot ``(B, T, V)``), ``y`` int32
    ``(B, T)``, ``B <= batch_size``; every sentence exactly once.
    """
    return iterate_batches(corpus, "bucket", batch_size, vocab_size,
                           input_kind, shuffle, seed, epoch, start, None,
                           dtype)


def iterate_padded(corpus, batch_size, vocab_size=None, input_kind="ids",
                   shuffle=True, seed=0, epoch=0, start=0, pool_size=None,
                   dtype=None):
    """Yield ``(X, y, mask)`` padded minibatches (see the module notes)."""
    return iterate_batches(corpus, "mask", batch_size, vocab_size,
                           input_kind, shuffle, seed, epoch, start, pool_size,
                           dtype)
