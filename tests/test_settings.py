"""The settings of a training run are declared once, as TrainConfig's
fields; the checks, the resume rule and the command line are derived from
the declarations.

The expectations here are written out by hand (today's fields, defaults,
flags, resumable settings and messages), independently of the declarations
they check.
"""
import argparse
import dataclasses
import os

import pytest

from lstm_accum import checkpoint as ckpt
from lstm_accum.backend import lasagne
from lstm_accum.cli import build_parser, main
from lstm_accum.cli.arguments import Flag, add_settings
from lstm_accum.cli.train import LAYOUT, NOT_ON_COMMAND_LINE
from lstm_accum.exceptions import InputError
from lstm_accum.training import (OPTIMIZERS, RESUMABLE_CHANGES, SETTINGS,
                                 TrainConfig, saved_settings, update_rule,
                                 validate_config)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEGACY = os.path.join(ROOT, "tests", "fixtures", "legacy_run",
                      "checkpoint.npz")

#: TrainConfig's fields and defaults, in order: as they were before the
#: settings were declared in one place, then with the defaults chosen by
#: measurement (issue 13: adam 0.015 with a warm-up of 50 updates, windows
#: of 32, validation by tokens on at most 2000 sentences).
FIELDS = [
    ("corpus", ""), ("out", "runs/lm"), ("vocab_size", 2000),
    ("valid_fraction", 0.05), ("valid_max", 2000), ("lowercase", True),
    ("max_length", 100),
    ("units", 256), ("layers", 1), ("cell", "lstm"), ("input", "ids"),
    ("dropout", 0.0), ("grad_clipping", 5.0), ("impl", "auto"),
    ("batching", "bucket"), ("batch_size", 32), ("accumulate", 32),
    ("accumulate_tokens", 0), ("normalize", "samples"),
    ("partial_window", "apply"), ("optimizer", "adam"), ("lr", 0.015),
    ("warmup", 50),
    ("max_norm", 0.0), ("max_bad_windows", 5), ("epochs", 10),
    ("max_updates", 0), ("valid_every", None), ("lr_decay", 0.5),
    ("min_improvement", 0.0), ("patience", 3), ("seed", 1),
    ("float64", False), ("resume", False), ("progress", "auto"),
    ("log_every", 10), ("distributed", "auto"),
]

#: The options of ``lstm-accum train`` in --help order: (option string,
#: setting, choices or None).
FLAGS = [
    ("--out", "out", None), ("--vocab-size", "vocab_size", None),
    ("--valid-fraction", "valid_fraction", None),
    ("--valid-max", "valid_max", None),
    ("--max-length", "max_length", None),
    ("--no-lowercase", "lowercase", None), ("--units", "units", None),
    ("--layers", "layers", None), ("--cell", "cell", ["lstm", "gru"]),
    ("--input", "input", ["onehot", "ids"]),
    ("--impl", "impl", ["auto", "fused", "scan"]),
    ("--dropout", "dropout", None),
    ("--batching", "batching", ["sample", "bucket", "mask"]),
    ("--batch-size", "batch_size", None),
    ("--accumulate", "accumulate", None),
    ("--accumulate-tokens", "accumulate_tokens", None),
    ("--normalize", "normalize", ["samples", "tokens", "sum"]),
    ("--partial-window", "partial_window", ["apply", "drop", "carry"]),
    ("--optimizer", "optimizer", ["adagrad", "sgd", "momentum",
                                  "nesterov_momentum", "rmsprop", "adadelta",
                                  "adam"]),
    ("--lr", "lr", None), ("--warmup", "warmup", None),
    ("--max-norm", "max_norm", None),
    ("--epochs", "epochs", None), ("--max-updates", "max_updates", None),
    ("--valid-every", "valid_every", None), ("--patience", "patience", None),
    ("--lr-decay", "lr_decay", None),
    ("--max-bad-windows", "max_bad_windows", None),
    ("--seed", "seed", None), ("--resume", "resume", None),
    ("--float64", "float64", None),
    ("--distributed", "distributed", ["auto", "on", "off"]),
    ("--progress", "progress", ["auto", "on", "off"]),
]


def train_parser():
    parser = build_parser()
    subparsers = [a for a in parser._actions
                  if isinstance(a, argparse._SubParsersAction)][0]
    return subparsers.choices["train"]


def test_every_field_is_declared_exactly_once():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    assert [(f.name, f.default) for f in dataclasses.fields(TrainConfig)] \
        == FIELDS
    assert names == [name for name, _ in FIELDS]
    assert [s.default for s in SETTINGS] == [d for _, d in FIELDS]
    assert TrainConfig.__module__ == "lstm_accum.training.settings"


