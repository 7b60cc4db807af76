"""What a run tells the world: the metrics log (``metrics.jsonl``), the
progress bar, the plot (``curves.png``) and the human-readable log lines.

Only the root rank writes files and the bar; the log callable of the other
ranks is silent (see :func:`rank_log`).
"""
import contextlib
import json
import math
import os
import sys
import time

from ..exceptions import NonFiniteError
from ..files import atomic_open
from .plotting import plot_curves, read_metrics

__all__ = ["Reporter", "METRICS_NAME", "CURVES_NAME", "finite_or_none",
           "rank_log", "update_record", "validation_record"]

#: Seconds between two redraws of ``curves.png`` (see :meth:`Reporter.plot`).
PLOT_INTERVAL_S = 30.0
#: The metrics file in a run directory: one JSON record per line.
METRICS_NAME = "metrics.jsonl"
#: The plot in a run directory.
CURVES_NAME = "curves.png"


def finite_or_none(value):
    """``float(value)``, or None when it is not finite (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _silent(*args, **kwargs):
    """The log of ranks other than 0."""


def rank_log(log, dist):
    """``log`` on the root rank, a silent one elsewhere (only rank 0 prints)."""
    return log if dist.is_root else _silent


def update_record(state, result, normalize, learning_rate, tokens_per_s):
    """The ``kind='update'`` metrics record of the window just applied.

    Parameters
    ----------
    state : RunState
        After the update was counted, before the window is reset.
    result : ApplyResult
    normalize : str
        The accumulator's normalisation (to report the loss in nats per
        target token whatever it divided by).
    learning_rate : float
    tokens_per_s : float or None

    Returns
    -------
    dict
    """
    denominator = {"samples": result.samples, "tokens": result.tokens,
                   "sum": 1}[normalize]
    loss = (result.loss * denominator / result.tokens
            if result.applied and result.tokens else float("nan"))
    return {"kind": "update", "update": state.update,
            "epoch": state.epoch + 1,
            "samples": state.window_samples, "tokens": state.window_tokens,
            "loss": finite_or_none(loss),
            "grad_norm": finite_or_none(result.grad_norm),
            "skipped": result.skipped, "applied": result.applied,
            "lr": learning_rate, "tokens_per_s": tokens_per_s,
            "elapsed": round(state.elapsed, 4)}


def validation_record(state, perplexity, improved, scheduled,
                      learning_rate):
    """The ``kind='validation'`` metrics record.

    ``best`` is the schedule's best for a scheduled validation; for the
    report-only one at ``max_updates`` it includes this perplexity without
    changing the schedule's.
    """
    best = state.best_perplexity
    return {"kind": "validation", "update": state.update,
            # the epoch the validated parameters finished (1-based)
            "epoch": state.epoch + 1 if state.batch else state.epoch,
            "perplexity": finite_or_none(perplexity),
            "best": best if scheduled else min(perplexity, best or perplexity),
            "improved": improved, "scheduled": scheduled,
            "lr": learning_rate, "elapsed": round(state.elapsed, 4),
            "valid_elapsed": round(state.valid_elapsed, 4)}


class Reporter(object):
    """Metrics records, progress bar, plot and log lines of one run.

    Parameters
    ----------
    config : TrainConfig
        Reads ``out``, ``progress``, ``log_every``, ``corpus``, ``units``.
    is_root : bool
        Only the root rank writes the metrics, the plot and the bar.
    log : callable
        Receives each human-readable line.
    """

    def __init__(self, config, is_root, log):
        self.config = config
        self.is_root = is_root
        self.log = log
        out = os.path.abspath(config.out)
        self.metrics_path = os.path.join(out, METRICS_NAME)
        self.curves_path = os.path.join(out, CURVES_NAME)
        self._metrics = None
        self.bar = None
        self._plotted_at = None       # time.monotonic() of the last plot
        self._plot_pending = False    # validations since then not drawn

    # -- metrics ---------------------------------------------------------------
    def open(self, update):
        """Start the metrics file at ``update`` (the directory must exist).

        A killed run may have logged updates after its last checkpoint:
        only the records the checkpoint covers (``update`` and before) are
        kept, so the file matches the run.
        """
        if not self.is_root:
            return
        self._remove_leftovers()
        records = [r for r in read_metrics(self.metrics_path)
                   if r.get("update", 0) <= update]
        with atomic_open(self.metrics_path, "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        self._metrics = open(self.metrics_path, "a", encoding="utf-8")

    def _remove_leftovers(self):
        """Temporary files of a metrics or plot rewrite a kill interrupted."""
        directory = os.path.dirname(self.metrics_path)
        prefixes = tuple("." + os.path.basename(p) + "."
                         for p in (self.metrics_path, self.curves_path))
        for name in os.listdir(directory):
            if name.startswith(prefixes) and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))

    def write(self, record):
        """Append one record to ``metrics.jsonl`` (flushed at once)."""
        if self._metrics is None:
            return
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()

    def close(self):
        """Close the bar and the metrics file."""
        if self.bar is not None:
            self.bar.close()
        if self._metrics is not None:
            self._metrics.close()

    # -- display ---------------------------------------------------------------
    def start_bar(self, initial, total):
        """Show the progress bar (``progress='on'``, or ``'auto'`` on a
        terminal) from ``initial`` to ``total`` updates."""
        enabled = {"on": True, "off": False}.get(
            self.config.progress, sys.stderr.isatty())
        if not enabled or not self.is_root:
            return
        from tqdm import tqdm   # only when a bar is shown
        self.bar = tqdm(total=total, initial=initial, unit="upd",
                        dynamic_ncols=True, file=sys.stderr, leave=False)

    def announce(self, data, model, floatX, effective_batch):
        """The lines printed once at the start of a run."""
        c = self.config
        self.log("corpus %s: %d training sentences (%d tokens), %d "
                 "validation; vocabulary %d (+3 specials), coverage %.1f%%"
                 % (c.corpus, len(data.train), data.train.num_tokens,
                    len(data.valid), data.vocab.size, 100 * data.coverage))
        self.log("model: %s, %s" % (model, floatX))
        self.log(effective_batch)
        self.log("unigram baseline perplexity on validation: %.2f"
                 % data.unigram_perplexity)

    def resumed(self, path, state):
        """The line saying where a resumed run continues."""
        self.log("resuming from %s: update %d, epoch %d, minibatch %d%s"
                 % (path, state.update, state.epoch + 1, state.batch,
                    " (mid-window: %d sentences)" % state.window_samples
                    if state.window_samples else ""))

    def interrupted(self, state, checkpoint_path):
        """The line after Ctrl-C: where the run stopped, how to resume."""
        self.log("interrupted at update %d (epoch %d, minibatch %d): "
                 "checkpoint saved to %s; to continue, run the same command "
                 "with --resume (TrainConfig(resume=True))"
                 % (state.update, state.epoch + 1, state.batch,
                    checkpoint_path))

    def non_finite(self, err, update, last_good):
        """Record a stop on non-finite windows; the error to raise.

        Parameters
        ----------
        err : NonFiniteError
            The accumulator's.
        update : int
        last_good : str or None
            The latest checkpoint, if one was written.

        Returns
        -------
        NonFiniteError
            ``err``'s message plus where the run stopped and what is kept.
        """
        self.write({"kind": "stopped", "update": update,
                    "reason": "non-finite", "message": str(err)})
        where = ("the last good checkpoint is %s" % last_good if last_good
                 else "no checkpoint had been written yet")
        return NonFiniteError("%s; training stopped after update %d and %s"
                              % (err, update, where))

    def update(self, record):
        """Write an update record and show it (bar, or a log line every
        ``log_every`` updates; a non-finite window always)."""
        self.write(record)
        if not record["applied"]:
            self.log("update %d: non-finite window, %d samples skipped, "
                     "parameters unchanged" % (record["update"],
                                               record["skipped"]))
        loss = record["loss"]
        text = "%.3f" % loss if loss is not None else "nan"
        if self.bar is not None:
            postfix = {"loss": text,
                       "tok/s": "%.0f" % (record["tokens_per_s"] or 0),
                       "lr": "%.3g" % record["lr"]}
            if record["skipped"]:
                postfix["skipped"] = record["skipped"]
            # show a non-finite window at once, not at the next refresh
            self.bar.set_postfix(postfix, refresh=bool(record["skipped"]))
            self.bar.update(1)
        elif self.config.log_every and (
                record["update"] % self.config.log_every == 0
                or record["update"] == 1):
            self.log("update %d (epoch %d): %s nats/token, %.0f tokens/s, "
                     "lr %.3g%s" % (record["update"], record["epoch"], text,
                                    record["tokens_per_s"] or 0, record["lr"],
                                    ", %d skipped" % record["skipped"]
                                    if record["skipped"] else ""))

    def line(self, text):
        """A log line that does not break the bar (written above it)."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            self.log(text)

    def plot(self, vocab_size, final=False):
        """Redraw ``curves.png`` from the metrics file: at most once every
        :data:`PLOT_INTERVAL_S` seconds (drawing takes about a second, as
        long as training on 20,000 tokens), and when ``final``, if anything
        is not drawn yet. The plot is output only: skipping one changes
        nothing in the run."""
        if not self.is_root:
            return
        now = time.monotonic()
        if final and not self._plot_pending:
            return
        if not final and self._plotted_at is not None and \
                now - self._plotted_at < PLOT_INTERVAL_S:
            self._plot_pending = True
            return
        self._plotted_at, self._plot_pending = now, False
        c = self.config
        plot_curves(read_metrics(self.metrics_path), self.curves_path,
                    title="%s (V=%d, H=%d)" % (os.path.basename(c.corpus),
                                               vocab_size, c.units))
