"""The settings of a training run, each declared once.

:data:`SETTINGS` declares every setting exactly once: its name, type,
default, help (meaning and unit), allowed values or range, whether it may
differ when a run is resumed, and how it appears on the command line.
Everything else is derived from those declarations:

- :class:`TrainConfig`, the dataclass of one run's settings (the resolved
  copy is saved in every checkpoint);
- :func:`validate_config`, which refuses the first bad setting with one
  clear message;
- :data:`RESUMABLE_CHANGES`, the settings a resumed run may change;
- the options of ``lstm-accum train`` (each setting's :class:`Flag`, placed
  by :data:`CLI_LAYOUT`; :mod:`lstm_accum.cli.arguments` turns them into
  argparse options).

:func:`update_rule` turns the ``optimizer`` setting into a Lasagne update
rule.
"""
import dataclasses
import math
import os
from dataclasses import dataclass

from ..backend import lasagne
from ..checks import is_int, is_number
from ..exceptions import InputError

__all__ = ["Setting", "Flag", "SETTINGS", "CLI_LAYOUT", "TrainConfig",
           "validate_config", "RESUMABLE_CHANGES", "OPTIMIZERS",
           "update_rule", "saved_settings", "ALWAYS"]

#: The Lasagne update rules selectable by name.
OPTIMIZERS = ("adagrad", "sgd", "momentum", "nesterov_momentum", "rmsprop",
              "adadelta", "adam")


#: :attr:`Setting.absent` of the settings that every checkpoint records.
ALWAYS = "always recorded"


@dataclass(frozen=True)
class Flag:
    """How a setting appears on the command line.

    Parameters
    ----------
    name : str
        ``'--vocab-size'``; a name without dashes is a positional argument
        (it must then be the setting's name).
    aliases : tuple of str
        Further option strings before ``name`` (``('-n',)``).
    metavar : str, optional
        Shown for the value in ``--help`` (argparse's default otherwise).
    required : bool
        An option the command cannot do without (``--out``).
    action : str, optional
        ``'store_true'`` or ``'store_false'`` for a boolean setting.
    help : str, optional
        The flag's own help, where it differs from the setting's (a flag
        that turns a setting off).
    """
    name: str
    aliases: tuple = ()
    metavar: str = None
    required: bool = False
    action: str = None
    help: str = None


