"""Where a run keeps its checkpoints, and what goes into them.

The store owns the run directory's ``checkpoint.npz`` (the latest) and
``best.npz`` (a copy of the best so far), the choice made at start-up
(resume, start fresh, or refuse to overwrite), the resume identity (the
settings, corpus and float type that must agree between a checkpoint and
the run resuming it), what a checkpoint older than a setting implies
(:data:`ABSENT_FROM_OLD_CHECKPOINTS`), the arrays a checkpoint holds and
their restore. The file format itself is :mod:`lstm_accum.checkpoint`.

Array keys: ``model/<param>``, ``acc/<accumulator state key>`` (and, under
MPI, ``acc/distributed/size``: the number of ranks),
``rng/<i>.<layer>/rstate`` and ``rng/<i>.<layer>/<j>`` (dropout streams),
``data/train_target_counts``.
"""
import os
import time

import numpy as np

from .. import checkpoint as ckpt
from ..accumulation import SIZE_KEY, check_resume
from ..data import Vocabulary
from ..exceptions import CheckpointError, IncompatibleStateError, InputError
from .pause import pause_point
from .run_state import RunState
from .settings import RESUMABLE_CHANGES, SETTINGS
from ..version import __version__

__all__ = ["CheckpointStore", "run_identity", "state_arrays",
           "accumulator_arrays", "load_accumulator_arrays",
           "checkpoint_metadata", "restore_state", "settings_for_resume",
           "saved_settings", "ABSENT_FROM_OLD_CHECKPOINTS"]

#: Settings added after the first checkpoints were written, and the value
#: a checkpoint without them implies (how its version behaved): it held out
#: its whole validation fraction and had no warm-up. A setting added later
#: with a new behaviour belongs here; one whose default reproduces the old
#: behaviour does not (a missing setting takes its default).
ABSENT_FROM_OLD_CHECKPOINTS = {"valid_max": 0, "warmup": 0}


def saved_settings(config):
    """A checkpoint's settings with those it predates filled in.

    Parameters
    ----------
    config : dict
        ``metadata['config']`` of a checkpoint.

    Returns
    -------
    dict
        A copy, plus the value of :data:`ABSENT_FROM_OLD_CHECKPOINTS` for
        each setting there that the checkpoint lacks (give it to
        :meth:`~lstm_accum.training.TrainConfig.from_dict` for the run's
        configuration).
    """
    filled = dict(config)
    for name, value in ABSENT_FROM_OLD_CHECKPOINTS.items():
        filled.setdefault(name, value)
    return filled


def settings_for_resume(values, given):
    """The settings of ``lstm-accum train --resume``: those not given on the
    command line continue the checkpoint's run.

    A run resumed after an upgrade that changed a default (or added a
    setting) goes on as it was configured, instead of being refused as
    another run.

    Parameters
    ----------
    values : dict
        Every setting's value as parsed (given or default); ``out`` names
        the run directory.
    given : set of str
        The settings given on the command line.

    Returns
    -------
    dict
        ``values`` with each setting that may not change on resume and was
        not given taken from ``out/checkpoint.npz`` (a setting the
        checkpoint predates: the value its version implied). Unchanged when
        there is no readable checkpoint (the trainer then starts afresh or
        says what is wrong with it).
    """
    metadata = ckpt.read_metadata(os.path.join(values["out"],
                                               ckpt.LATEST_NAME))
    if not metadata or not isinstance(metadata.get("config"), dict):
        return dict(values)
    saved = saved_settings(metadata["config"])
    filled = dict(values)
    for s in SETTINGS:
        if s.name in saved and s.name not in given and \
                s.name not in RESUMABLE_CHANGES:
            filled[s.name] = saved[s.name]
    return filled


def run_identity(config, corpus_sha256, floatX):
    """What must agree between a checkpoint and the run resuming it.

    Parameters
    ----------
    config : TrainConfig
    corpus_sha256 : str
    floatX : str

    Returns
    -------
    dict
        Every setting not in ``RESUMABLE_CHANGES``, plus ``corpus_sha256``
        and ``floatX``.
    """
    ident = {k: v for k, v in config.to_dict().items()
             if k not in RESUMABLE_CHANGES}
    ident["corpus_sha256"] = corpus_sha256
    ident["floatX"] = floatX
    return ident


