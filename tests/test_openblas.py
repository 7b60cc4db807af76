"""lstm_accum.backend.openblas: OpenBLAS kernel detection, the OPENBLAS_CORETYPE hint,
and the restart with faster kernels (select_kernels).

Nothing here changes the environment of the test process, and no test runs
a process with OPENBLAS_CORETYPE set: the restart is tested with os.execve
replaced, the subprocesses run with LSTM_ACCUM_CORETYPE=off (conftest) or
stop before any restart.
"""
import json
import os
import re
import subprocess
import sys
import types

import pytest

from lstm_accum.backend import openblas as blas
from lstm_accum.exceptions import InputError, LstmAccumError

AVX512 = {"sse3", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw",
          "avx512dq", "avx512vl"}
AVX2 = {"sse3", "avx", "avx2", "fma"}


@pytest.mark.parametrize("core, flags, environ, expected", [
    ("Prescott", AVX512, {}, "SkylakeX"),
    ("Prescott", AVX2, {}, "Haswell"),
    ("Sandybridge", AVX2, {}, "Haswell"),        # AVX1 kernels only
    ("Prescott", {"sse3", "avx"}, {}, None),     # nothing faster to offer
    ("Prescott", AVX512 - {"avx512bw"}, {}, "Haswell"),
    ("Haswell", AVX512, {}, None),               # already AVX2 kernels
    ("Zen", AVX512, {}, None),
    ("SkylakeX", AVX512, {}, None),
    ("Prescott", AVX512, {"OPENBLAS_CORETYPE": "Haswell"}, None),  # user's
    ("", AVX512, {}, None),                      # unknown
])
def test_recommend_coretype(core, flags, environ, expected):
    assert blas.recommend_coretype(core, flags, environ) == expected


def test_coretype_hint_names_the_kernels_and_the_fix():
    hint = blas.coretype_hint("Prescott", AVX512, {})
    assert "'Prescott'" in hint and "OPENBLAS_CORETYPE=SkylakeX" in hint
    assert "\n" not in hint
    assert blas.coretype_hint("Haswell", AVX512, {}) is None


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\n"
                    "flags\t\t: fpu sse3 avx2 fma\nbugs\t\t: none\n")
    assert blas.cpu_flags(str(info)) == {"fpu", "sse3", "avx2", "fma"}
    assert blas.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_loaded_openblas_reads_the_memory_map(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f0-7f1 r--p 00000000 00:1f 1 /usr/lib/libc.so.6\n"
        "7f1-7f2 r-xp 00000000 00:1f 2 /x/numpy.libs/libopenblas64_p.so\n"
        "7f2-7f3 r--p 00001000 00:1f 2 /x/numpy.libs/libopenblas64_p.so\n"
        "7f3-7f4 rw-p 00000000 00:00 0 \n"
        "7f4-7f5 r-xp 00000000 00:1f 3 /usr/lib/libopenblas.so.0\n")
    assert blas.loaded_openblas(str(maps)) == [
        "/x/numpy.libs/libopenblas64_p.so", "/usr/lib/libopenblas.so.0"]
    assert blas.loaded_openblas(str(tmp_path / "missing")) == []


