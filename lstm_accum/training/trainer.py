"""The training loop: corpus -> vocabulary -> model -> windows of accumulated
gradients -> one averaged update per window, with validation, checkpoints,
metrics, a learning-rate schedule and exact resumption.

Use it through :func:`train` (or ``lstm-accum train``)::

    from lstm_accum.training import TrainConfig, train
    result = train(TrainConfig(corpus="text.txt", out="runs/lm",
                               accumulate=64, batching="bucket"))

What one run writes into ``config.out``:

``checkpoint.npz``
    The latest checkpoint (see :mod:`lstm_accum.checkpoint`), written at
    every validation, on Ctrl-C and when training ends.
``best.npz``
    A copy of the checkpoint with the lowest validation perplexity so far
    (of every validation whose parameters were checkpointed, the one at
    ``max_updates`` included).
``metrics.jsonl``
    One JSON record per update (``kind='update'``: update, epoch, samples,
    tokens, loss in nats per target token, grad_norm, skipped, applied, lr,
    tokens_per_s, elapsed) and one per validation (``kind='validation'``:
    update, epoch, perplexity, best, lr, elapsed, valid_elapsed: the part
    of elapsed spent validating, checkpoints and plot included).
``curves.png``
    Training loss and validation perplexity against updates, redrawn after
    a validation (at most every 30 s) and when the run ends.

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
``lr_decay`` (halved by default, as theanolm does), except that the
``patience``-th validation in a row without improvement stops training
instead (so ``patience - 1`` decays come before the stop). Reaching
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

Parts
-----
:class:`Trainer` is the loop. It calls parts with one job each: the
settings (:mod:`.settings`), the run's data (:mod:`.data`), the model and
accumulator (:mod:`.build`), the run state (:mod:`.run_state`), the
checkpoint store (:mod:`.store`), the window policy (:mod:`.windows`), the
plateau schedule (:mod:`.schedule`), the reporter (:mod:`.reporter`) and
the Ctrl-C guard (:mod:`.interrupt`).

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
import math
import time
from collections import namedtuple

import numpy as np

from ..backend import theano
from ..data import make_batch, plan_epoch
from ..evaluation import perplexity, target_counts
from ..exceptions import NonFiniteError, InputError
from ..files import file_sha256
from .build import build_parts, make_distributed
from .cadence import ValidationCadence
from .data import RunData
from .interrupt import SigintGuard
from .pause import pause_point
from .reporter import Reporter, rank_log, update_record, validation_record
from .run_state import RunState
from .schedule import PlateauSchedule
from .settings import validate_config
from .store import (CheckpointStore, checkpoint_metadata, restore_state,
                    run_identity, state_arrays)
from .windows import WindowPolicy, describe_effective_batch

__all__ = ["Trainer", "TrainResult", "train"]

TrainResult = namedtuple("TrainResult", [
    "status", "updates", "epoch", "best_perplexity", "last_perplexity",
    "unigram_perplexity", "checkpoint", "out"])
TrainResult.__doc__ = """How a run ended.