class CheckpointStore(object):
    """The checkpoints of one run directory.

    Parameters
    ----------
    out : str
        The run directory.
    is_root : bool
        Only the root rank writes; on the others :meth:`save` and
        :meth:`prepare` do nothing.
    """

    def __init__(self, out, is_root=True):
        self.out = os.path.abspath(out)
        self.is_root = is_root
        self.checkpoint_path = os.path.join(self.out, ckpt.LATEST_NAME)
        self.best_path = os.path.join(self.out, ckpt.BEST_NAME)

    def exists(self):
        """True when the directory holds a latest checkpoint."""
        return os.path.exists(self.checkpoint_path)

    def open_for_resume(self, resume, identity, corpus, log):
        """The checkpoint to continue from, or None for a fresh start.

        Parameters
        ----------
        resume : bool
        identity : dict
            :func:`run_identity` of this run.
        corpus : str
            The corpus path (for the message when it changed).
        log : callable

        Returns
        -------
        Checkpoint or None

        Raises
        ------
        InputError
            A checkpoint exists and ``resume`` is False.
        CheckpointError, IncompatibleStateError
            Damaged checkpoint, or one of another run.
        """
        if resume and self.exists():
            saved = ckpt.load_checkpoint(self.checkpoint_path)
            self.check_resumable(saved.metadata, identity, corpus)
            return saved
        if resume:
            log("no checkpoint in %s: starting a new run" % self.out)
        elif self.exists():
            raise InputError("%s already holds a checkpoint; pass --resume to "
                             "continue that run, or choose another --out"
                             % self.out)
        return None

    def vocabulary(self, saved):
        """The vocabulary of a checkpoint opened for resume (None: none)."""
        if saved is None:
            return None
        return Vocabulary.from_dict(saved.metadata["vocabulary"],
                                    source=self.checkpoint_path)

    def check_resumable(self, metadata, identity, corpus):
        """Refuse a checkpoint whose run identity differs from ``identity``.

        Raises
        ------
        IncompatibleStateError
            Naming the corpus (by its SHA-256) or the first setting that
            differs.
        """
        saved = saved_settings(metadata.get("config", {}))
        saved["corpus_sha256"] = metadata.get("corpus_sha256")
        saved["floatX"] = metadata.get("floatX")
        if saved["corpus_sha256"] != identity["corpus_sha256"]:
            raise IncompatibleStateError(
                "the corpus %s differs from the one checkpoint %s was "
                "trained on (sha256 %s... vs %s...); resume with the same "
                "corpus or start a new run in another --out"
                % (corpus, self.checkpoint_path,
                   str(saved["corpus_sha256"])[:12],
                   identity["corpus_sha256"][:12]))
        keys = [k for k in identity if k != "corpus_sha256"]
        ckpt.check_compatible(saved, identity, keys,
                              what="checkpoint %s" % self.checkpoint_path)

    def prepare(self):
        """Create the directory, check it is writable, sweep leftovers.

        Raises
        ------
        CheckpointError
            When the directory cannot be created or written.
        """
        if not self.is_root:
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

    def save(self, arrays, metadata, best=False):
        """Write ``checkpoint.npz`` (and copy it to ``best.npz`` if ``best``).

        Returns
        -------
        str
            The latest checkpoint's path.

        Raises
        ------
        CheckpointError
            When a file cannot be written; the previous one is untouched.
        """
        if not self.is_root:
            return self.checkpoint_path
        ckpt.save_checkpoint(self.checkpoint_path, arrays, metadata,
                             before_sync=_pause_in_write)
        if best:
            ckpt.copy_checkpoint(self.checkpoint_path, self.best_path,
                                 before_sync=_pause_in_write)
        return self.checkpoint_path


def _pause_in_write():
    # the kill test's pause: the data is written, not yet fsync'ed/renamed
    pause_point("checkpoint-write")


