"""The parts of a run built from its settings: the MPI ranks, the model and
its gradient accumulator (or checks of the ones a caller passes)."""
from ..accumulation import Distributed, GradientAccumulator, warmup
from ..exceptions import InputError
from ..models import build_model
from .settings import update_rule

__all__ = ["make_distributed", "build_parts", "build_model_for",
           "build_accumulator", "check_model", "check_accumulator"]


def make_distributed(config):
    """The MPI ranks of a run (a single process unless launched by mpirun).

    Every rank runs the same loop on its share of each window.

    Parameters
    ----------
    config : TrainConfig
        ``distributed``: ``'auto'`` (on under ``mpirun -n K`` with K > 1),
        ``'on'`` or ``'off'``.

    Returns
    -------
    Distributed

    Raises
    ------
    InputError
        For ``partial_window='carry'`` on more than one rank.
    """
    dist = Distributed({"auto": None, "on": True,
                        "off": False}[config.distributed])
    if dist.size > 1 and config.partial_window == "carry":
        raise InputError(
            "partial_window='carry' keeps a half-full window across the "
            "epoch-end checkpoint, which a distributed run cannot save "
            "(each rank holds part of it); use 'apply' or 'drop'")
    return dist


def build_parts(config, vocab_size, model=None, accumulator=None):
    """The model and accumulator of a run: built, or the caller's checked.

    Parameters
    ----------
    config : TrainConfig
    vocab_size : int
    model : LanguageModel, optional
        Used instead of building one (see :func:`check_model`).
    accumulator : GradientAccumulator, optional
        Over ``model`` (see :func:`check_accumulator`); its learning rate
        is set to ``config.lr`` and its ``max_bad_windows`` to the config's.

    Returns
    -------
    (LanguageModel, GradientAccumulator)
    """
    if model is None:
        model = build_model_for(config, vocab_size)
        return model, build_accumulator(config, model, vocab_size)
    check_model(config, model, vocab_size)
    if accumulator is None:
        return model, build_accumulator(config, model, vocab_size)
    check_accumulator(config, model, accumulator)
    accumulator.set_learning_rate(config.lr)
    accumulator.max_bad_windows = config.max_bad_windows
    return model, accumulator


def build_model_for(config, vocab_size):
    """The language model the config describes.

    Parameters
    ----------
    config : TrainConfig
    vocab_size : int
        ``len(vocabulary)``.

    Returns
    -------
    LanguageModel
    """
    c = config
    return build_model(
        vocab_size, c.units, num_layers=c.layers, input=c.input,
        batching=c.batching, cell=c.cell, dropout=c.dropout,
        grad_clipping=c.grad_clipping if c.grad_clipping > 0 else False,
        seed=c.seed, impl=c.impl)


def build_accumulator(config, model, vocab_size):
    """A :class:`GradientAccumulator` over ``model`` with the config's
    optimizer (warmed up over ``config.warmup`` updates), learning rate,
    normalisation and limits."""
    c = config
    rule, kwargs = update_rule(c.optimizer, c)
    rule = warmup(rule, c.warmup)
    return GradientAccumulator(
        model.loss(), model.params, model.inputs,
        normalize=c.normalize, update=rule, learning_rate=c.lr,
        update_kwargs=kwargs,
        max_norm=c.max_norm if c.max_norm > 0 else None,
        num_samples=model.num_samples(), num_tokens=model.num_tokens(),
        vocab_size=vocab_size, max_bad_windows=c.max_bad_windows)


def check_model(config, model, vocab_size):
    """Refuse a caller's model that does not fit the corpus and config.

    Raises
    ------
    InputError
        Naming the vocabulary size, batching or input kind that differs.
    """
    for what, have, want in (
            ("vocabulary size", model.vocab_size, vocab_size),
            ("batching", model.batching, config.batching),
            ("input", model.input_kind, config.input)):
        if have != want:
            raise InputError("the model given has %s %r but the run "
                             "needs %r; build it with the same setting"
                             % (what, have, want))


def check_accumulator(config, model, acc):
    """Refuse a caller's accumulator that does not fit the model and config.

    Raises
    ------
    InputError
        Another normalisation, other parameters, or a half-full window.
    """
    if acc.normalize != config.normalize:
        raise InputError("the accumulator given normalizes by %r but "
                         "the config says normalize=%r"
                         % (acc.normalize, config.normalize))
    if set(acc.params) != set(model.params):
        raise InputError("the accumulator given does not train the "
                         "model's parameters; build it from "
                         "model.loss() and model.params")
    if acc.samples or acc.skipped:
        raise InputError("the accumulator given holds a half-full "
                         "window (%d samples); apply() it or start "
                         "from a fresh one" % acc.samples)
