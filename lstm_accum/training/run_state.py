"""The state of a run that a checkpoint restores: counters and position.

One dataclass holds it, so the fields are listed once; its :meth:`to_dict`
is exactly the ``'counters'`` entry of a checkpoint's metadata and
:meth:`from_dict` reads it back (also from checkpoints written before the
package was split into subpackages).
"""
import dataclasses
from dataclasses import dataclass
from typing import Optional

__all__ = ["RunState"]

# Counters that checkpoints of earlier versions do not hold.
_OPTIONAL = ("stopped", "valid_tokens_seen", "valid_elapsed",
             "best_saved_perplexity")


@dataclass
class RunState:
    """Counters and position of a training run.

    Integer fields are read back as ``int``, ``elapsed`` as ``float``; the
    optional ones keep their JSON value (``None`` until set).
    """
    update: int = 0                 # updates made (applied or skipped windows)
    epoch: int = 0                  # epochs finished (0-based current epoch)
    batch: int = 0                  # minibatches done in the current epoch
    samples_seen: int = 0           # sentences accumulated, all epochs
    tokens_seen: int = 0            # target tokens accumulated, all epochs
    window_samples: int = 0         # sentences in the open window
    window_tokens: int = 0          # target tokens in the open window
    elapsed: float = 0.0            # seconds of training, over all restarts
    best_perplexity: Optional[float] = None   # best scheduled validation
    bad_validations: int = 0        # scheduled validations in a row w/o gain
    last_valid_update: int = -1     # update of the last scheduled validation
    last_perplexity: Optional[float] = None   # the latest validation's
    stopped: Optional[str] = None   # 'early_stopped' once patience ran out
    valid_tokens_seen: int = 0      # tokens_seen at the last scheduled one
    valid_elapsed: float = 0.0      # seconds of it validating (checkpoints
                                    # and plot included)
    # The perplexity of the parameters in best.npz: the lowest of every
    # checkpointed validation, the report-only one at max_updates included
    # (the schedule's best_perplexity leaves that one out).
    best_saved_perplexity: Optional[float] = None

    def count_batch(self, samples, tokens):
        """Count a minibatch of ``samples`` sentences and ``tokens`` target
        tokens into the open window and the totals; move past it."""
        self.window_samples += samples
        self.window_tokens += tokens
        self.samples_seen += samples
        self.tokens_seen += tokens
        self.batch += 1

    def close_window(self):
        """Start an empty window (after it was applied or dropped)."""
        self.window_samples = 0
        self.window_tokens = 0

    def saved_validation(self, perplexity):
        """Note a validation whose parameters are being checkpointed.

        ``best.npz`` follows the best of them, the report-only validation
        at ``max_updates`` included.

        Returns
        -------
        bool
            True when ``perplexity`` is the lowest so far (then it is the
            new ``best_saved_perplexity``, and ``best.npz`` is to be
            written).
        """
        if (self.best_saved_perplexity is not None
                and not perplexity < self.best_saved_perplexity):
            return False
        self.best_saved_perplexity = perplexity
        return True

    def to_dict(self, learning_rate):
        """The ``'counters'`` metadata of a checkpoint.

        Parameters
        ----------
        learning_rate : float
            The accumulator's current learning rate, recorded beside the
            counters for readers of the file (a resume takes it from the
            accumulator's state, not from here).

        Returns
        -------
        dict
        """
        counters = dataclasses.asdict(self)
        counters["learning_rate"] = learning_rate
        return counters

    @classmethod
    def from_dict(cls, counters):
        """Read what :meth:`to_dict` wrote.

        Parameters
        ----------
        counters : dict
            A checkpoint's ``metadata['counters']``. ``stopped``,
            ``valid_tokens_seen``, ``valid_elapsed`` and
            ``best_saved_perplexity`` (newer than some checkpoints) may be
            absent (the last then is ``best_perplexity``, which ``best.npz``
            followed before); ``learning_rate`` and unknown keys are
            ignored.

        Returns
        -------
        RunState

        Raises
        ------
        KeyError
            When another counter is missing.
        """
        values = {}
        counters = dict(counters)
        counters.setdefault("best_saved_perplexity",
                            counters.get("best_perplexity"))
        for field in dataclasses.fields(cls):
            if field.name in _OPTIONAL:
                values[field.name] = counters.get(field.name,
                                                  field.default)
            elif field.type is int:
                values[field.name] = int(counters[field.name])
            elif field.type is float:
                values[field.name] = float(counters[field.name])
            else:
                values[field.name] = counters[field.name]
        return cls(**values)