def test_a_reader_finds_the_class_and_its_field_types():
    import inspect
    from lstm_accum.training import settings
    source = inspect.getsource(settings)
    assert "\nclass TrainConfig:" in source
    assert "make_dataclass" not in source
    kinds = {s.name: s.kind for s in SETTINGS}
    assert kinds["units"] is int and kinds["lr"] is float
    assert kinds["lowercase"] is bool and kinds["cell"] is str
    # Optional[int] on the class, an integer (or auto) for the checks
    assert kinds["valid_every"] is int


def test_config_types_and_dict_round_trip():
    config = TrainConfig(corpus="c.txt", units=8)
    assert config == TrainConfig(corpus="c.txt", units=8)
    assert config != TrainConfig(corpus="c.txt")
    data = config.to_dict()
    assert list(data) == [name for name, _ in FIELDS]
    assert data["units"] == 8 and data["corpus"] == "c.txt"
    assert TrainConfig.from_dict(data) == config


def test_from_dict_fills_settings_an_old_checkpoint_lacks():
    data = TrainConfig(units=8).to_dict()
    del data["impl"]            # added after the first checkpoints
    del data["log_every"]
    config = TrainConfig.from_dict(data)
    assert config.impl == "auto" and config.log_every == 10
    assert config.units == 8
    # warmup and valid_max came with another behaviour than their default
    del data["warmup"], data["valid_max"]
    assert TrainConfig.from_dict(data).warmup == 50
    config = TrainConfig.from_dict(saved_settings(data))
    assert (config.warmup, config.valid_max, config.impl) == (0, 0, "auto")


def test_from_dict_refuses_unknown_settings():
    data = dict(TrainConfig().to_dict(), hidden=3, colour="red")
    with pytest.raises(InputError, match=r"unknown training settings "
                                         r"\['colour', 'hidden'\]; known: "):
        TrainConfig.from_dict(data)


def test_the_legacy_checkpoint_config_loads_unchanged():
    # valid_max and warmup came later: the old run held out its whole
    # fraction and had no warm-up
    saved = ckpt.load_checkpoint(LEGACY).metadata["config"]
    assert "valid_max" not in saved
    assert TrainConfig.from_dict(saved_settings(saved)).to_dict() == \
        dict(saved, valid_max=0, warmup=0)


def test_resumable_changes():
    assert isinstance(RESUMABLE_CHANGES, tuple)
    assert set(RESUMABLE_CHANGES) == {
        "corpus", "out", "resume", "epochs", "max_updates", "patience",
        "progress", "log_every", "distributed", "impl"}
    assert len(RESUMABLE_CHANGES) == len(set(RESUMABLE_CHANGES))


def test_optimizers_and_update_rules():
    assert OPTIMIZERS == ("adagrad", "sgd", "momentum", "nesterov_momentum",
                          "rmsprop", "adadelta", "adam")
    for name in OPTIMIZERS:
        rule, kwargs = update_rule(name, TrainConfig())
        assert rule is getattr(lasagne.updates, name)
        expected = {"momentum": 0.9} if name in (
            "momentum", "nesterov_momentum") else {}
        assert kwargs == expected


def test_every_flag_maps_to_a_field_with_its_default():
    parser = train_parser()
    options = [a for a in parser._actions if a.option_strings and
               a.dest != "help"]
    got = [(a.option_strings[-1], a.dest,
            list(a.choices) if a.choices is not None else None)
           for a in options]
    assert got == FLAGS
    defaults = dict(FIELDS)
    for action in options:
        assert action.default == defaults[action.dest], action.dest
        assert type(action.default) is type(defaults[action.dest])
    positional = [a.dest for a in parser._actions if not a.option_strings]
    assert positional == ["corpus"]
    # the settings not on the command line
    on_cli = {dest for _, dest, _ in FLAGS} | {"corpus"}
    assert set(defaults) - on_cli == {"grad_clipping", "min_improvement",
                                      "log_every"}


def test_parsed_defaults_make_the_default_config():
    args = build_parser().parse_args(["train", "c.txt", "--out", "o"])
    config = TrainConfig(**{s.name: getattr(args, s.name)
                            for s in SETTINGS
                            if s.name not in NOT_ON_COMMAND_LINE})
    assert config == TrainConfig(corpus="c.txt", out="o")
    args = build_parser().parse_args(
        ["train", "c.txt", "--out", "o", "--no-lowercase", "--resume",
         "--float64", "--accumulate-tokens", "40", "--lr", "1e-3"])
    assert (args.lowercase, args.resume, args.float64) == (False, True, True)
    assert (args.accumulate_tokens, args.lr) == (40, 0.001)


