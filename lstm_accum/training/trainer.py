"""The training loop: corpus -> vocabulary -> model -> windows of accumulated
gradients -> one averaged update per window, with validation, checkpoints,
metrics, a learning-rate schedule and exact resumption.

Use it through :func:`train` (or ``lstm-accum train``)::

    from lstm_accum.train import TrainConfig, train
    result = train(TrainConfig(corpus="text.txt", out="runs/lm",
                               accumulate=64, batching="bucket"))

What one run writes into ``config.out``:

``checkpoint.npz``
    The latest checkpoint (see :mod:`lstm_accum.checkpoint`), written at
    every validation, on Ctrl-C and when training ends.
``best.npz``
    A copy of the checkpoint with the lowest validation perplexity so far.
``metrics.jsonl``
    One JSON record per update (``kind='update'``: update, epoch, samples,
    tokens, loss in nats per target token, grad_norm, skipped, applied, lr,
    tokens_per_s, elapsed) and one per validation (``kind='validation'``:
    update, epoch, perplexity, best, lr, elapsed).
``curves.png``
    Training loss and validation perplexity against updates, redrawn at
    every validation.

Windows
-------
A window is what one update averages over. With ``accumulate=N`` it closes
as soon as it holds at least ``N`` sentences; with ``accumulate_tokens=T``
as soon as it holds at least ``T`` target tokens (an even effective batch
when sentence lengths vary). With ``batching='bucket'`` or ``'mask'``,
minibatches of ``batch_size`` sentences are never split, so a window may
overshoot ``N`` by less than one minibatch; the update always uses the true
counts (the accumulator divides by them).

At the end of an epoch a window that is not full is, by ``partial_window``:

``'apply'`` (default)
    applied with its true (smaller) count;
``'drop'``
    discarded: its gradients are zeroed and no update is made;
``'carry'``
    kept open and filled with the first sentences of the next epoch (after
    the last epoch it is applied).

Schedule
--------
Validation perplexity is computed every ``valid_every`` updates and at the
end of every epoch. When it did not improve on the best so far by a
relative ``min_improvement``, the learning rate is multiplied by
``lr_decay`` (halved by default, as theanolm does); after ``patience``
validations in a row without improvement training stops early. Reaching
``max_updates`` ends training with a report-only validation that does not
change the schedule, so stopping after ``k`` updates and resuming gives the
same run as never stopping.

Resuming
--------
``resume=True`` continues from ``out/checkpoint.npz``: parameters, the
accumulator (including a half-full window), the optimizer's state, the
learning rate and schedule, counters, dropout random streams and the
iterator position (epoch and minibatch index in the epoch's seeded plan).
A resumed run is bit-identical to one that was never stopped. Settings that
change the run (model, data, batching, optimizer, seed...) must equal the
checkpoint's; only ``epochs``, ``max_updates``, ``patience``,
``progress``, ``log_every``, ``impl`` and the paths may differ. The corpus is
identified by its SHA-256, so it may move but not change.

Ctrl-C saves a checkpoint (mid-window if need be) and returns with
``status='interrupted'``; a second Ctrl-C aborts at once.

Failures
--------
A checkpoint that cannot be written (full disk) raises
:class:`~lstm_accum.exceptions.CheckpointError` at once; the previous
checkpoint on disk is untouched and the training state is still in memory
(``Trainer.save_checkpoint`` can be called again). After
``max_bad_windows`` consecutive non-finite windows the accumulator raises
:class:`~lstm_accum.exceptions.NonFiniteError`; training stops without
writing, so the last good checkpoint is kept.
"""
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import time
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from ..backend import theano, lasagne
from ..exceptions import (CheckpointError, IncompatibleStateError, InputError,
                         NonFiniteError)
from .. import checkpoint as ckpt
from ..accumulation.distributed import SIZE_KEY, Distributed

__all__ = ["TrainConfig", "Trainer", "TrainResult", "train", "OPTIMIZERS",
           "validate_config", "RESUMABLE_CHANGES", "load_model",
           "METRICS_NAME", "CURVES_NAME", "target_counts",
           "unigram_baseline"]

METRICS_NAME = "metrics.jsonl"
CURVES_NAME = "curves.png"

#: The Lasagne update rules selectable by name.
OPTIMIZERS = ("adagrad", "sgd", "momentum", "nesterov_momentum", "rmsprop",
              "adadelta", "adam")

#: Settings that may differ between a checkpoint and the run resuming it.
RESUMABLE_CHANGES = ("corpus", "out", "resume", "epochs", "max_updates",
                     "patience", "progress", "log_every", "distributed",
                     "impl")


