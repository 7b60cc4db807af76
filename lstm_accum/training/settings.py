"""The settings of a training run, each declared once, as a field of
:class:`TrainConfig`.

Each field's :func:`setting` declares it: type (the annotation), default,
help (meaning and unit), allowed values or range, and whether a resumed run
may change it. Everything else is derived from those declarations:

- :data:`SETTINGS`, the declarations in field order (:class:`Setting`);
- :func:`validate_config`, which refuses the first bad setting with one
  clear message;
- :data:`RESUMABLE_CHANGES`, the settings a resumed run may change;
- the options of ``lstm-accum train`` (:mod:`lstm_accum.cli.train` places
  them in ``--help`` and names their flags; type, choices, range, default
  and help come from here).

What a checkpoint written before a setting existed implies is the store's
business (:mod:`.store`). :func:`update_rule` turns the ``optimizer``
setting into a Lasagne update rule.
"""
import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field

from ..backend import lasagne
from ..checks import is_int, is_number
from ..exceptions import InputError

__all__ = ["Setting", "setting", "SETTINGS", "TrainConfig",
           "validate_config", "RESUMABLE_CHANGES", "OPTIMIZERS",
           "update_rule"]

#: The Lasagne update rules selectable by name.
OPTIMIZERS = ("adagrad", "sgd", "momentum", "nesterov_momentum", "rmsprop",
              "adadelta", "adam")

#: The key of a :class:`TrainConfig` field's metadata that holds its
#: declaration.
_KEY = "setting"


@dataclass(frozen=True)
class Setting:
    """The one declaration of a setting.

    Made by :func:`setting` in a :class:`TrainConfig` field; :data:`SETTINGS`
    completes it with the field's name and type.

    Parameters
    ----------
    name : str
        The :class:`TrainConfig` field.
    kind : type
        ``int``, ``float``, ``bool`` or ``str`` (an ``Optional[int]`` field
        is ``int``).
    default : object
        The value when none is given (on the command line too).
    help : str
        Meaning and unit, as ``--help`` shows it (``%(default)s`` is the
        default).
    choices : tuple of str, optional
        The allowed values of a ``str`` setting, in the order ``--help``
        lists them.
    low, high : float, optional
        The range of a number (``high`` defaults to no limit); a number must
        also be finite.
    low_open, high_open : bool
        Whether ``low`` / ``high`` themselves are outside the range.
    expected : str, optional
        What a bad value is told it must be (``'a number in [0, 1)'``);
        derived for integers, choices and booleans.
    resumable : bool
        Whether a resumed run may change it (paths, run length, display).
    check : callable, optional
        ``check(value)`` raising :class:`InputError` itself, for the paths
        (instead of the type and range checks).
    auto : str, optional
        For a number that may be left to the trainer: ``None`` is then a
        valid value (``auto`` on the command line), and this says what it
        does.
    """
    name: str
    kind: type
    default: object
    help: str
    choices: tuple = None
    low: float = None
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    expected: str = None
    resumable: bool = False
    check: object = None
    auto: str = None

    def describe(self):
        """What a valid value is, as the error messages say it."""
        if self.expected:
            return self.expected
        if self.auto and self.kind is int:
            return "an integer >= %d or None (auto)" % self.low
        if self.choices is not None:
            return "one of %s" % ", ".join(self.choices)
        if self.kind is bool:
            return "True or False"
        if self.kind is int:
            return "an integer >= %d" % self.low
        raise TypeError("setting %s declares no expected value" % self.name)

    def is_valid(self, value):
        """Whether ``value`` has the right type and lies in range."""
        if value is None and self.auto:
            return True
        if self.choices is not None:
            return value in self.choices
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is int:
            return is_int(value) and value >= self.low
        if not is_number(value) or not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


def setting(default, help, **rule):
    """A :class:`TrainConfig` field that carries its declaration.

    Parameters
    ----------
    default : object
        The field's default.
    help : str
        Meaning and unit (``%(default)s`` is the default).
    **rule
        The rest of a :class:`Setting`: ``choices``, ``low``, ``high``,
        ``low_open``, ``high_open``, ``expected``, ``resumable``,
        ``check``, ``auto``.

    Returns
    -------
    dataclasses.Field
        With the default, and the declaration in ``metadata['setting']``
        (its name and type are filled in from the field by
        :data:`SETTINGS`).
    """
    declared = Setting(name=None, kind=None, default=default, help=help,
                       **rule)
    return field(default=default, metadata={_KEY: declared})


def _check_corpus(value):
    if not isinstance(value, str) or not value:
        raise InputError("corpus must be the path of a text file (one "
                         "sentence per line), got %r" % (value,))
    if not os.path.isfile(value):
        raise InputError("corpus file %s does not exist (or is not a file); "
                         "give the path of a UTF-8 text file, one sentence "
                         "per line" % value)


def _check_out(value):
    if not isinstance(value, str) or not value:
        raise InputError("out must be a directory path, got %r" % (value,))
    if os.path.exists(value) and not os.path.isdir(value):
        raise InputError("output directory %s exists and is not a directory; "
                         "choose another --out" % value)