def state_arrays(model, acc, train_target_counts, dist):
    """All arrays a checkpoint holds.

    Parameters
    ----------
    model : LanguageModel
    acc : GradientAccumulator
    train_target_counts : numpy.ndarray
        Target counts of the training split (for the unigram baseline of
        ``lstm-accum eval`` on any corpus).
    dist : Distributed
        Its number of ranks is recorded (see :func:`accumulator_arrays`).

    Returns
    -------
    dict of str -> numpy.ndarray
    """
    arrays = {"model/" + k: v for k, v in model.param_values().items()}
    arrays.update(accumulator_arrays(acc, dist))
    arrays.update(model.rng_state())
    arrays["data/train_target_counts"] = train_target_counts
    return arrays


def accumulator_arrays(acc, dist):
    """The accumulator's state under ``acc/``, with the number of ranks.

    Take it right after ``apply``: accumulators and counters are then
    empty and every rank holds the same state, so rank 0's state is the
    state of the run.

    Parameters
    ----------
    acc : GradientAccumulator
    dist : Distributed
        Under MPI, ``acc/`` + :data:`SIZE_KEY` records its number of ranks;
        a run without MPI records none (read as one), so its checkpoints
        are what they always were.

    Returns
    -------
    dict of str -> numpy.ndarray
    """
    arrays = {"acc/" + k: v for k, v in acc.state().items()}
    if dist.enabled:
        arrays["acc/" + SIZE_KEY] = np.array(dist.size, dtype=np.int64)
    return arrays


def load_accumulator_arrays(arrays, acc, dist):
    """Load what :func:`accumulator_arrays` saved, on as many ranks.

    Parameters
    ----------
    arrays : mapping of str -> array
        A checkpoint's arrays (keys other than ``acc/...`` are ignored).
    acc : GradientAccumulator
    dist : Distributed

    Raises
    ------
    IncompatibleStateError
        When the checkpoint was written by another number of ranks
        (:func:`~lstm_accum.accumulation.check_resume`, which names both),
        or as ``acc.load_state`` says; then nothing was changed.
    """
    state = {k[len("acc/"):]: v for k, v in arrays.items()
             if k.startswith("acc/")}
    saved = state.pop(SIZE_KEY, None)
    check_resume(None if saved is None else int(np.asarray(saved)),
                 dist.size)
    acc.load_state(state)


def checkpoint_metadata(config, model, data, corpus_sha256, floatX,
                        counters):
    """The JSON part of a checkpoint.

    Parameters
    ----------
    config : TrainConfig
    model : LanguageModel
    data : RunData
        Its vocabulary and unigram baseline are recorded.
    corpus_sha256, floatX : str
        The rest of the resume identity.
    counters : dict
        ``RunState.to_dict(learning_rate)``.

    Returns
    -------
    dict
    """
    return {
        "lstm_accum_version": __version__,
        "config": config.to_dict(),
        "model_config": dict(model.config),
        "vocabulary": data.vocab.to_dict(),
        "corpus_sha256": corpus_sha256,
        "floatX": floatX,
        "unigram_perplexity": data.unigram_perplexity,
        "counters": counters,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def restore_state(saved, model, acc, dist):
    """Load a checkpoint's parameters, accumulator and random streams.

    Parameters
    ----------
    saved : Checkpoint
    model : LanguageModel
    acc : GradientAccumulator
    dist : Distributed
        Its number of ranks must equal the checkpoint's.

    Returns
    -------
    RunState
        The checkpoint's counters and position.

    Raises
    ------
    IncompatibleStateError
        Parameters, accumulator state, random streams or number of ranks
        that do not fit.
    """
    arrays = saved.arrays
    model_values = {k[len("model/"):]: v for k, v in arrays.items()
                    if k.startswith("model/")}
    try:
        model.set_param_values(model_values)
    except InputError as err:
        raise IncompatibleStateError("checkpoint %s does not fit the "
                                     "model: %s" % (saved.path, err))
    load_accumulator_arrays(arrays, acc, dist)
    model.set_rng_state(arrays)
    return RunState.from_dict(saved.metadata["counters"])