@dataclass
class TrainConfig:
    """Every setting of a training run; saved, resolved, in each checkpoint.

    The defaults form one block, each with its meaning and unit.
    """
    # -- data ----------------------------------------------------------------
    corpus: str = ""                # text file, UTF-8, one sentence per line
    out: str = "runs/lm"            # run directory (checkpoints, metrics, plot)
    vocab_size: int = 2000          # K most frequent words; V = K + 3 specials
    valid_fraction: float = 0.05    # share of sentences held out for validation
    lowercase: bool = True          # lowercase the text before counting words
    max_length: int = 100           # longer sentences are split (words)
    # -- model ---------------------------------------------------------------
    units: int = 256                # H, units per recurrent layer
    layers: int = 1                 # stacked recurrent layers
    cell: str = "lstm"              # 'lstm' or 'gru'
    input: str = "ids"              # 'ids' (row lookup) or 'onehot' (as asked)
    dropout: float = 0.0            # dropout between/after recurrent layers
    grad_clipping: float = 5.0      # Lasagne's per-step gradient clipping
    impl: str = "auto"              # LSTM as fused C op ('auto'), or 'scan'
    # -- batching and accumulation -------------------------------------------
    batching: str = "bucket"        # 'sample' (1 sentence), 'bucket', 'mask'
    batch_size: int = 32            # sentences per minibatch (bucket/mask)
    accumulate: int = 64            # N: sentences per update (window)
    accumulate_tokens: int = 0      # T > 0: windows of >= T target tokens instead
    normalize: str = "samples"      # 'samples' (question) | 'tokens' | 'sum'
    partial_window: str = "apply"   # epoch-end partial window: apply|drop|carry
    # -- optimizer -----------------------------------------------------------
    optimizer: str = "adagrad"      # any name in OPTIMIZERS
    lr: float = 0.005               # initial learning rate
    max_norm: float = 0.0           # > 0: clip the averaged gradient's norm
    max_bad_windows: int = 5        # stop after this many non-finite windows
    # -- schedule ------------------------------------------------------------
    epochs: int = 10                # passes over the training sentences
    max_updates: int = 0            # > 0: stop after this many updates
    valid_every: int = 100          # validate every this many updates (0: epoch)
    lr_decay: float = 0.5           # lr factor when validation does not improve
    min_improvement: float = 0.0    # relative perplexity gain that counts
    patience: int = 3               # validations without gain before stopping
    # -- misc ----------------------------------------------------------------
    seed: int = 1                   # weights, split, minibatch order, dropout
    float64: bool = False           # set theano floatX=float64 for this process
    resume: bool = False            # continue from out/checkpoint.npz
    progress: str = "auto"          # progress bar: 'auto' (tty), 'on', 'off'
    log_every: int = 10             # without a bar: one log line per N updates
    distributed: str = "auto"       # MPI: 'auto' (on under mpirun -n K>1), 'on', 'off'

    def to_dict(self):
        """The configuration as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`; unknown keys are refused.

        Raises
        ------
        InputError
            For a key that is not a setting.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError("unknown training settings %s; known: %s"
                             % (unknown, sorted(names)))
        return cls(**data)


TrainResult = namedtuple("TrainResult", [
    "status", "updates", "epoch", "best_perplexity", "last_perplexity",
    "unigram_perplexity", "checkpoint", "out"])
TrainResult.__doc__ = """How a run ended.

``status`` is ``'finished'`` (all epochs), ``'max_updates'``,
``'early_stopped'`` (patience exhausted) or ``'interrupted'`` (Ctrl-C);
``checkpoint`` the path of the latest checkpoint."""


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, bool)


def validate_config(config):
    """Check every setting; raise one clear error for the first bad one.

    Parameters
    ----------
    config : TrainConfig

    Raises
    ------
    InputError
        Naming the setting, the value given, what is expected.
    """
    def bad(name, expected):
        raise InputError("%s must be %s, got %r"
                         % (name, expected, getattr(config, name)))

    if not isinstance(config.corpus, str) or not config.corpus:
        raise InputError("corpus must be the path of a text file (one "
                         "sentence per line), got %r" % (config.corpus,))
    if not os.path.isfile(config.corpus):
        raise InputError("corpus file %s does not exist (or is not a file); "
                         "give the path of a UTF-8 text file, one sentence "
                         "per line" % config.corpus)
    if not isinstance(config.out, str) or not config.out:
        bad("out", "a directory path")
    if os.path.exists(config.out) and not os.path.isdir(config.out):
        raise InputError("output directory %s exists and is not a directory; "
                         "choose another --out" % config.out)
    positive_ints = ["vocab_size", "units", "layers", "batch_size",
                     "accumulate", "epochs", "max_bad_windows", "max_length"]
    for name in positive_ints:
        value = getattr(config, name)
        if not _is_int(value) or value < 1:
            bad(name, "an integer >= 1")
    for name in ("accumulate_tokens", "max_updates", "valid_every",
                 "patience", "log_every"):
        value = getattr(config, name)
        if not _is_int(value) or value < 0:
            bad(name, "an integer >= 0")
    if not _is_int(config.seed):
        bad("seed", "an integer")
    if not _is_number(config.lr) or not math.isfinite(config.lr) \
            or config.lr <= 0:
        bad("lr", "a finite number > 0 (e.g. 0.005)")
    if not _is_number(config.max_norm) or not math.isfinite(config.max_norm) \
            or config.max_norm < 0:
        bad("max_norm", "a finite number >= 0 (0 disables it)")
    if not _is_number(config.valid_fraction) or \
            not 0 < config.valid_fraction < 1:
        bad("valid_fraction", "a number strictly between 0 and 1")
    if not _is_number(config.dropout) or not 0 <= config.dropout < 1:
        bad("dropout", "a number in [0, 1)")
    if not _is_number(config.grad_clipping) or \
            not math.isfinite(config.grad_clipping) or \
            config.grad_clipping < 0:
        bad("grad_clipping", "a finite number >= 0 (0 disables it)")
    if not _is_number(config.lr_decay) or not 0 < config.lr_decay <= 1:
        bad("lr_decay", "a number in (0, 1]")
    if not _is_number(config.min_improvement) or \
            not 0 <= config.min_improvement < 1:
        bad("min_improvement", "a number in [0, 1)")
    choices = {"cell": ("lstm", "gru"), "input": ("ids", "onehot"),
               "impl": ("auto", "fused", "scan"),
               "batching": ("sample", "bucket", "mask"),
               "normalize": ("samples", "tokens", "sum"),
               "partial_window": ("apply", "drop", "carry"),
               "optimizer": OPTIMIZERS, "progress": ("auto", "on", "off"),
               "distributed": ("auto", "on", "off")}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            bad(name, "one of %s" % ", ".join(allowed))
    for name in ("lowercase", "float64", "resume"):
        if not isinstance(getattr(config, name), bool):
            bad(name, "True or False")


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _update_rule(name, config):
    """The Lasagne rule and its extra keyword arguments."""
    rule = getattr(lasagne.updates, name)
    kwargs = {}
    if name in ("momentum", "nesterov_momentum"):
        kwargs["momentum"] = 0.9
    return rule, kwargs


def _random_streams(model):
    """The MRG random streams of a model's layers (dropout), in layer order."""
    streams = []
    for layer in lasagne.layers.get_all_layers(model.output_layer):
        srng = getattr(layer, "_srng", None)
        if srng is not None:
            streams.append((layer.name or type(layer).__name__, srng))
    return streams


