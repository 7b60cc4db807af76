"""When a run validates: every so many updates, or by tokens trained.

With ``valid_every=N`` (N >= 1) validation comes every ``N`` updates and at
the end of every epoch; with ``0``, at epoch ends only. With ``None`` (the
default, ``auto``) it comes each time the model has trained on

    max(VALID_EVERY_RATIO x the validation set's target tokens,
        VALID_EVERY_MIN_TOKENS)

target tokens since the last validation, checked after every update and at
epoch ends, and at the end of the last epoch. Scoring a token costs about
a fifth of training on it, so validation stays near 2% of the run whatever
the corpus size (the validation set is capped by ``valid_max`` as well);
the floor keeps the fixed cost of each validation (the checkpoint written
with it) small on a small corpus, where an epoch may take a second. The
decision depends only on token counts, never on the clock, so a resumed
run validates where the uninterrupted one did.
"""
from .settings import VALID_EVERY_MIN_TOKENS, VALID_EVERY_RATIO

__all__ = ["ValidationCadence"]


class ValidationCadence(object):
    """Decides after each update and at each epoch end whether to validate.

    Parameters
    ----------
    valid_every : int or None
        The ``valid_every`` setting (None: by tokens).
    valid_tokens : int
        Target tokens of the validation set (``</s>`` included).
    """

    def __init__(self, valid_every, valid_tokens):
        self.every = valid_every
        self.interval_tokens = (
            None if valid_every is not None else
            max(VALID_EVERY_RATIO * int(valid_tokens), VALID_EVERY_MIN_TOKENS))

    @classmethod
    def from_config(cls, config, valid):
        """The cadence of a run's settings and its validation corpus."""
        return cls(config.valid_every, valid.num_targets)

    def _tokens_due(self, state):
        return state.tokens_seen - state.valid_tokens_seen >= \
            self.interval_tokens

    def after_update(self, state):
        """Whether the update just counted in ``state`` is followed by a
        validation."""
        if self.every is None:
            return self._tokens_due(state)
        return bool(self.every) and state.update % self.every == 0

    def at_epoch_end(self, state, last_epoch):
        """Whether the epoch that just ended is followed by a validation
        (never twice for the same update)."""
        if state.last_valid_update == state.update and state.update != 0:
            return False
        if self.every is None:
            return last_epoch or self._tokens_due(state)
        return True

    def describe(self):
        """One line for the run's announcement."""
        if self.every is None:
            return ("validation every %d target tokens trained (auto) and "
                    "at the end" % self.interval_tokens)
        if self.every == 0:
            return "validation at each epoch end"
        return "validation every %d updates and at each epoch end" \
            % self.every
