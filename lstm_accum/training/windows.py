"""The window policy: when a window of accumulated gradients is full, and
what happens to a window that is not full when an epoch ends.

A window is what one update averages over. With ``accumulate=N`` it closes
as soon as it holds at least ``N`` sentences; with ``accumulate_tokens=T``
as soon as it holds at least ``T`` target tokens. At the end of an epoch a
window that is not full is applied, dropped or carried into the next epoch
(``partial_window``); after the last epoch a carried window is applied.
"""
import math

import numpy as np

__all__ = ["WindowPolicy", "describe_effective_batch"]


class WindowPolicy(object):
    """When to apply a window, and what to do with a partial one.

    Parameters
    ----------
    accumulate : int
        Sentences per window (used when ``accumulate_tokens`` is 0).
    accumulate_tokens : int
        ``> 0``: target tokens per window instead.
    partial_window : {'apply', 'drop', 'carry'}
        The epoch-end policy.
    """

    def __init__(self, accumulate, accumulate_tokens=0, partial_window="apply"):
        self.accumulate = accumulate
        self.accumulate_tokens = accumulate_tokens
        self.partial_window = partial_window

    @classmethod
    def from_config(cls, config):
        """The policy of a :class:`~lstm_accum.training.TrainConfig`."""
        return cls(config.accumulate, config.accumulate_tokens,
                   config.partial_window)

    def is_full(self, samples, tokens):
        """True when a window of ``samples`` sentences and ``tokens`` target
        tokens is to be applied now."""
        if self.accumulate_tokens > 0:
            return tokens >= self.accumulate_tokens
        return samples >= self.accumulate

    def at_epoch_end(self, samples, last_epoch):
        """What to do with the open window when an epoch ends.

        Parameters
        ----------
        samples : int
            Sentences in the open window.
        last_epoch : bool
            True after the last epoch (a carried window is applied then).

        Returns
        -------
        str or None
            ``'apply'``, ``'drop'`` or ``'carry'`` (keep it open); None when
            the window is empty.
        """
        if not samples:
            return None
        if self.partial_window == "carry" and last_epoch:
            return "apply"
        return self.partial_window

    def windows_per_epoch(self, corpus):
        """About how many windows one epoch over ``corpus`` makes (for the
        progress bar's total)."""
        if self.accumulate_tokens:
            per_epoch = (corpus.num_tokens + len(corpus)) / self.accumulate_tokens
        else:
            per_epoch = len(corpus) / self.accumulate
        return int(math.ceil(per_epoch))


def describe_effective_batch(config, corpus):
    """The one line saying what an update averages over.

    Parameters
    ----------
    config : TrainConfig
    corpus : EncodedCorpus
        The training sentences (for their mean length).

    Returns
    -------
    str
    """
    c = config
    lengths = np.asarray(corpus.lengths)
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