def _rng_state(model):
    arrays = {}
    for i, (name, srng) in enumerate(_random_streams(model)):
        prefix = "rng/%d.%s" % (i, name)
        arrays[prefix + "/rstate"] = np.array(srng.rstate)
        for j, (var, _) in enumerate(srng.state_updates):
            arrays["%s/%d" % (prefix, j)] = np.array(var.get_value())
    return arrays


def _load_rng_state(model, arrays):
    wanted = _rng_state(model)
    if sorted(wanted) != sorted(k for k in arrays if k.startswith("rng/")):
        raise IncompatibleStateError(
            "checkpoint random streams %s do not match the model's %s"
            % (sorted(k for k in arrays if k.startswith("rng/")),
               sorted(wanted)))
    for i, (name, srng) in enumerate(_random_streams(model)):
        prefix = "rng/%d.%s" % (i, name)
        srng.rstate = np.array(arrays[prefix + "/rstate"])
        for j, (var, _) in enumerate(srng.state_updates):
            var.set_value(np.array(arrays["%s/%d" % (prefix, j)]))


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def target_counts(corpus, vocab_size):
    """Counts of every target id in a corpus: words, and one ``</s>`` per
    sentence (the iterator convention).

    Parameters
    ----------
    corpus : EncodedCorpus
    vocab_size : int

    Returns
    -------
    numpy.ndarray of float64, shape ``(vocab_size,)``
    """
    from ..data.vocabulary import EOS_ID
    counts = np.bincount(np.asarray(corpus.ids, dtype=np.int64),
                         minlength=vocab_size).astype(np.float64)
    counts[EOS_ID] += len(corpus)
    return counts


def unigram_baseline(train_counts, eval_corpus, smoothing=1.0):
    """Add-one unigram perplexity on a corpus, from saved training counts.

    The same model as :func:`lstm_accum.evaluation.unigram_perplexity`
    (``p(w) = (c(w) + a) / (N + a V)`` over all V ids), computed from the
    target counts a checkpoint stores instead of the training corpus.

    Parameters
    ----------
    train_counts : array of float, shape ``(V,)``
        :func:`target_counts` of the training split.
    eval_corpus : EncodedCorpus
    smoothing : float

    Returns
    -------
    float

    Raises
    ------
    InputError
        Ids outside ``[0, V)`` or a corpus without sentences.
    """
    train_counts = np.asarray(train_counts, dtype=np.float64)
    V = len(train_counts)
    ids = np.asarray(eval_corpus.ids)
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise InputError("corpus ids must lie in [0, %d), got %d..%d"
                         % (V, ids.min(), ids.max()))
    if len(eval_corpus) == 0:
        raise InputError("the corpus to evaluate has no sentences")
    probs = (train_counts + smoothing) / (train_counts.sum() + smoothing * V)
    counts = target_counts(eval_corpus, V)
    return float(np.exp(-np.dot(counts, np.log(probs)) / counts.sum()))


class _Data(object):
    """Vocabulary, encoded train/validation corpora and their statistics."""

    def __init__(self, config, vocab=None):
        from ..data.corpus import encode_file, prepare_corpus, split_corpus
        from ..evaluation.scoring import unigram_perplexity
        # The encoded corpus is cached beside the text file (keyed by its
        # content, the vocabulary and these settings), so the second run
        # of the same corpus skips reading and tokenizing it.
        read_kwargs = {"lowercase": config.lowercase,
                       "max_length": config.max_length}
        if vocab is None:
            vocab, corpus, self.read_stats = prepare_corpus(
                config.corpus, config.vocab_size, **read_kwargs)
        else:
            corpus, self.read_stats = encode_file(config.corpus, vocab,
                                                  **read_kwargs)
        self.vocab = vocab
        if len(corpus) < 2:
            raise InputError("corpus %s has %d sentence(s); at least 2 are "
                             "needed (one to train on, one to validate)"
                             % (config.corpus, len(corpus)))
        train_c, valid_c, _ = split_corpus(corpus, config.valid_fraction,
                                           0.0, config.seed)
        if len(train_c) == 0 or len(valid_c) == 0:
            raise InputError("valid_fraction=%r leaves %d training and %d "
                             "validation sentences of %d; choose a fraction "
                             "that leaves at least one of each"
                             % (config.valid_fraction, len(train_c),
                                len(valid_c), len(corpus)))
        self.train, self.valid = train_c, valid_c
        self.unigram_perplexity = float(unigram_perplexity(
            train_c, valid_c, len(vocab)))