@dataclass(frozen=True)
class Setting:
    """The one declaration of a setting.

    Parameters
    ----------
    name : str
        The :class:`TrainConfig` field.
    kind : type
        ``int``, ``float``, ``bool`` or ``str``.
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
    flag : Flag, optional
        Its command-line option; None for settings only the Python API sets.
    check : callable, optional
        ``check(value)`` raising :class:`InputError` itself, for the paths
        (instead of the type and range checks).
    auto : str, optional
        For a number that may be left to the trainer: ``None`` is then a
        valid value (``auto`` on the command line), and this says what it
        does.
    absent : object, optional
        The value that a checkpoint written before this setting existed
        implies (the behaviour of that version); :data:`ALWAYS` for the
        settings every checkpoint records.
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
    flag: Flag = None
    check: object = None
    auto: str = None
    absent: object = ALWAYS

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

#: Every setting of a training run, in :class:`TrainConfig`'s field order.
SETTINGS = (
    # -- data ----------------------------------------------------------------
    Setting("corpus", str, "", "UTF-8 text file, one sentence per line",
            resumable=True, check=_check_corpus,
            flag=Flag("corpus", metavar="CORPUS")),
    Setting("out", str, "runs/lm", "run directory: checkpoint.npz, best.npz, "
            "metrics.jsonl, curves.png", resumable=True, check=_check_out,
            flag=Flag("--out", metavar="DIR", required=True)),
    Setting("vocab_size", int, 2000, "words kept besides <unk> <s> </s> "
            "(default %(default)s)", low=1, flag=Flag("--vocab-size")),
    Setting("valid_fraction", float, 0.05, "share of sentences held out for "
            "validation (default %(default)s)", low=0, high=1, low_open=True,
            high_open=True, expected="a number strictly between 0 and 1",
            flag=Flag("--valid-fraction")),
    Setting("valid_max", int, 2000, "but at most this many sentences (0: no "
            "cap; default %(default)s)", low=0, absent=0,
            flag=Flag("--valid-max", metavar="N")),
    Setting("lowercase", bool, True, "lowercase the text before counting "
            "words (default %(default)s)",
            flag=Flag("--no-lowercase", action="store_false",
                      help="keep the text's case")),
    Setting("max_length", int, 100, "split longer sentences (words; default "
            "%(default)s)", low=1, flag=Flag("--max-length")),
    # -- model ---------------------------------------------------------------
    Setting("units", int, 256, "hidden units H (default %(default)s)", low=1,
            flag=Flag("--units")),
    Setting("layers", int, 1, "stacked recurrent layers (default "
            "%(default)s)", low=1, flag=Flag("--layers")),
    Setting("cell", str, "lstm", "recurrent cell (default %(default)s)",
            choices=("lstm", "gru"), flag=Flag("--cell")),
    Setting("input", str, "ids", "one-hot vectors as in the original "
            "question, or word ids with a row lookup (same maths, faster; "
            "default %(default)s)", choices=("onehot", "ids"),
            flag=Flag("--input")),
    Setting("dropout", float, 0.0, "dropout after each recurrent layer "
            "(default %(default)s)", low=0, high=1, high_open=True,
            expected="a number in [0, 1)", flag=Flag("--dropout")),
    Setting("grad_clipping", float, 5.0, "Lasagne's per-step gradient "
            "clipping (0: off; default %(default)s)", low=0,
            expected="a finite number >= 0 (0 disables it)"),
    Setting("impl", str, "auto", "LSTM layers as one fused C operation on "
            "the CPU ('auto': when the configuration allows, else Lasagne's "
            "scan; 'scan': always Lasagne's scan; same numbers; default "
            "%(default)s)", choices=("auto", "fused", "scan"), resumable=True,
            flag=Flag("--impl")),
    # -- batching and accumulation -------------------------------------------
    Setting("batching", str, "bucket", "sample: one sentence per call (the "
            "question); bucket: equal-length minibatches, no mask; mask: "
            "padded minibatches (default %(default)s)",
            choices=("sample", "bucket", "mask"), flag=Flag("--batching")),
    Setting("batch_size", int, 32, "sentences per minibatch for bucket/mask "
            "(default %(default)s)", low=1, flag=Flag("--batch-size")),
    Setting("accumulate", int, 32, "sentences per update (default "
            "%(default)s)", low=1, flag=Flag("--accumulate", metavar="N")),
    Setting("accumulate_tokens", int, 0, "instead: at least T target tokens "
            "per update", low=0,
            flag=Flag("--accumulate-tokens", metavar="T")),
    Setting("normalize", str, "samples", "divide the summed gradient by the "
            "window's sentences or target tokens (default %(default)s)",
            choices=("samples", "tokens", "sum"), flag=Flag("--normalize")),
    Setting("partial_window", str, "apply", "at epoch end, a window that is "
            "not full is applied with its true count, dropped, or carried "
            "into the next epoch (default %(default)s)",
            choices=("apply", "drop", "carry"),
            flag=Flag("--partial-window")),
    # -- optimizer -----------------------------------------------------------
    Setting("optimizer", str, "adam", "Lasagne update rule (default "
            "%(default)s)", choices=OPTIMIZERS, flag=Flag("--optimizer")),
    Setting("lr", float, 0.015, "learning rate (default %(default)s, for "
            "adam; adagrad wants about 0.05)", low=0,
            low_open=True, expected="a finite number > 0 (e.g. 0.01)",
            flag=Flag("--lr")),
    Setting("warmup", int, WARMUP, "raise the learning rate linearly over "
            "the first N updates (0: none; default %(default)s)", low=0,
            absent=0, flag=Flag("--warmup", metavar="N")),
    Setting("max_norm", float, 0.0, "clip the averaged gradient to this "
            "total norm (0: off; default %(default)s)", low=0,
            expected="a finite number >= 0 (0 disables it)",
            flag=Flag("--max-norm")),
    Setting("max_bad_windows", int, 5, "stop after this many consecutive "
            "non-finite windows (default %(default)s)", low=1,
            flag=Flag("--max-bad-windows")),
    # -- schedule ------------------------------------------------------------
    Setting("epochs", int, 10, "passes over the training data (default "
            "%(default)s)", low=1, resumable=True, flag=Flag("--epochs")),
    Setting("max_updates", int, 0, "stop after this many updates (0: no "
            "limit)", low=0, resumable=True, flag=Flag("--max-updates")),
    Setting("valid_every", int, None, "validate every this many updates, and "
            "at each epoch end (0: epoch ends only; default auto: each time "
            "the model has trained on max(%d x the validation tokens, %d) "
            "tokens since the last validation, and at the end)"
            % (VALID_EVERY_RATIO, VALID_EVERY_MIN_TOKENS), low=0,
            auto="validate by tokens trained", flag=Flag("--valid-every")),
    Setting("lr_decay", float, 0.5, "learning-rate factor when validation "
            "does not improve (default %(default)s)", low=0, high=1,
            low_open=True, expected="a number in (0, 1]",
            flag=Flag("--lr-decay")),
    Setting("min_improvement", float, 0.0, "relative perplexity gain that "
            "counts as an improvement (default %(default)s)", low=0, high=1,
            high_open=True, expected="a number in [0, 1)"),
    Setting("patience", int, 3, "stop at the N-th validation in a row "
            "without improvement; each one before it decays the learning "
            "rate, so N-1 decays (0: never stop; default %(default)s)",
            low=0, resumable=True,
            flag=Flag("--patience")),
    # -- run -----------------------------------------------------------------
    Setting("seed", int, 1, "weights, split, minibatch order (default "
            "%(default)s)", low=0, flag=Flag("--seed")),
    Setting("float64", bool, False, "build the model in float64 (default: "
            "Theano's floatX, float32 unless THEANO_FLAGS says otherwise)",
            flag=Flag("--float64", action="store_true")),
    Setting("resume", bool, False, "continue the run in --out from its "
            "checkpoint.npz (bit-identical to not stopping)", resumable=True,
            flag=Flag("--resume", action="store_true")),
    Setting("progress", str, "auto", "progress bar (auto: when stderr is a "
            "terminal)", choices=_CHOICES_ON_OFF, resumable=True,
            flag=Flag("--progress")),
    Setting("log_every", int, 10, "without a progress bar: one log line per "
            "this many updates (0: none; default %(default)s)", low=0,
            resumable=True),
    Setting("distributed", str, "auto", "data-parallel over MPI: auto (on "
            "when started by 'mpirun -n K' with K > 1), on (needs mpi4py + "
            "Open MPI), off (default %(default)s)", choices=_CHOICES_ON_OFF,
            resumable=True, flag=Flag("--distributed")),
)

#: Where the options of ``lstm-accum train`` appear in ``--help``: (group
#: title or None for the command's own arguments, setting names in order; a
#: tuple of names is a set of mutually exclusive options).
CLI_LAYOUT = (
    (None, ("corpus", "out")),
    ("data", ("vocab_size", "valid_fraction", "valid_max", "max_length",
              "lowercase")),
    ("model", ("units", "layers", "cell", "input", "impl", "dropout")),
    ("batching and gradient accumulation",
     ("batching", "batch_size", ("accumulate", "accumulate_tokens"),
      "normalize", "partial_window")),
    ("optimizer and schedule",
     ("optimizer", "lr", "warmup", "max_norm", "epochs", "max_updates", "valid_every",
      "patience", "lr_decay", "max_bad_windows")),
    ("run", ("seed", "resume", "float64", "distributed", "progress")),
)

#: Settings that may differ between a checkpoint and the run resuming it.
RESUMABLE_CHANGES = tuple(s.name for s in SETTINGS if s.resumable)


def _to_dict(self):
    """The configuration as a plain dict (JSON-serialisable)."""
    return dataclasses.asdict(self)


def _from_dict(cls, data):
    """Inverse of :meth:`to_dict`; unknown keys are refused, missing ones
    take the value a checkpoint older than the setting implies
    (:attr:`Setting.absent`; their defaults for the settings every version
    recorded).

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
    return cls(**saved_settings(data))


def saved_settings(config):
    """A checkpoint's settings with those it predates filled in.

    Parameters
    ----------
    config : dict
        ``metadata['config']`` of a checkpoint.

    Returns
    -------
    dict
        A copy, plus :attr:`Setting.absent` for each setting added after
        that checkpoint was written (its version behaved that way).
    """
    filled = dict(config)
    for s in SETTINGS:
        if s.name not in filled and s.absent is not ALWAYS:
            filled[s.name] = s.absent
    return filled


def _config_doc():
    lines = ["Every setting of a training run; saved, resolved, in each "
             "checkpoint.", "",
             "Derived from :data:`SETTINGS` (one declaration per setting).",
             "", "Parameters", "----------"]
    for s in SETTINGS:
        lines.append("%s : %s" % (s.name, s.kind.__name__))
        lines.append("    " + s.help % {"default": s.default})
    return "\n".join(lines)


TrainConfig = dataclasses.make_dataclass(
    "TrainConfig",
    [(s.name, s.kind, dataclasses.field(default=s.default))
     for s in SETTINGS],
    namespace={"to_dict": _to_dict,
               "from_dict": classmethod(_from_dict),
               "__doc__": _config_doc()})
TrainConfig.__module__ = __name__


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