``status`` is ``'finished'`` (all epochs), ``'max_updates'``,
``'early_stopped'`` (patience exhausted) or ``'interrupted'`` (Ctrl-C);
``best_perplexity`` that of the parameters in ``best.npz``;
``checkpoint`` the path of the latest checkpoint."""


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
        Built by the caller (e.g. ``build_model(cell=factory)``), instead
        of one from the config; it must fit the corpus and the config.
    accumulator : GradientAccumulator, optional
        Over ``model`` (required then), holding no half-full window; its
        update rule and ``max_norm`` are used as they are. Passing both
        lets several runs share the compiled functions (see
        :func:`~lstm_accum.training.build.build_parts`).

    Attributes
    ----------
    config, data, vocab, model, acc, dist, state
        Settings, the run's data and vocabulary, the model, its accumulator
        (this rank's share of the window), the ranks, the :class:`RunState`.
    store, reporter, windows, schedule
        The parts the loop calls.

    Raises
    ------
    InputError
        For a bad setting or unusable corpus. Nothing is written to
        ``config.out`` before the settings, the corpus and (when resuming)
        the checkpoint are checked and the model is built.
    CheckpointError, IncompatibleStateError
        When resuming from a damaged or incompatible checkpoint.
    """

    def __init__(self, config, log=print, on_update=None, model=None,
                 accumulator=None):
        validate_config(config)
        self.dist = make_distributed(config)
        log = rank_log(log, self.dist)
        if self.dist.size > 1:
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
        self.store = CheckpointStore(config.out, self.dist.is_root)
        self.reporter = Reporter(config, self.dist.is_root, log)
        self.windows = WindowPolicy.from_config(config)
        self.schedule = PlateauSchedule.from_config(config)
        self.corpus_sha256 = file_sha256(config.corpus)
        saved = self.store.open_for_resume(
            config.resume, run_identity(config, self.corpus_sha256,
                                        self.floatX), config.corpus, log)
        self.data = RunData(config, self.store.vocabulary(saved))
        self.vocab = self.data.vocab
        self.cadence = ValidationCadence.from_config(config, self.data.valid)
        self.model, self.acc = build_parts(config, len(self.vocab), model,
                                           accumulator)
        # Rank 0's weights and optimizer state on every rank (collective).
        self.dist.broadcast_parameters(self.acc)
        # what run() keeps while it runs: seconds spent on the open window,
        # whether the last window was applied, the start time, the guard
        self._window_time, self._last_applied = 0.0, True
        self._clock = self._guard = None
        self.state = RunState()
        if saved is not None:
            self.state = restore_state(saved, self.model, self.acc, self.dist)
            self.reporter.resumed(saved.path, self.state)

    # -- checkpoints -------------------------------------------------------------
    def state_arrays(self):
        """All arrays a checkpoint holds (model, accumulator, random streams).

        Returns
        -------
        dict of str -> numpy.ndarray
        """
        return state_arrays(self.model, self.acc,
                            target_counts(self.data.train, len(self.vocab)),
                            self.dist)

    def state_metadata(self):
        """The JSON part of a checkpoint (configuration, vocabulary, ...)."""
        return checkpoint_metadata(
            self.config, self.model, self.data, self.corpus_sha256,
            self.floatX, self.state.to_dict(self.acc.get_learning_rate()))

    def save_checkpoint(self, best=False):
        """Write ``checkpoint.npz`` (and ``best.npz`` when ``best``).

        Returns and raises as :meth:`CheckpointStore.save` does; when it
        raises, the state stays in memory.
        """
        if not self.dist.is_root:
            return self.store.checkpoint_path     # only rank 0 writes
        return self.store.save(self.state_arrays(), self.state_metadata(),
                               best=best)

    # -- the loop ----------------------------------------------------------------
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
        c, d, s = self.config, self.data, self.state
        self.store.prepare()
        self.reporter.open(s.update)
        self.reporter.announce(d, self.model, self.floatX,
                               describe_effective_batch(c, d.train) + "; "
                               + self.cadence.describe())
        self._last_applied, self._window_time = True, 0.0
        self._clock = time.time() - s.elapsed
        self.reporter.start_bar(s.update, c.max_updates or
                                self.windows.windows_per_epoch(d.train)
                                * c.epochs)
        try:
            with SigintGuard(self.log) as self._guard:
                status = self._loop()
            self.reporter.plot(len(self.vocab), final=True)
        except NonFiniteError as err:
            raise self.reporter.non_finite(
                err, s.update, self.store.checkpoint_path
                if self.store.exists() else None) from None
        finally:
            self.reporter.close()
        return TrainResult(status, s.update, s.epoch, s.best_saved_perplexity,
                           s.last_perplexity, d.unigram_perplexity,
                           self.store.checkpoint_path, self.store.out)

    def _loop(self):
        c, s = self.config, self.state
        if s.stopped:
            self.log("the checkpoint's run had already stopped (%s); "
                     "nothing to do" % s.stopped)
            return s.stopped
        while s.epoch < c.epochs:
            status = self._epoch()
            if status:
                return status
        self.save_checkpoint()
        return "finished"

    def _epoch(self):
        """The rest of the current epoch; returns a stop status or None."""
        c, s = self.config, self.state
        lengths = np.asarray(self.data.train.lengths)
        plan = plan_epoch(self.data.train, c.batching,
                          c.batch_size if c.batching != "sample" else 1,
                          c.seed, s.epoch)
        while s.batch < len(plan):
            indices = plan[s.batch]
            t0 = time.time()
            # Every rank walks the same plan and counts every batch (so
            # windows end at the same batch on all ranks) but accumulates
            # only its own (batch b belongs to rank b % size).
            if self.dist.owns(s.batch):
                # The accumulator range-checks the ids of every call;
                # make_batch needs the vocabulary size only to build one-hot
                # rows (and then checks the ids it puts there instead).
                self.acc.accumulate(*make_batch(
                    self.data.train, indices, c.batching, c.input,
                    len(self.vocab) if c.input == "onehot" else None))
            self._window_time += time.time() - t0
            n = len(indices)
            s.count_batch(n, int(lengths[np.asarray(indices)].sum()) + n)
            pause_point("window")
            if self.windows.is_full(s.window_samples, s.window_tokens):
                status = self._do_update()
                if status:
                    return status
                if self.dist.size > 1 and self._stop_requested():
                    return self._interrupt()   # all ranks, same window
            if self._guard.interrupted and self.dist.size == 1:
                return self._interrupt()
        # end of epoch: the partial window, then validation
        policy = self.windows.at_epoch_end(s.window_samples,
                                           s.epoch == c.epochs - 1)
        if policy == "apply":
            status = self._do_update()
            if status:
                return status
        elif policy == "drop":
            self._drop_window()
        s.epoch += 1
        s.batch = 0
        if self.cadence.at_epoch_end(s, s.epoch == c.epochs):
            status = self._validate(scheduled=True)
            if status:
                return status
        if self._stop_requested():
            return self._interrupt()
        return None

    def _stop_requested(self):
        """Ctrl-C seen (by any rank: all ranks stop at the same point)."""
        flag = self._guard.interrupted
        return flag if self.dist.size == 1 else self.dist.any_true(flag)

    def _drop_window(self):
        """Discard a half-full window (accumulators and its counters)."""
        s = self.state
        self.acc.reset()
        self.log("epoch %d: dropped a partial window of %d sentences"
                 % (s.epoch + 1, s.window_samples))
        s.close_window()

    def _tick(self):
        self.state.elapsed = time.time() - self._clock

    def _do_update(self):
        c, s = self.config, self.state
        t0 = time.time()
        self.dist.allreduce_window(self.acc)   # every rank's share summed
        res = self.acc.apply()     # NonFiniteError propagates to run()
        self._window_time += time.time() - t0
        self._tick()
        s.update += 1
        self._last_applied = res.applied
        tokens_per_s = (s.window_tokens / self._window_time
                        if self._window_time > 0 else None)
        record = update_record(s, res, c.normalize,
                               self.acc.get_learning_rate(), tokens_per_s)
        s.close_window()
        self._window_time = 0.0
        self.reporter.update(record)
        if self.on_update is not None:
            self.on_update(self, record)
        if self.cadence.after_update(s):
            status = self._validate(scheduled=True)
            if status:
                return status
        if c.max_updates and s.update >= c.max_updates:
            if s.last_valid_update != s.update:
                self._validate(scheduled=False)
            else:
                self.save_checkpoint()
            return "max_updates"
        return None

    def _validate(self, scheduled):
        """Validation, schedule, checkpoint, plot. Returns a stop status.

        A validation that is not ``scheduled`` (the report at
        ``max_updates``) changes nothing the rest of the run depends on, so
        a run stopped there and resumed equals one that never stopped.
        """
        s, t0 = self.state, time.time()     # valid_elapsed: all of this
        pause_point("validation")
        ppl = float(perplexity(self.model, self.data.valid,
                               batch_size=self.config.batch_size))
        self._tick()
        s.valid_elapsed, t0 = s.valid_elapsed + time.time() - t0, time.time()
        s.last_perplexity = ppl
        decision = self.schedule.decide(s, ppl, self.acc.get_learning_rate(),
                                        scheduled)
        if decision.learning_rate != self.acc.get_learning_rate():
            self.acc.set_learning_rate(decision.learning_rate)
        note = decision.note
        record = validation_record(s, ppl, decision.improved, scheduled,
                                   self.acc.get_learning_rate())
        self.reporter.write(record)
        if self._last_applied and math.isfinite(ppl):
            self.save_checkpoint(best=s.saved_validation(ppl))
        else:   # parameters after a non-finite window: keep the last good
            note += "; not checkpointed (non-finite)"
        self.reporter.plot(len(self.vocab))
        s.valid_elapsed += time.time() - t0
        self.reporter.line(
            "validation at update %d: perplexity %.2f (best %s, unigram "
            "%.2f)%s" % (s.update, ppl, "n/a" if record["best"] is None
                         else "%.2f" % record["best"],
                         self.data.unigram_perplexity, note))
        return decision.stop

    def _interrupt(self):
        self._tick()
        self.save_checkpoint()
        self.reporter.interrupted(self.state, self.store.checkpoint_path)
        return "interrupted"


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