class Trainer(object):
    """One training run: set-up, the loop, checkpoints and metrics.

    Parameters
    ----------
    config : TrainConfig
    log : callable, optional
        Receives each human-readable line (default ``print``).
    on_update : callable, optional
        ``on_update(trainer, record)`` after every update (tests, custom
        monitoring); ``record`` is the metrics record just written.
    model : LanguageModel, optional
        A model built by the caller (e.g. with a custom recurrent layer via
        ``build_model(cell=factory)``), used instead of building one from
        the config's model settings. Its vocabulary size, ``batching`` and
        input kind must match the corpus and the config.
    accumulator : GradientAccumulator, optional
        An accumulator over ``model``'s loss and inputs (requires
        ``model``); its update rule and ``max_norm`` are used as they are,
        its learning rate is set to ``config.lr`` on a fresh start, and it
        must hold no half-full window. Passing both lets several runs share
        the compiled functions.

    Raises
    ------
    InputError
        For a bad setting or unusable corpus (before anything is written).
    CheckpointError, IncompatibleStateError
        When resuming from a damaged or incompatible checkpoint.

    Notes
    -----
    Nothing is written to ``config.out`` until the configuration, the corpus
    and (when resuming) the checkpoint have been checked and the model is
    built.
    """

    def __init__(self, config, log=print, on_update=None, model=None,
                 accumulator=None):
        validate_config(config)
        # MPI ranks (a single process when not launched by mpirun): every
        # rank runs this same loop on its share of each window.
        self.dist = Distributed({"auto": None, "on": True,
                                 "off": False}[config.distributed])
        if self.dist.size > 1 and config.partial_window == "carry":
            raise InputError(
                "partial_window='carry' keeps a half-full window across the "
                "epoch-end checkpoint, which a distributed run cannot save "
                "(each rank holds part of it); use 'apply' or 'drop'")
        if not self.dist.is_root:
            log = _silent       # only rank 0 prints
        elif self.dist.size > 1:
            log("distributed: %d MPI ranks, one allreduce per update"
                % self.dist.size)
        if accumulator is not None and model is None:
            raise InputError("an accumulator needs its model: pass model= "
                             "as well")
        self.config = config
        self.log = log
        self.on_update = on_update
        if config.float64:
            # Lasagne and the accumulator read floatX when they build.
            theano.config.floatX = "float64"
        self.floatX = theano.config.floatX
        self.out = os.path.abspath(config.out)
        self.checkpoint_path = os.path.join(self.out, ckpt.LATEST_NAME)
        self.best_path = os.path.join(self.out, ckpt.BEST_NAME)
        self.metrics_path = os.path.join(self.out, METRICS_NAME)
        self.curves_path = os.path.join(self.out, CURVES_NAME)
        self.corpus_sha256 = _file_sha256(config.corpus)

        saved = None
        if config.resume and os.path.exists(self.checkpoint_path):
            saved = ckpt.load_checkpoint(self.checkpoint_path)
            self._check_resumable(saved.metadata)
        elif config.resume:
            self.log("no checkpoint in %s: starting a new run" % self.out)
        elif os.path.exists(self.checkpoint_path):
            raise InputError("%s already holds a checkpoint; pass --resume to "
                             "continue that run, or choose another --out"
                             % self.out)

        vocab = None
        if saved is not None:
            from ..data.vocabulary import Vocabulary
            vocab = Vocabulary.from_dict(saved.metadata["vocabulary"],
                                         source=self.checkpoint_path)
        self.data = _Data(config, vocab)
        self.vocab = self.data.vocab
        self._build(model, accumulator)
        # Rank 0's weights and optimizer state on every rank (collective).
        self.acc = self.dist.wrap(self.acc)

        # counters and position (also what a checkpoint restores)
        self.update = 0
        self.epoch = 0
        self.batch = 0
        self.samples_seen = 0
        self.tokens_seen = 0
        self.window_samples = 0
        self.window_tokens = 0
        self.elapsed = 0.0
        self.best_perplexity = None
        self.bad_validations = 0
        self.last_valid_update = -1
        self.last_perplexity = None
        self.stopped = None
        if saved is not None:
            self._restore(saved)

    # -- set-up ----------------------------------------------------------------
    def _build(self, model, accumulator):
        from ..accumulation.accumulator import GradientAccumulator
        from ..models.language_model import build_model
        c = self.config
        if model is not None:
            self._check_model(model)
            self.model = model
            if accumulator is None:
                self.acc = self._make_accumulator(GradientAccumulator)
            else:
                self._check_accumulator(accumulator)
                self.acc = accumulator
                self.acc.set_learning_rate(c.lr)
                self.acc.max_bad_windows = c.max_bad_windows
            return
        self.model = build_model(
            len(self.vocab), c.units, num_layers=c.layers, input=c.input,
            batching=c.batching, cell=c.cell, dropout=c.dropout,
            grad_clipping=c.grad_clipping if c.grad_clipping > 0 else False,
            seed=c.seed, impl=c.impl)
        self.acc = self._make_accumulator(GradientAccumulator)

    def _make_accumulator(self, GradientAccumulator):
        c = self.config
        rule, kwargs = _update_rule(c.optimizer, c)
        return GradientAccumulator(
            self.model.loss(), self.model.params, self.model.inputs,
            normalize=c.normalize, update=rule, learning_rate=c.lr,
            update_kwargs=kwargs,
            max_norm=c.max_norm if c.max_norm > 0 else None,
            num_samples=self.model.num_samples(),
            num_tokens=self.model.num_tokens(),
            vocab_size=len(self.vocab), max_bad_windows=c.max_bad_windows)

    def _check_model(self, model):
        c = self.config
        for what, have, want in (
                ("vocabulary size", model.vocab_size, len(self.vocab)),
                ("batching", model.batching, c.batching),
                ("input", model.input_kind, c.input)):
            if have != want:
                raise InputError("the model given has %s %r but the run "
                                 "needs %r; build it with the same setting"
                                 % (what, have, want))

    def _check_accumulator(self, acc):
        c = self.config
        if acc.normalize != c.normalize:
            raise InputError("the accumulator given normalizes by %r but "
                             "the config says normalize=%r"
                             % (acc.normalize, c.normalize))
        if set(acc.params) != set(self.model.params):
            raise InputError("the accumulator given does not train the "
                             "model's parameters; build it from "
                             "model.loss() and model.params")
        if acc.samples or acc.skipped:
            raise InputError("the accumulator given holds a half-full "
                             "window (%d samples); apply() it or start "
                             "from a fresh one" % acc.samples)

    def _run_identity(self):
        """What must agree between a checkpoint and the run resuming it."""
        ident = {k: v for k, v in self.config.to_dict().items()
                 if k not in RESUMABLE_CHANGES}
        ident["corpus_sha256"] = self.corpus_sha256
        ident["floatX"] = self.floatX
        return ident

    def _check_resumable(self, metadata):
        saved = dict(metadata.get("config", {}))
        saved["corpus_sha256"] = metadata.get("corpus_sha256")
        saved["floatX"] = metadata.get("floatX")
        wanted = self._run_identity()
        if saved["corpus_sha256"] != wanted["corpus_sha256"]:
            raise IncompatibleStateError(
                "the corpus %s differs from the one checkpoint %s was "
                "trained on (sha256 %s... vs %s...); resume with the same "
                "corpus or start a new run in another --out"
                % (self.config.corpus, self.checkpoint_path,
                   str(saved["corpus_sha256"])[:12],
                   wanted["corpus_sha256"][:12]))
        keys = [k for k in wanted if k != "corpus_sha256"]
        ckpt.check_compatible(saved, wanted, keys,
                              what="checkpoint %s" % self.checkpoint_path)

    def _restore(self, saved):
        arrays, meta = saved.arrays, saved.metadata
        model_values = {k[len("model/"):]: v for k, v in arrays.items()
                        if k.startswith("model/")}
        try:
            self.model.set_param_values(model_values)
        except InputError as err:
            raise IncompatibleStateError("checkpoint %s does not fit the "
                                         "model: %s" % (saved.path, err))
        acc_state = {k[len("acc/"):]: v for k, v in arrays.items()
                     if k.startswith("acc/")}
        self.dist.check_resume(acc_state.get(SIZE_KEY))
        self.acc.load_state(acc_state)
        _load_rng_state(self.model, arrays)
        counters = meta["counters"]
        for name in ("update", "epoch", "batch", "samples_seen",
                     "tokens_seen", "window_samples", "window_tokens",
                     "bad_validations", "last_valid_update"):
            setattr(self, name, int(counters[name]))
        self.elapsed = float(counters["elapsed"])
        self.best_perplexity = counters["best_perplexity"]
        self.last_perplexity = counters["last_perplexity"]
        self.stopped = counters.get("stopped")
        self.log("resuming from %s: update %d, epoch %d, minibatch %d%s"
                 % (saved.path, self.update, self.epoch + 1, self.batch,
                    " (mid-window: %d sentences)" % self.window_samples
                    if self.window_samples else ""))

    # -- checkpoints -------------------------------------------------------------
    def state_arrays(self):
        """All arrays a checkpoint holds (model, accumulator, random streams).

        Returns
        -------
        dict of str -> numpy.ndarray
        """
        arrays = {"model/" + k: v
                  for k, v in self.model.param_values().items()}
        arrays.update(("acc/" + k, v) for k, v in self.acc.state().items())
        arrays.update(_rng_state(self.model))
        # for the unigram baseline of 'lstm-accum eval' on any corpus
        arrays["data/train_target_counts"] = target_counts(
            self.data.train, len(self.vocab))
        return arrays

    def state_metadata(self):
        """The JSON part of a checkpoint (configuration, vocabulary, ...)."""
        from .. import __version__
        model_config = dict(self.model.config)
        return {
            "lstm_accum_version": __version__,
            "config": self.config.to_dict(),
            "model_config": model_config,
            "vocabulary": self.vocab.to_dict(),
            "corpus_sha256": self.corpus_sha256,
            "floatX": self.floatX,
            "unigram_perplexity": self.data.unigram_perplexity,
            "counters": {
                "update": self.update, "epoch": self.epoch,
                "batch": self.batch, "samples_seen": self.samples_seen,
                "tokens_seen": self.tokens_seen,
                "window_samples": self.window_samples,
                "window_tokens": self.window_tokens,
                "elapsed": self.elapsed,
                "best_perplexity": self.best_perplexity,
                "bad_validations": self.bad_validations,
                "last_valid_update": self.last_valid_update,
                "last_perplexity": self.last_perplexity,
                "stopped": self.stopped,
                "learning_rate": self.acc.get_learning_rate(),
            },
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def save_checkpoint(self, best=False):
        """Write ``checkpoint.npz`` (and ``best.npz`` when ``best``).

        Raises
        ------
        CheckpointError
            When the file cannot be written; the previous one is untouched
            and the state stays in memory.
        """
        if not self.dist.is_root:
            return self.checkpoint_path     # only rank 0 writes
        ckpt.save_checkpoint(self.checkpoint_path, self.state_arrays(),
                             self.state_metadata())
        if best:
            ckpt.copy_checkpoint(self.checkpoint_path, self.best_path)
        return self.checkpoint_path

    # -- metrics -----------------------------------------------------------------
    def _prepare_out(self):
        if not self.dist.is_root:
            self._metrics = None            # only rank 0 writes
            return
        try:
            os.makedirs(self.out, exist_ok=True)
            probe = os.path.join(self.out, ".write-test")
            open(probe, "w").close()
            os.unlink(probe)
        except OSError as err:
            raise CheckpointError("cannot write to the output directory %s: "
                                  "%s; choose a writable --out"
                                  % (self.out, err.strerror or err)) from None
        ckpt.remove_stale_temporaries(self.out)
        # A killed run may have logged updates after its last checkpoint:
        # keep only what the checkpoint covers, so the file matches the run.
        from .plotting import read_metrics
        records = [r for r in read_metrics(self.metrics_path)
                   if r.get("update", 0) <= self.update]
        tmp = self.metrics_path + ".part"
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, self.metrics_path)
        self._metrics = open(self.metrics_path, "a", encoding="utf-8")

    def _write_record(self, record):
        if self._metrics is None:
            return
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()

    # -- the loop ----------------------------------------------------------------
    def _window_full(self):
        c = self.config
        if c.accumulate_tokens > 0:
            return self.window_tokens >= c.accumulate_tokens
        return self.window_samples >= c.accumulate

    def _plan(self, epoch):
        from ..data.batches import plan_epoch
        c = self.config
        return plan_epoch(self.data.train, c.batching,
                          c.batch_size if c.batching != "sample" else 1,
                          c.seed, epoch)

    def _describe_batch(self):
        c = self.config
        lengths = np.asarray(self.data.train.lengths)
        mean_tokens = float(lengths.mean()) + 1.0   # + </s>
        if c.accumulate_tokens > 0:
            window = ("at least %d target tokens (~%.0f sentences of %.1f "
                      "tokens)" % (c.accumulate_tokens,
                                   c.accumulate_tokens / mean_tokens,
                                   mean_tokens))
        else:
            window = ("%d sentences (~%.0f target tokens at %.1f per "
                      "sentence)" % (c.accumulate, c.accumulate * mean_tokens,
                                     mean_tokens))
        if c.batching == "sample":
            calls = "one sentence per accumulate call"
        else:
            calls = "minibatches of up to %d sentences (%s)" % (
                c.batch_size, "equal lengths, no mask" if c.batching ==
                "bucket" else "padded, masked")
        return ("effective batch: %s per update; %s; normalize=%s, "
                "optimizer=%s, lr=%g; partial window at epoch end: %s"
                % (window, calls, c.normalize, c.optimizer, c.lr,
                   c.partial_window))

    def run(self):
        """Train until the epochs, ``max_updates`` or patience run out.

        Returns
        -------
        TrainResult

        Raises
        ------
        NonFiniteError
            After ``max_bad_windows`` consecutive non-finite windows; the
            last good checkpoint is left as it was.
        CheckpointError
            When a checkpoint cannot be written.
        """
        c = self.config
        self._prepare_out()
        d = self.data
        self.log("corpus %s: %d training sentences (%d tokens), %d "
                 "validation; vocabulary %d (+3 specials), coverage %.1f%%"
                 % (c.corpus, len(d.train), d.train.num_tokens,
                    len(d.valid), self.vocab.size,
                    100 * self._coverage()))
        self.log("model: %s, %s" % (self.model, self.floatX))
        self.log(self._describe_batch())
        self.log("unigram baseline perplexity on validation: %.2f"
                 % d.unigram_perplexity)
        self._interrupted = False
        self._last_applied = True
        self._clock = time.time() - self.elapsed
        previous = self._install_sigint()
        self._bar = self._make_bar()
        try:
            status = self._loop()
        except NonFiniteError as err:
            self._write_record({"kind": "stopped", "update": self.update,
                                "reason": "non-finite", "message": str(err)})
            where = ("the last good checkpoint is %s" % self.checkpoint_path
                     if os.path.exists(self.checkpoint_path) else
                     "no checkpoint had been written yet")
            raise NonFiniteError("%s; training stopped after update %d and %s"
                                 % (err, self.update, where)) from None
        finally:
            self._restore_sigint(previous)
            if self._bar is not None:
                self._bar.close()
            if self._metrics is not None:
                self._metrics.close()
        return TrainResult(status, self.update, self.epoch,
                           self.best_perplexity, self.last_perplexity,
                           d.unigram_perplexity, self.checkpoint_path,
                           self.out)

    def _coverage(self):
        return float(self.data.read_stats.coverage)

    def _install_sigint(self):
        def handler(signum, frame):
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = True
            self.log("\ninterrupt: finishing the current step and saving a "
                     "checkpoint (Ctrl-C again to abort at once)")
        try:
            return [signal.signal(signal.SIGINT, handler)]
        except ValueError:   # not the main thread: keep Python's default
            return None

    @staticmethod
    def _restore_sigint(previous):
        if previous is not None:
            # None means a handler not set from Python: back to the default
            signal.signal(signal.SIGINT, previous[0] if previous[0]
                          is not None else signal.default_int_handler)

    def _make_bar(self):
        c = self.config
        enabled = {"on": True, "off": False}.get(
            c.progress, sys.stderr.isatty())
        if not enabled or not self.dist.is_root:
            return None
        from tqdm import tqdm
        total = c.max_updates
        if not total:   # an estimate: windows per epoch times epochs
            train = self.data.train
            per_epoch = (train.num_tokens + len(train)) / c.accumulate_tokens \
                if c.accumulate_tokens else len(train) / c.accumulate
            total = int(math.ceil(per_epoch)) * c.epochs
        return tqdm(total=total, initial=self.update, unit="upd",
                    dynamic_ncols=True, file=sys.stderr, leave=False)

    def _loop(self):
        from ..data.batches import make_batch
        c = self.config
        if self.stopped:
            self.log("the checkpoint's run had already stopped (%s); "
                     "nothing to do" % self.stopped)
            return self.stopped
        lengths = np.asarray(self.data.train.lengths)
        V = len(self.vocab)
        self._window_time = 0.0
        while self.epoch < c.epochs:
            plan = self._plan(self.epoch)
            while self.batch < len(plan):
                indices = plan[self.batch]
                t0 = time.time()
                # Every rank walks the same plan and counts every batch (so
                # windows end at the same batch on all ranks) but accumulates
                # only its own: batch b belongs to rank b % size.
                if self.batch % self.dist.size == self.dist.rank:
                    arrays = make_batch(self.data.train, indices, c.batching,
                                        c.input, V)
                    self.acc.accumulate(*arrays)
                self._window_time += time.time() - t0
                n = len(indices)
                tokens = int(lengths[np.asarray(indices)].sum()) + n
                self.window_samples += n
                self.window_tokens += tokens
                self.samples_seen += n
                self.tokens_seen += tokens
                self.batch += 1
                ckpt.pause_point("window")
                if self._window_full():
                    status = self._do_update()
                    if status:
                        return status
                    if self.dist.size > 1 and self._stop_requested():
                        return self._interrupt()   # all ranks, same window
                if self._interrupted and self.dist.size == 1:
                    return self._interrupt()
            # end of epoch: the partial window, then validation
            last_epoch = self.epoch == c.epochs - 1
            if self.window_samples:
                policy = c.partial_window
                if policy == "carry" and last_epoch:
                    policy = "apply"
                if policy == "apply":
                    status = self._do_update()
                    if status:
                        return status
                elif policy == "drop":
                    self._drop_window()
            self.epoch += 1
            self.batch = 0
            if self.last_valid_update != self.update or self.update == 0:
                status = self._validate(scheduled=True)
                if status:
                    return status
            if self._stop_requested():
                return self._interrupt()
        self.save_checkpoint()
        return "finished"

    def _stop_requested(self):
        """Ctrl-C seen (by any rank: all ranks stop at the same point)."""
        if self.dist.size == 1:
            return self._interrupted
        return self.dist.any_true(self._interrupted)

    def _drop_window(self):
        """Zero the accumulators and counters of a half-full window."""
        state = self.acc.state()
        prefix = self.acc.name + "/"
        for key, value in state.items():
            if key.startswith(prefix) and key != prefix + "bad_windows":
                state[key] = np.zeros_like(value)
        self.acc.load_state(state)
        self.log("epoch %d: dropped a partial window of %d sentences"
                 % (self.epoch + 1, self.window_samples))
        self.window_samples = 0
        self.window_tokens = 0

    def _tick(self):
        self.elapsed = time.time() - self._clock

    def _do_update(self):
        c = self.config
        t0 = time.time()
        res = self.acc.apply()     # NonFiniteError propagates to run()
        self._window_time += time.time() - t0
        self._tick()
        self.update += 1
        self._last_applied = res.applied
        denominator = {"samples": res.samples, "tokens": res.tokens,
                       "sum": 1}[c.normalize]
        loss = (res.loss * denominator / res.tokens
                if res.applied and res.tokens else float("nan"))
        tokens_per_s = (self.window_tokens / self._window_time
                        if self._window_time > 0 else None)
        record = {"kind": "update", "update": self.update,
                  "epoch": self.epoch + 1,
                  "samples": self.window_samples,
                  "tokens": self.window_tokens,
                  "loss": _finite_or_none(loss),
                  "grad_norm": _finite_or_none(res.grad_norm),
                  "skipped": res.skipped, "applied": res.applied,
                  "lr": self.acc.get_learning_rate(),
                  "tokens_per_s": tokens_per_s,
                  "elapsed": round(self.elapsed, 4)}
        self._write_record(record)
        self.window_samples = 0
        self.window_tokens = 0
        self._window_time = 0.0
        if not res.applied:
            self.log("update %d: non-finite window, %d samples skipped, "
                     "parameters unchanged" % (self.update, res.skipped))
        self._show(record)
        if self.on_update is not None:
            self.on_update(self, record)
        if c.valid_every and self.update % c.valid_every == 0:
            status = self._validate(scheduled=True)
            if status:
                return status
        if c.max_updates and self.update >= c.max_updates:
            if self.last_valid_update != self.update:
                self._validate(scheduled=False)
            else:
                self.save_checkpoint()
            return "max_updates"
        return None

    def _show(self, record):
        c = self.config
        loss = record["loss"]
        text = "loss %s" % ("%.3f" % loss if loss is not None else "nan")
        if self._bar is not None:
            postfix = {"loss": text[5:],
                       "tok/s": "%.0f" % (record["tokens_per_s"] or 0),
                       "lr": "%.3g" % record["lr"]}
            if record["skipped"]:
                postfix["skipped"] = record["skipped"]
            # show a non-finite window at once, not at the next refresh
            self._bar.set_postfix(postfix, refresh=bool(record["skipped"]))
            self._bar.update(1)
        elif c.log_every and (record["update"] % c.log_every == 0
                              or record["update"] == 1):
            self.log("update %d (epoch %d): %s nats/token, %.0f tokens/s, "
                     "lr %.3g%s" % (record["update"], record["epoch"], text[5:],
                                    record["tokens_per_s"] or 0, record["lr"],
                                    ", %d skipped" % record["skipped"]
                                    if record["skipped"] else ""))

    def _perplexity(self):
        from ..evaluation.scoring import perplexity
        return float(perplexity(self.model, self.data.valid,
                                batch_size=self.config.batch_size))

    def _validate(self, scheduled):
        """Validation, schedule, checkpoint, plot. Returns a stop status.

        A validation that is not ``scheduled`` (the report at
        ``max_updates``) changes nothing the rest of the run depends on, so
        a run stopped there and resumed equals one that never stopped.
        """
        c = self.config
        ckpt.pause_point("validation")
        ppl = self._perplexity()
        self._tick()
        self.last_perplexity = ppl
        improved = math.isfinite(ppl) and (
            self.best_perplexity is None or
            ppl < self.best_perplexity * (1 - c.min_improvement))
        status = None
        note = ""
        if scheduled:
            self.last_valid_update = self.update
            if improved:
                self.best_perplexity = ppl
                self.bad_validations = 0
            else:
                self.bad_validations += 1
                if c.patience and self.bad_validations >= c.patience:
                    status = self.stopped = "early_stopped"
                    note = ("; no improvement in %d validations: stopping"
                            % self.bad_validations)
                else:
                    lr = self.acc.get_learning_rate() * c.lr_decay
                    self.acc.set_learning_rate(lr)
                    note = "; no improvement: learning rate -> %.4g" % lr
        # the epoch the validated parameters finished (1-based)
        epoch = self.epoch + 1 if self.batch else self.epoch
        record = {"kind": "validation", "update": self.update,
                  "epoch": epoch, "perplexity": _finite_or_none(ppl),
                  "best": self.best_perplexity if scheduled else
                  min(ppl, self.best_perplexity or ppl),
                  "improved": improved, "scheduled": scheduled,
                  "lr": self.acc.get_learning_rate(),
                  "elapsed": round(self.elapsed, 4)}
        self._write_record(record)
        if self._last_applied and math.isfinite(ppl):
            self.save_checkpoint(best=improved and scheduled)
        else:
            # Parameters after a non-finite window may be the cause of it:
            # keep the last good checkpoint instead of overwriting it.
            note += "; not checkpointed (non-finite)"
        self._plot()
        line = ("validation at update %d: perplexity %.2f (best %.2f, "
                "unigram %.2f)%s" % (self.update, ppl, record["best"],
                                     self.data.unigram_perplexity, note))
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            self.log(line)
        return status

    def _plot(self):
        if not self.dist.is_root:
            return
        from .plotting import plot_curves, read_metrics
        plot_curves(read_metrics(self.metrics_path), self.curves_path,
                    title="%s (V=%d, H=%d)" % (os.path.basename(
                        self.config.corpus), len(self.vocab),
                        self.config.units))

    def _interrupt(self):
        self._tick()
        self.save_checkpoint()
        self.log("interrupted at update %d (epoch %d, minibatch %d): "
                 "checkpoint saved to %s; to continue, run the same command "
                 "with --resume (TrainConfig(resume=True))"
                 % (self.update, self.epoch + 1, self.batch,
                    self.checkpoint_path))
        return "interrupted"


