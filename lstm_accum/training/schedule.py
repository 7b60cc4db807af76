"""The plateau schedule: after each scheduled validation, keep the best
perplexity, decay the learning rate when it did not improve, and stop when
it has not improved for ``patience`` validations in a row.

In the spirit of theanolm's ``training/stoppers.py``: the rule is a small
object the loop asks, and the state it keeps is the run state's
(``best_perplexity``, ``bad_validations``, ``last_valid_update``,
``valid_tokens_seen``, ``stopped``), so a checkpoint restores it.
"""
import math
from collections import namedtuple

__all__ = ["PlateauSchedule", "Decision"]

#: What a validation decided: ``improved`` (bool), ``stop`` (None or
#: ``'early_stopped'``), ``learning_rate`` (the rate from now on) and
#: ``note`` (text for the log line, '' when nothing changed).
Decision = namedtuple("Decision", ["improved", "stop", "learning_rate",
                                   "note"])


class PlateauSchedule(object):
    """Learning-rate decay and early stopping on a validation plateau.

    A perplexity ``p`` improves on the best ``b`` when it is finite and
    ``p < b * (1 - min_improvement)`` (any finite ``p`` improves on none).

    Parameters
    ----------
    lr_decay : float
        Factor in ``(0, 1]`` applied to the learning rate when a
        validation does not improve.
    min_improvement : float
        Relative gain in ``[0, 1)`` that counts as an improvement.
    patience : int
        Stop after this many validations in a row without improvement
        (0: never stop).
    """

    def __init__(self, lr_decay, min_improvement=0.0, patience=0):
        self.lr_decay = lr_decay
        self.min_improvement = min_improvement
        self.patience = patience

    @classmethod
    def from_config(cls, config):
        """The schedule of a :class:`~lstm_accum.training.TrainConfig`."""
        return cls(config.lr_decay, config.min_improvement, config.patience)

    def improves(self, perplexity, best):
        """True when ``perplexity`` counts as better than ``best`` (None:
        no best yet)."""
        return math.isfinite(perplexity) and (
            best is None or perplexity < best * (1 - self.min_improvement))

    def decide(self, state, perplexity, learning_rate, scheduled=True):
        """:meth:`observe` a scheduled validation; judge a report-only one.

        A validation that is not ``scheduled`` (the report at
        ``max_updates``) changes nothing in ``state``, so that a run
        stopped there and resumed equals one that never stopped.

        Returns
        -------
        Decision
        """
        if scheduled:
            return self.observe(state, perplexity, learning_rate)
        return Decision(self.improves(perplexity, state.best_perplexity),
                        None, learning_rate, "")

    def observe(self, state, perplexity, learning_rate):
        """Record a scheduled validation in ``state`` and decide.

        Parameters
        ----------
        state : RunState
            Its ``last_valid_update``, ``valid_tokens_seen``,
            ``best_perplexity``, ``bad_validations`` and ``stopped`` are
            updated.
        perplexity : float
        learning_rate : float
            The current rate.

        Returns
        -------
        Decision
        """
        improved = self.improves(perplexity, state.best_perplexity)
        state.last_valid_update = state.update
        state.valid_tokens_seen = state.tokens_seen
        if improved:
            state.best_perplexity = perplexity
            state.bad_validations = 0
            return Decision(True, None, learning_rate, "")
        state.bad_validations += 1
        if self.patience and state.bad_validations >= self.patience:
            state.stopped = "early_stopped"
            return Decision(False, state.stopped, learning_rate,
                            "; no improvement in %d validations: stopping"
                            % state.bad_validations)
        learning_rate = learning_rate * self.lr_decay
        return Decision(False, None, learning_rate,
                        "; no improvement: learning rate -> %.4g"
                        % learning_rate)