def test_help_groups_as_before(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    titles = [line[:-1] for line in out.splitlines()
              if line.endswith(":") and not line.startswith(" ")]
    assert titles == ["positional arguments", "options", "data", "model",
                      "batching and gradient accumulation",
                      "optimizer and schedule", "run"]
    assert "[--accumulate N | --accumulate-tokens T]" in out
    assert "--no-lowercase        keep the text's case" in out


def test_a_layout_must_place_every_flag_once():
    with pytest.raises(ValueError, match="places"):
        add_settings(argparse.ArgumentParser(), SETTINGS, LAYOUT[:-1],
                     NOT_ON_COMMAND_LINE)
    with pytest.raises(ValueError, match="'grad_clipping'"):
        add_settings(argparse.ArgumentParser(), SETTINGS,
                     LAYOUT + (("extra", (Flag("--grad-clipping"),)),),
                     NOT_ON_COMMAND_LINE)
    with pytest.raises(ValueError, match="'colour'"):
        add_settings(argparse.ArgumentParser(), SETTINGS,
                     LAYOUT + (("extra", (Flag("--colour"),)),),
                     NOT_ON_COMMAND_LINE)
    # a setting neither placed nor left out on purpose
    with pytest.raises(ValueError, match="places"):
        add_settings(argparse.ArgumentParser(), SETTINGS, LAYOUT,
                     NOT_ON_COMMAND_LINE[1:])


def test_valid_every_auto_on_the_command_line():
    parser = train_parser()
    for flags, expected in (([], None), (["--valid-every", "auto"], None),
                            (["--valid-every", "0"], 0),
                            (["--valid-every", "250"], 250)):
        args = parser.parse_args(["c.txt", "--out", "o"] + flags)
        assert args.valid_every == expected


@pytest.mark.parametrize("flags, fragment", [
    (["--vocab-size", "0"], "argument --vocab-size: expected an integer >= 1"),
    (["--vocab-size", "2.5"], "argument --vocab-size: expected an integer"),
    (["--valid-fraction", "0"], "argument --valid-fraction: expected a "
                                "number strictly between 0 and 1"),
    (["--valid-fraction", "1"], "argument --valid-fraction"),
    (["--max-length", "0"], "argument --max-length"),
    (["--units", "x"], "argument --units: expected an integer >= 1, "
                       "got 'x'"),
    (["--layers", "-1"], "argument --layers"),
    (["--cell", "rnn"], "argument --cell: invalid choice: 'rnn'"),
    (["--input", "chars"], "argument --input: invalid choice"),
    (["--impl", "cuda"], "argument --impl: invalid choice"),
    (["--dropout", "1"], "argument --dropout: expected a number in [0, 1)"),
    (["--dropout", "-0.1"], "argument --dropout"),
    (["--batching", "padded"], "argument --batching: invalid choice"),
    (["--batch-size", "0"], "argument --batch-size"),
    (["--accumulate", "0"], "argument --accumulate: expected an integer >= 1"),
    (["--accumulate-tokens", "-1"], "argument --accumulate-tokens: expected "
                                    "an integer >= 0"),
    (["--normalize", "mean"], "argument --normalize: invalid choice"),
    (["--partial-window", "keep"], "argument --partial-window"),
    (["--optimizer", "lbfgs"], "argument --optimizer: invalid choice"),
    (["--lr", "0"], "argument --lr: expected a finite number > 0"),
    (["--lr", "inf"], "argument --lr: expected a finite number > 0"),
    (["--max-norm", "-1"], "argument --max-norm: expected a finite number "
                           ">= 0"),
    (["--max-norm", "nan"], "argument --max-norm"),
    (["--epochs", "0"], "argument --epochs"),
    (["--max-updates", "-1"], "argument --max-updates"),
    (["--valid-every", "often"], "argument --valid-every: expected an "
                                 "integer >= 0 or 'auto', got 'often'"),
    (["--valid-every", "-1"], "argument --valid-every"),
    (["--valid-max", "-5"], "argument --valid-max: expected an integer >= 0"),
    (["--valid-max", "auto"], "argument --valid-max: expected an integer"),
    (["--patience", "-2"], "argument --patience"),
    (["--lr-decay", "0"], "argument --lr-decay: expected a number in (0, 1]"),
    (["--lr-decay", "1.5"], "argument --lr-decay"),
    (["--max-bad-windows", "0"], "argument --max-bad-windows"),
    (["--seed", "-1"], "argument --seed: expected an integer >= 0"),
    (["--distributed", "yes"], "argument --distributed: invalid choice"),
    (["--progress", "always"], "argument --progress: invalid choice"),
    (["--resume", "yes"], "unrecognized arguments: yes"),
    (["--lowercase"], "unrecognized arguments: --lowercase"),
    (["--grad-clipping", "1"], "unrecognized arguments"),
])
def test_bad_flag_is_one_line_and_exit_2(tmp_path, capsys, flags, fragment):
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c\nd e f\n")
    out = tmp_path / "out"
    status = main(["train", str(corpus), "--out", str(out)] + flags)
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1 and fragment in lines[0], captured.err
    # unknown arguments are the program's parser's error, the rest train's
    assert lines[0].startswith(("lstm-accum train: error: ",
                                "lstm-accum: error: unrecognized"))
    assert captured.out == ""
    assert not out.exists()


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a b c\nd e f\n")
    return str(path)


@pytest.mark.parametrize("change, message", [
    (dict(corpus=""), "corpus must be the path of a text file"),
    (dict(out=""), "out must be a directory path, got ''"),
    (dict(vocab_size=True), "vocab_size must be an integer >= 1, got True"),
    (dict(units=2.0), "units must be an integer >= 1, got 2.0"),
    (dict(log_every=-1), "log_every must be an integer >= 0, got -1"),
    (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(valid_fraction=0.0), "valid_fraction must be a number strictly "
                               "between 0 and 1, got 0.0"),
    (dict(dropout=1.0), r"dropout must be a number in \[0, 1\), got 1.0"),
    (dict(dropout="0.5"), "dropout must be a number in"),
    (dict(grad_clipping=-1.0), r"grad_clipping must be a finite number >= 0 "
                               r"\(0 disables it\), got -1.0"),
    (dict(grad_clipping=float("inf")), "grad_clipping must be a finite"),
    (dict(valid_every=-1), r"valid_every must be an integer >= 0 or None "
                           r"\(auto\), got -1"),
    (dict(valid_every=2.0), r"valid_every must be an integer >= 0 or None"),
    (dict(valid_max=-1), r"valid_max must be an integer >= 0, got -1"),
    (dict(lr=0), r"lr must be a finite number > 0 \(e.g. 0.01\), got 0"),
    (dict(lr_decay=0.0), r"lr_decay must be a number in \(0, 1\], got 0.0"),
    (dict(min_improvement=1.0), r"min_improvement must be a number in "
                                r"\[0, 1\), got 1.0"),
    (dict(cell="rnn"), "cell must be one of lstm, gru, got 'rnn'"),
    (dict(input="chars"), "input must be one of onehot, ids, got 'chars'"),
    (dict(normalize="mean"), "normalize must be one of samples, tokens, sum"),
    (dict(progress=True), "progress must be one of auto, on, off, got True"),
    (dict(distributed="yes"), "distributed must be one of auto, on, off"),
    (dict(optimizer="lbfgs"), "optimizer must be one of adagrad, sgd, "
                              "momentum, nesterov_momentum, rmsprop, "
                              "adadelta, adam, got 'lbfgs'"),
    (dict(lowercase=1), "lowercase must be True or False, got 1"),
    (dict(float64="no"), "float64 must be True or False"),
    (dict(resume=None), "resume must be True or False, got None"),
])
def test_validate_config_names_the_bad_setting(corpus, tmp_path, change,
                                               message):
    config = TrainConfig(**dict(dict(corpus=corpus,
                                     out=str(tmp_path / "o")), **change))
    with pytest.raises(InputError, match="^" + message):
        validate_config(config)


def test_validate_config_accepts_the_edges(corpus, tmp_path):
    validate_config(TrainConfig(corpus=corpus, out=str(tmp_path / "o")))
    validate_config(TrainConfig(
        corpus=corpus, out=str(tmp_path), valid_fraction=0.999,
        dropout=0.0, lr_decay=1.0, min_improvement=0.0, grad_clipping=0.0,
        max_norm=0.0, seed=0, accumulate_tokens=0, max_updates=0,
        valid_every=0, patience=0, log_every=0, lr=1e-9))
    out_file = tmp_path / "file"
    out_file.write_text("")
    with pytest.raises(InputError, match="exists and is not a directory"):
        validate_config(TrainConfig(corpus=corpus, out=str(out_file)))