def _silent(*args, **kwargs):
    """The log of ranks other than 0."""


def train(config, log=print, on_update=None):
    """Train a language model as configured; see the module notes.

    Parameters
    ----------
    config : TrainConfig
    log : callable, optional
        Receives human-readable lines (default ``print``).
    on_update : callable, optional
        ``on_update(trainer, record)`` after every update.

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        Bad settings or corpus (nothing written).
    CheckpointError, IncompatibleStateError
        Unreadable or incompatible checkpoint on resume; a checkpoint that
        cannot be written.
    NonFiniteError
        Too many consecutive non-finite windows (last good checkpoint kept).
    """
    return Trainer(config, log=log, on_update=on_update).run()


def load_model(path, batching=None, input=None):
    """Rebuild the model and vocabulary of a checkpoint, for eval/sampling.

    Parameters
    ----------
    path : str
        A ``checkpoint.npz`` or ``best.npz``.
    batching, input : str, optional
        Build with another batching or input kind than training used (the
        parameters are the same); default: as trained.

    Returns
    -------
    model : LanguageModel
    vocab : Vocabulary
    checkpoint : Checkpoint

    Raises
    ------
    CheckpointError
        Missing, damaged or foreign file.
    IncompatibleStateError
        Newer format, or parameters that do not fit the recorded model.
    """
    from ..models.language_model import build_model
    from ..data.vocabulary import Vocabulary
    saved = ckpt.load_checkpoint(path)
    meta = saved.metadata
    try:
        mc = dict(meta["model_config"])
        vocab = Vocabulary.from_dict(meta["vocabulary"], source=path)
    except (KeyError, TypeError, InputError) as err:
        raise CheckpointError("%s is not a training checkpoint of lstm_accum "
                              "(%s)" % (path, err)) from None
    if mc.get("cell") not in ("lstm", "gru"):
        raise IncompatibleStateError(
            "checkpoint %s holds a model with a custom recurrent layer (%r); "
            "rebuild it in Python with build_model(cell=...) and load the "
            "'model/' arrays with model.set_param_values" % (path,
                                                             mc.get("cell")))
    if mc["vocab_size"] != len(vocab):
        raise IncompatibleStateError(
            "checkpoint %s: model vocab_size=%d but its vocabulary has %d "
            "entries" % (path, mc["vocab_size"], len(vocab)))
    model = build_model(mc["vocab_size"], mc["num_units"],
                        num_layers=mc["num_layers"],
                        input=input or mc["input"],
                        batching=batching or mc["batching"], cell=mc["cell"],
                        dropout=mc["dropout"],
                        grad_clipping=mc["grad_clipping"], seed=mc["seed"])
    values = {k[len("model/"):]: v for k, v in saved.arrays.items()
              if k.startswith("model/")}
    try:
        model.set_param_values(values)
    except InputError as err:
        raise IncompatibleStateError("checkpoint %s does not fit its "
                                     "recorded model: %s" % (path, err))
    return model, vocab, saved