def test_openblas_corename_agrees_with_openblas_itself():
    # OpenBLAS prints the kernels it chose when OPENBLAS_VERBOSE=2 (set in
    # a subprocess only).  NumPy's is the only OpenBLAS ``import numpy``
    # loads.
    proc = subprocess.run(
        [sys.executable, "-c", "import numpy"],
        env=dict(os.environ, OPENBLAS_VERBOSE="2"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    reported = re.findall(r"Core: (\S+)", proc.stdout)
    assert len(reported) == 1, proc.stdout
    assert blas.openblas_corename() == reported[0]


# -- select_kernels: restart with faster kernels, decided from fake inputs ----
# os.execve is replaced by a recorder that stops the call the way a real
# exec would (it never returns); OPENBLAS_CORETYPE is only ever a key in the
# dictionaries these tests build, never in this process's environment.
class Restarted(Exception):
    pass


@pytest.fixture
def execs(monkeypatch):
    calls = []

    def fake_execve(path, args, env):
        calls.append((path, list(args), dict(env)))
        raise Restarted()

    monkeypatch.setattr(os, "execve", fake_execve)
    return calls


ARGV = ["-m", "lstm_accum.cli", "train", "corpus.txt", "--out", "run"]


@pytest.mark.parametrize("environ, core, flags, expected", [
    ({}, "Prescott", AVX512, "SkylakeX"),
    ({}, "Prescott", AVX2, "Haswell"),
    ({"LSTM_ACCUM_CORETYPE": "auto"}, "Prescott", AVX512, "SkylakeX"),
    ({"LSTM_ACCUM_CORETYPE": ""}, "Prescott", AVX512, "SkylakeX"),
    ({"LSTM_ACCUM_CORETYPE": "off"}, "Prescott", AVX512, "off"),
    ({"LSTM_ACCUM_CORETYPE": " OFF "}, "Prescott", AVX512, "off"),
    ({"OPENBLAS_CORETYPE": "Prescott"}, "Prescott", AVX512, "user"),
    # a marker without our OPENBLAS_CORETYPE: never restart again
    ({"LSTM_ACCUM_CORETYPE_SELECTED": "SkylakeX"}, "Prescott", AVX512,
     "user"),
    ({"LSTM_ACCUM_CORETYPE_SELECTED": "rejected"}, "Prescott", AVX512,
     "rejected"),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, "Prescott", AVX512, "mpi"),
    ({"PMI_SIZE": "1"}, "Prescott", AVX512, "mpi"),
    ({"PMIX_RANK": "0"}, "Prescott", AVX512, "mpi"),
    ({}, "Prescott", {"sse", "sse2", "sse3"}, "fine"),   # only SSE: nothing
    ({}, "Haswell", AVX512, "fine"),
    ({}, "Zen", AVX512, "fine"),
    ({}, None, AVX512, "fine"),                       # no OpenBLAS found
])
def test_select_kernels_decides(execs, capsys, environ, core, flags,
                                expected):
    given = dict(environ)
    try:
        outcome = blas.select_kernels(ARGV, given, core, flags, prog="prog")
    except Restarted:
        outcome = execs[0][2]["OPENBLAS_CORETYPE"]
    assert outcome == expected
    assert given == environ                     # the caller's copy untouched
    assert len(execs) == (1 if expected in ("SkylakeX", "Haswell") else 0)
    if not execs:
        assert capsys.readouterr().err == ""    # silent unless it acts


def test_select_kernels_restarts_the_same_program(execs, capsys):
    environ = {"PATH": "/bin", "THEANO_FLAGS": "floatX=float32"}
    with pytest.raises(Restarted):
        blas.select_kernels(ARGV, environ, "Prescott", AVX512,
                            prog="lstm-accum")
    (path, args, env), = execs
    assert path == sys.executable
    assert args == [sys.executable] + ARGV
    assert env == {"PATH": "/bin", "THEANO_FLAGS": "floatX=float32",
                   "OPENBLAS_CORETYPE": "SkylakeX",
                   "LSTM_ACCUM_CORETYPE_SELECTED": "SkylakeX"}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lstm-accum: ")
    assert "'Prescott'" in err and "OPENBLAS_CORETYPE=SkylakeX" in err
    assert "LSTM_ACCUM_CORETYPE=off" in err


def test_select_kernels_restarted_program_checks_and_stays(execs, capsys):
    # The environment the restart gets: OPENBLAS_CORETYPE set by us, with
    # the marker.  Even if OpenBLAS still reported a generic core there,
    # nothing is restarted again; the kernels are checked instead (here the
    # ones this process really runs: they are right).
    environ = {"OPENBLAS_CORETYPE": "SkylakeX",
               "LSTM_ACCUM_CORETYPE_SELECTED": "SkylakeX"}
    assert blas.select_kernels(ARGV, environ, "Prescott", AVX512,
                               prog="p") == "checked"
    assert execs == []
    err = capsys.readouterr().err
    # this process's OpenBLAS was not switched: the restart says so
    switched = (blas.openblas_corename() or "").lower() == "skylakex"
    assert ("did not switch to its SkylakeX kernels" in err) != switched


@pytest.mark.parametrize("error", [0.3, float("nan")])
def test_select_kernels_drops_kernels_that_compute_wrong_products(
        execs, capsys, monkeypatch, error):
    monkeypatch.setattr(blas, "check_kernels", lambda: {
        "float32 GEMM": (error, 1e-4), "float64 GEMM": (1e-16, 1e-10)})
    environ = {"PATH": "/bin", "OPENBLAS_CORETYPE": "SkylakeX",
               "LSTM_ACCUM_CORETYPE_SELECTED": "SkylakeX"}
    with pytest.raises(Restarted):
        blas.select_kernels(ARGV, environ, prog="p")
    (path, args, env), = execs
    assert args == [sys.executable] + ARGV
    # the user's own environment again, marked so nothing restarts or hints
    assert env == {"PATH": "/bin", "LSTM_ACCUM_CORETYPE_SELECTED": "rejected"}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err
    assert "float32 GEMM: relative error" in err and "float64" not in err
    assert "LSTM_ACCUM_CORETYPE=off" in err
    assert blas.select_kernels(ARGV, env, "Prescott", AVX512) == "rejected"
    assert blas.coretype_hint("Prescott", AVX512, env) is None
    assert len(execs) == 1


def test_select_kernels_stops_when_wrong_kernels_cannot_be_dropped(
        execs, monkeypatch):
    monkeypatch.setattr(blas, "check_kernels", lambda: {
        "float32 GEMM": (0.3, 1e-4)})
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    environ = {"OPENBLAS_CORETYPE": "Haswell",
               "LSTM_ACCUM_CORETYPE_SELECTED": "Haswell"}
    with pytest.raises(LstmAccumError, match="LSTM_ACCUM_CORETYPE=off"):
        blas.select_kernels(None, environ, prog="p")
    assert execs == []


def test_select_kernels_rejects_an_unknown_setting(execs):
    with pytest.raises(InputError) as info:
        blas.select_kernels(ARGV, {"LSTM_ACCUM_CORETYPE": "fast"},
                            "Prescott", AVX512)
    message = str(info.value)
    assert "LSTM_ACCUM_CORETYPE='fast'" in message
    assert "'auto'" in message and "'off'" in message
    assert execs == []


def test_select_kernels_frozen_program_is_not_restarted(execs, monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert blas.select_kernels(None, {}, "Prescott", AVX512) == \
        "cannot-restart"
    assert execs == []


def test_coretype_hint_under_mpi_says_how_to_pass_it():
    hint = blas.coretype_hint("Prescott", AVX512, {"OMPI_COMM_WORLD_SIZE": "2"})
    assert "mpirun -x OPENBLAS_CORETYPE=SkylakeX" in hint
    assert "\n" not in hint


# -- check_kernels: BLAS against loops that are not BLAS ----------------------
def test_check_kernels_passes_correct_kernels_quickly(monkeypatch):
    # "Quickly" as work done, not wall-clock time (the machine is shared):
    # four small products through BLAS and their four references, about
    # 3 million multiply-adds in all (a few milliseconds), and no process.
    import subprocess

    import numpy as np
    real_dot, real_einsum = np.dot, np.einsum
    shapes = []

    def dot(a, b):
        shapes.append(("dot", np.shape(a), np.shape(b)))
        return real_dot(a, b)

    def einsum(subscripts, *operands, **kwargs):
        shapes.append(("einsum",) + tuple(np.shape(o) for o in operands))
        return real_einsum(subscripts, *operands, **kwargs)

    def no_process(*args, **kwargs):
        raise AssertionError("check_kernels started a process")

    monkeypatch.setattr(np, "dot", dot)
    monkeypatch.setattr(np, "einsum", einsum)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    errors = blas.check_kernels()
    gemm, gemv = ((67, 131), (131, 53)), ((67, 131), (131,))
    assert shapes == [(kind,) + case for case in (gemm, gemm, gemv, gemm)
                      for kind in ("dot", "einsum")]
    multiply_adds = sum(np.prod(a) * (b[-1] if len(b) > 1 else 1)
                        for _, a, b in shapes)
    assert multiply_adds < 3e6
    assert set(errors) == {"float32 GEMM", "float32 GEMM (transposed)",
                           "float32 GEMV", "float64 GEMM"}
    for name, (error, tolerance) in errors.items():
        assert error <= tolerance, name
        assert error > 0 or name.startswith("float64")  # really float32


def test_check_kernels_catches_a_wrong_product(monkeypatch):
    import numpy as np
    real_dot = np.dot

    def off_by_a_bit(a, b):     # one wrong element, as a broken kernel gives
        out = real_dot(a, b)
        out.flat[7] += 0.01 * np.abs(out).max()
        return out

    monkeypatch.setattr(np, "dot", off_by_a_bit)
    errors = blas.check_kernels()
    for name, (error, tolerance) in errors.items():
        assert error > tolerance, name      # the reference is not np.dot
        assert error == pytest.approx(0.01, rel=1e-3)


# -- restart_arguments: the command that starts this program again ------------
def _main(path=None, spec_name=None):
    spec = types.SimpleNamespace(name=spec_name) if spec_name else None
    main = types.ModuleType("__main__")
    main.__spec__ = spec
    if path:
        main.__file__ = path
    return main


def test_restart_arguments_python_dash_m(tmp_path):
    cli_file = os.path.abspath(blas.__file__.replace("blas.py", "cli.py"))
    args = blas.restart_arguments(
        ["/usr/bin/python3", "-X", "dev", "-m", "lstm_accum.cli", "train",
         "c.txt"], [cli_file, "train", "c.txt"],
        _main(cli_file, "lstm_accum.cli"))
    # not the module's file: run as a script its relative imports fail
    assert args == ["-X", "dev", "-m", "lstm_accum.cli", "train", "c.txt"]


def test_restart_arguments_relative_script_after_chdir(tmp_path):
    script = tmp_path / "examples" / "train.py"
    script.parent.mkdir()
    script.write_text("")
    # Python recorded the absolute path at start (__main__.__file__); the
    # command line holds the relative one, useless after a chdir.
    args = blas.restart_arguments(
        ["python", "-u", "examples/train.py", "--quick"],
        ["examples/train.py", "--quick"], _main(str(script)))
    assert args == ["-u", str(script), "--quick"]
    # the same through a profiler (python -m cProfile examples/train.py)
    args = blas.restart_arguments(
        ["python", "-m", "cProfile", "examples/train.py", "--quick"],
        ["examples/train.py", "--quick"], _main(str(script)))
    assert args == ["-m", "cProfile", str(script), "--quick"]
    # a wrapper script running another file as __main__ restarts itself
    args = blas.restart_arguments(["python", "wrap.py", "a"],
                                  ["wrap.py", "a"], _main(str(script)))
    assert args == ["wrap.py", "a"]


def test_restart_arguments_dash_c_and_the_impossible(monkeypatch):
    assert blas.restart_arguments(["python", "-c", "code", "a"], ["-c", "a"],
                                  _main()) == ["-c", "code", "a"]
    assert blas.restart_arguments(["python", "-"], ["-"], _main()) is None
    assert blas.restart_arguments(["python"], [""], _main()) is None
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert blas.restart_arguments(["prog", "a"], ["prog", "a"],
                                  _main("/x/prog")) is None


def test_restart_arguments_before_python_3_10(monkeypatch, tmp_path):
    # No sys.orig_argv: rebuilt from the interpreter's flags, the main
    # module's spec (python -m) or its file.
    monkeypatch.delattr(sys, "orig_argv", raising=False)
    flags = subprocess._args_from_interpreter_flags()
    assert blas.restart_arguments(None, ["/x/cli.py", "train"], _main(
        "/x/cli.py", "lstm_accum.cli")) == flags + ["-m", "lstm_accum.cli",
                                                   "train"]
    assert blas.restart_arguments(None, ["/x/__main__.py", "a"], _main(
        "/x/__main__.py", "tool.__main__")) == flags + ["-m", "tool", "a"]
    script = tmp_path / "s.py"
    script.write_text("")
    assert blas.restart_arguments(None, ["s.py", "a"], _main(
        str(script))) == flags + [str(script), "a"]
    assert blas.restart_arguments(None, ["-c", "a"], _main()) is None


RESTART_PROBE = """\
import json, os, sys
from lstm_accum.backend import openblas as blas
os.chdir(os.sep)     # elsewhere, before working out the restart
if os.environ.get("PROBE_AGAIN"):
    print(json.dumps({"again": sys.argv}))
else:
    print(json.dumps(blas.restart_arguments()))
"""


def test_restart_arguments_really_restart_the_program(tmp_path):
    # The same program, started as a relative script and with -m, works out
    # its own restart command; running that command (from another
    # directory, without OPENBLAS_CORETYPE) starts the same program again.
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "probe.py").write_text(RESTART_PROBE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         str(tmp_path / "sub")]))
    for command in (["sub/probe.py", "x", "y"], ["-m", "probe", "x", "y"]):
        proc = subprocess.run([sys.executable] + command, cwd=str(tmp_path),
                              env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        args = json.loads(proc.stdout)
        assert args[-2:] == ["x", "y"]
        if command[0] == "-m":
            assert args[:2] == ["-m", "probe"]
        else:
            assert args[0] == str(tmp_path / "sub" / "probe.py")
        again = subprocess.run([sys.executable] + args, cwd=os.sep,
                               env=dict(env, PROBE_AGAIN="1"),
                               capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        argv = json.loads(again.stdout)["again"]
        assert os.path.basename(argv[0]) == "probe.py" and argv[1:] == [
            "x", "y"]


# -- wiring: entry points select, the library never does ----------------------
def test_importing_lstm_accum_never_restarts_or_changes_the_environment():
    code = ("import os, sys\n"
            "def no_exec(*args):\n"
            "    sys.exit('os.execve called at import')\n"
            "os.execve = no_exec\n"
            "before = dict(os.environ)\n"
            "import lstm_accum, lstm_accum.cli\n"
            "assert dict(os.environ) == before, 'environment changed'\n")
    env = {k: v for k, v in os.environ.items() if k != "LSTM_ACCUM_CORETYPE"}
    proc = subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_console_main_selects_kernels_first(monkeypatch):
    import importlib
    from lstm_accum import cli
    program = importlib.import_module("lstm_accum.cli.program")
    order = []
    monkeypatch.setattr(blas, "select_kernels",
                        lambda **kw: order.append(("select", kw)))
    monkeypatch.setattr(program, "main", lambda: order.append(("main",)) or 0)
    with pytest.raises(SystemExit) as info:
        cli.console_main()
    assert info.value.code == 0
    assert order == [("select", {"prog": "lstm-accum"}), ("main",)]


@pytest.mark.parametrize("command", [
    ["-m", "lstm_accum.cli", "train", "nope.txt", "--out", "o"],
    [os.path.join("examples", "train_lm.py"), "--quick"],
])
def test_entry_points_refuse_an_unknown_setting(command, repo_root,
                                                tmp_path):
    env = dict(os.environ, LSTM_ACCUM_CORETYPE="fast")
    proc = subprocess.run([sys.executable] + command, cwd=repo_root,
                          env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "LSTM_ACCUM_CORETYPE='fast'" in proc.stderr


def test_train_prints_the_hint_only_for_a_valid_run(monkeypatch, capsys,
                                                    tmp_path):
    # Where no restart happened (opted out, MPI), `train` still tells the
    # user; a user error stays one line.
    import importlib
    from lstm_accum import cli
    train = importlib.import_module("lstm_accum.cli.train")  # the command
    monkeypatch.setattr(blas, "coretype_hint",
                        lambda *args, **kwargs: "hint: faster kernels")
    out = str(tmp_path / "run")
    assert cli.main(["train", str(tmp_path / "nope.txt"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err

    class NoTraining(object):
        """Set up (the settings were valid), then stops at run()."""

        def __init__(self, config, log=None):
            pass

        def run(self):
            raise InputError("stopped before training")

    monkeypatch.setattr(train, "Trainer", NoTraining)
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c\nd e f\n")
    assert cli.main(["train", str(corpus), "--out", out]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "lstm-accum: note: hint: faster kernels",
        "lstm-accum train: error: stopped before training"]
