"""Command-line arguments: argparse types that refuse a bad value with a
clear message, and options derived from declared settings
(:class:`lstm_accum.training.settings.Setting`) placed by a command's
layout of :class:`Flag` entries."""
import argparse
import math
from dataclasses import dataclass

__all__ = ["Flag", "int_argument", "number_argument", "add_settings",
           "given_settings"]


@dataclass(frozen=True)
class Flag:
    """How a setting appears on the command line: its option, not its
    meaning (type, choices, range, default and help are the setting's).

    Parameters
    ----------
    name : str
        ``'--vocab-size'``; a name without dashes is a positional argument
        (it must then be the setting's name).
    setting : str, optional
        The setting it sets; by default the name without its leading dashes,
        ``-`` read as ``_`` (``'--vocab-size'``: ``vocab_size``).
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
    setting: str = None
    aliases: tuple = ()
    metavar: str = None
    required: bool = False
    action: str = None
    help: str = None

    @property
    def dest(self):
        """The name of the setting this flag sets."""
        return self.setting or self.name.lstrip("-").replace("-", "_")


#: The attribute of the parsed namespace that lists the settings given on
#: the command line (:func:`given_settings`).
_GIVEN = "_settings_given"


def int_argument(minimum, auto=False):
    """An argparse ``type``: an integer ``>= minimum``.

    Parameters
    ----------
    minimum : int
    auto : bool
        Also accept ``auto``, parsed as None.

    Returns
    -------
    callable
        ``parse(text)`` returning the integer or raising
        :class:`argparse.ArgumentTypeError` (``"expected an integer >= 1,
        got '0'"``).
    """
    def parse(text):
        if auto and text == "auto":
            return None
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                "expected an integer >= %d%s, got %r"
                % (minimum, " or 'auto'" if auto else "", text))
        return value
    parse.__name__ = "int>=%d" % minimum
    return parse


def number_argument(is_valid, expected):
    """An argparse ``type``: a finite number that ``is_valid`` accepts.

    Parameters
    ----------
    is_valid : callable
        ``is_valid(value)`` for a finite float.
    expected : str
        The valid values in words, for the message (``'a finite number >
        0'``).

    Returns
    -------
    callable
        ``parse(text)`` returning the float or raising
        :class:`argparse.ArgumentTypeError` (``"expected ..., got 'nan'"``).
    """
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and is_valid(value)):
            raise argparse.ArgumentTypeError("expected %s, got %r"
                                             % (expected, text))
        return value
    parse.__name__ = "number"
    return parse


def _options(setting, flag):
    """argparse's keyword arguments for a setting's flag."""
    options = {"help": flag.help or setting.help}
    if flag.name.startswith("-"):
        options["dest"] = setting.name
        options["default"] = setting.default
    if flag.metavar:
        options["metavar"] = flag.metavar
    if flag.required:
        options["required"] = True
    options["action"] = _recording(flag.action)
    if flag.action:
        return options
    if setting.choices is not None:
        options["choices"] = setting.choices
    elif setting.kind is int:
        options["type"] = int_argument(setting.low, auto=bool(setting.auto))
    elif setting.kind is float:
        options["type"] = number_argument(setting.is_valid,
                                          setting.describe())
    return options


def _recording(action):
    """An argparse action class that does what ``action`` does (``None``:
    store) and notes that its setting was given."""
    base = {None: argparse._StoreAction,
            "store_true": argparse._StoreTrueAction,
            "store_false": argparse._StoreFalseAction}[action]

    class Given(base):
        def __call__(self, parser, namespace, values, option_string=None):
            given = set(getattr(namespace, _GIVEN, ()))
            given.add(self.dest)
            setattr(namespace, _GIVEN, frozenset(given))
            super().__call__(parser, namespace, values, option_string)
    return Given


def given_settings(args):
    """The names of the settings given on the command line.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser made with :func:`add_settings`.

    Returns
    -------
    frozenset of str
        Positional settings always count as given; an option counts when
        it appears in the arguments (even with its default value).
    """
    return frozenset(getattr(args, _GIVEN, ()))


def add_settings(parser, settings, layout, not_on_command_line=()):
    """Add declared settings to a parser as its options.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    settings : sequence of Setting
        Every setting of the command; each option's ``dest`` is the
        setting's name.
    layout : sequence of (str or None, tuple of Flag)
        Group titles (None: the parser itself) and the flags in each, in
        ``--help`` order; a tuple of flags inside is a set of mutually
        exclusive options (see :data:`lstm_accum.cli.train.LAYOUT`).
    not_on_command_line : collection of str
        The settings deliberately left out of the layout.

    Raises
    ------
    ValueError
        When the layout does not place every setting exactly once, apart
        from ``not_on_command_line`` (a programming error, not a user's).
    """
    by_name = {s.name: s for s in settings}
    placed = []
    for title, flags in layout:
        group = parser if title is None else parser.add_argument_group(title)
        for entry in flags:
            target = group
            if isinstance(entry, tuple):
                target = group.add_mutually_exclusive_group()
            else:
                entry = (entry,)
            for flag in entry:
                if flag.dest not in by_name or \
                        flag.dest in not_on_command_line:
                    raise ValueError("the layout places %r, which is not a "
                                     "setting of the command line"
                                     % flag.dest)
                target.add_argument(*(flag.aliases + (flag.name,)),
                                    **_options(by_name[flag.dest], flag))
                placed.append(flag.dest)
    wanted = sorted(set(by_name) - set(not_on_command_line))
    if sorted(placed) != wanted:
        raise ValueError("the layout places %s but the settings of the "
                         "command line are %s" % (sorted(placed), wanted))