_CHOICES_ON_OFF = ("auto", "on", "off")

#: Default ``warmup``: Adam's first steps move every weight by about the
#: learning rate; ramping it up over this many updates keeps the training
#: loss below its start at H=64 to 1024 with lr 0.015 (20 updates still let
#: it rise at H=1024; benchmarks/README.md, "Choosing the defaults").
WARMUP = 50

#: ``valid_every=None`` (auto) validates each time the model has trained on
#: this many times the validation set's target tokens since the last
#: validation: scoring runs about 4.5x faster per token than training, so
#: validation then costs about 2% of the run ...
VALID_EVERY_RATIO = 10
#: ... and on at least this many tokens, so that on a small corpus the
#: fixed cost of each validation (checkpoint, about 0.3 s at H=256) stays
#: small too.
VALID_EVERY_MIN_TOKENS = 100000


@dataclass
class TrainConfig:
    """Every setting of a training run; saved, resolved, in each checkpoint.

    Each field is declared once, by its :func:`setting`: default, help
    (meaning and unit), allowed values or range, and ``resumable=True``
    when a resumed run may change it. The command line, the checks
    (:func:`validate_config`) and the resume rule (:data:`RESUMABLE_CHANGES`)
    are derived from these declarations.

    Examples
    --------
    >>> TrainConfig(units=512).units, TrainConfig().accumulate
    (512, 32)
    """
    # -- data ----------------------------------------------------------------
    corpus: str = setting(
        "", "UTF-8 text file, one sentence per line", resumable=True,
        check=_check_corpus)
    out: str = setting(
        "runs/lm", "run directory: checkpoint.npz, best.npz, metrics.jsonl, "
        "curves.png", resumable=True, check=_check_out)
    vocab_size: int = setting(
        2000, "words kept besides <unk> <s> </s> (default %(default)s)",
        low=1)
    valid_fraction: float = setting(
        0.05, "share of sentences held out for validation (default "
        "%(default)s)", low=0, high=1, low_open=True, high_open=True,
        expected="a number strictly between 0 and 1")
    valid_max: int = setting(
        2000, "but at most this many sentences (0: no cap; default "
        "%(default)s)", low=0)
    lowercase: bool = setting(
        True, "lowercase the text before counting words (default "
        "%(default)s)")
    max_length: int = setting(
        100, "split longer sentences (words; default %(default)s)", low=1)
    # -- model ---------------------------------------------------------------
    units: int = setting(256, "hidden units H (default %(default)s)", low=1)
    layers: int = setting(
        1, "stacked recurrent layers (default %(default)s)", low=1)
    cell: str = setting(
        "lstm", "recurrent cell (default %(default)s)",
        choices=("lstm", "gru"))
    input: str = setting(
        "ids", "one-hot vectors as in the original question, or word ids "
        "with a row lookup (same maths, faster; default %(default)s)",
        choices=("onehot", "ids"))
    dropout: float = setting(
        0.0, "dropout after each recurrent layer (default %(default)s)",
        low=0, high=1, high_open=True, expected="a number in [0, 1)")
    grad_clipping: float = setting(
        5.0, "Lasagne's per-step gradient clipping (0: off; default "
        "%(default)s)", low=0,
        expected="a finite number >= 0 (0 disables it)")
    impl: str = setting(
        "auto", "LSTM layers as one fused C operation on the CPU ('auto': "
        "when the configuration allows, else Lasagne's scan; 'scan': always "
        "Lasagne's scan; same numbers; default %(default)s)",
        choices=("auto", "fused", "scan"), resumable=True)
    # -- batching and accumulation -------------------------------------------
    batching: str = setting(
        "bucket", "sample: one sentence per call (the question); bucket: "
        "equal-length minibatches, no mask; mask: padded minibatches "
        "(default %(default)s)", choices=("sample", "bucket", "mask"))
    batch_size: int = setting(
        32, "sentences per minibatch for bucket/mask (default %(default)s)",
        low=1)
    accumulate: int = setting(
        32, "sentences per update (default %(default)s)", low=1)
    accumulate_tokens: int = setting(
        0, "instead: at least T target tokens per update", low=0)
    normalize: str = setting(
        "samples", "divide the summed gradient by the window's sentences or "
        "target tokens (default %(default)s)",
        choices=("samples", "tokens", "sum"))
    partial_window: str = setting(
        "apply", "at epoch end, a window that is not full is applied with "
        "its true count, dropped, or carried into the next epoch (default "
        "%(default)s)", choices=("apply", "drop", "carry"))
    # -- optimizer -----------------------------------------------------------
    optimizer: str = setting(
        "adam", "Lasagne update rule (default %(default)s)",
        choices=OPTIMIZERS)
    lr: float = setting(
        0.015, "learning rate (default %(default)s, for adam; adagrad wants "
        "about 0.05)", low=0, low_open=True,
        expected="a finite number > 0 (e.g. 0.01)")
    warmup: int = setting(
        WARMUP, "raise the learning rate linearly over the first N updates "
        "(0: none; default %(default)s)", low=0)
    max_norm: float = setting(
        0.0, "clip the averaged gradient to this total norm (0: off; "
        "default %(default)s)", low=0,
        expected="a finite number >= 0 (0 disables it)")
    max_bad_windows: int = setting(
        5, "stop after this many consecutive non-finite windows (default "
        "%(default)s)", low=1)
    # -- schedule ------------------------------------------------------------
    epochs: int = setting(
        10, "passes over the training data (default %(default)s)", low=1,
        resumable=True)
    max_updates: int = setting(
        0, "stop after this many updates (0: no limit)", low=0,
        resumable=True)
    valid_every: typing.Optional[int] = setting(
        None, "validate every this many updates, and at each epoch end (0: "
        "epoch ends only; default auto: each time the model has trained on "
        "max(%d x the validation tokens, %d) tokens since the last "
        "validation, and at the end)"
        % (VALID_EVERY_RATIO, VALID_EVERY_MIN_TOKENS), low=0,
        auto="validate by tokens trained")
    lr_decay: float = setting(
        0.5, "learning-rate factor when validation does not improve "
        "(default %(default)s)", low=0, high=1, low_open=True,
        expected="a number in (0, 1]")
    min_improvement: float = setting(
        0.0, "relative perplexity gain that counts as an improvement "
        "(default %(default)s)", low=0, high=1, high_open=True,
        expected="a number in [0, 1)")
    patience: int = setting(
        3, "stop at the N-th validation in a row without improvement; each "
        "one before it decays the learning rate, so N-1 decays (0: never "
        "stop; default %(default)s)", low=0, resumable=True)
    # -- run -----------------------------------------------------------------
    seed: int = setting(
        1, "weights, split, minibatch order (default %(default)s)", low=0)
    float64: bool = setting(
        False, "build the model in float64 (default: Theano's floatX, "
        "float32 unless THEANO_FLAGS says otherwise)")
    resume: bool = setting(
        False, "continue the run in --out from its checkpoint.npz "
        "(bit-identical to not stopping)", resumable=True)
    progress: str = setting(
        "auto", "progress bar (auto: when stderr is a terminal)",
        choices=_CHOICES_ON_OFF, resumable=True)
    log_every: int = setting(
        10, "without a progress bar: one log line per this many updates "
        "(0: none; default %(default)s)", low=0, resumable=True)
    distributed: str = setting(
        "auto", "data-parallel over MPI: auto (on when started by 'mpirun "
        "-n K' with K > 1), on (needs mpi4py + Open MPI), off (default "
        "%(default)s)", choices=_CHOICES_ON_OFF, resumable=True)

    def to_dict(self):
        """The configuration as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`: unknown keys are refused, missing
        ones take their defaults.

        For the settings saved in a checkpoint, use
        :func:`lstm_accum.training.store.saved_settings` first: it fills in
        what a checkpoint older than a setting implies.

        Raises
        ------
        InputError
            For a key that is not a setting.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise InputError("unknown training settings %s; known: %s"
                             % (unknown, sorted(names)))
        return cls(**data)


def _declaration(f):
    """The :class:`Setting` of a :class:`TrainConfig` field."""
    kind = f.type
    if typing.get_origin(kind) is typing.Union:        # Optional[int]
        kind, = [t for t in typing.get_args(kind) if t is not type(None)]
    return dataclasses.replace(f.metadata[_KEY], name=f.name, kind=kind)


#: Every setting's declaration, in :class:`TrainConfig`'s field order.
SETTINGS = tuple(_declaration(f) for f in dataclasses.fields(TrainConfig))

#: Settings that may differ between a checkpoint and the run resuming it.
RESUMABLE_CHANGES = tuple(s.name for s in SETTINGS if s.resumable)


def validate_config(config):
    """Check every setting; raise one clear error for the first bad one.

    Parameters
    ----------
    config : TrainConfig

    Raises
    ------
    InputError
        Naming the setting, the value given, what is expected (e.g.
        ``"accumulate must be an integer >= 1, got 0"``); for the corpus,
        that the file does not exist.
    """
    for s in SETTINGS:
        value = getattr(config, s.name)
        if s.check is not None:
            s.check(value)
        elif not s.is_valid(value):
            raise InputError("%s must be %s, got %r"
                             % (s.name, s.describe(), value))


def update_rule(name, config=None):
    """The Lasagne update rule called ``name`` and its extra arguments.

    Parameters
    ----------
    name : str
        One of :data:`OPTIMIZERS`.
    config : TrainConfig, optional
        The run's settings (no rule takes arguments from them today).

    Returns
    -------
    rule : callable
        A function of :mod:`lasagne.updates`.
    kwargs : dict
        Its arguments besides the gradients, parameters and learning rate:
        ``momentum=0.9`` for ``'momentum'`` and ``'nesterov_momentum'``.

    Examples
    --------
    >>> rule, kwargs = update_rule("nesterov_momentum")
    >>> rule.__name__, kwargs
    ('nesterov_momentum', {'momentum': 0.9})
    """
    rule = getattr(lasagne.updates, name)
    kwargs = {}
    if name in ("momentum", "nesterov_momentum"):
        kwargs["momentum"] = 0.9
    return rule, kwargs
