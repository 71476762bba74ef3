"""Conventions shared across commands: -V, validate -q, shell completion, --color, several paths."""

from __future__ import annotations

import json

import click.testing
import pytest
from click.testing import CliRunner

from tests.helpers import CODON_VOCAB, EXAMPLE2_IDS, EXAMPLE2_TYPES, invoke, write_shard
from tokentype_cli import __version__
from tokentype_cli.cli import cli


@pytest.fixture
def good(tmp_path):
    return write_shard(tmp_path / "good.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])


@pytest.fixture
def bad(tmp_path):
    # A type outside 0..3 is an error.
    return write_shard(tmp_path / "bad.h5", [EXAMPLE2_IDS], [[0, 0, 0, 1, 1, 1, 3, 2, 2, 2, 7]])


# --- -V ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_short_and_long_version(flag):
    result = invoke(flag)
    assert result.exit_code == 0
    assert result.stdout == f"tokentype, version {__version__}\n"
    assert result.stderr == ""


# --- validate -q ---------------------------------------------------------------------------------


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_validate_quiet_prints_nothing_and_sets_the_exit_code(good, bad, json_flag):
    ok = invoke("validate", good, "-q", *json_flag)
    assert (ok.exit_code, ok.stdout, ok.stderr) == (0, "", "")
    failed = invoke("validate", good, bad, "--quiet", *json_flag)
    assert (failed.exit_code, failed.stdout, failed.stderr) == (1, "", "")


def test_validate_quiet_with_strict_fails_on_a_warning(tmp_path):
    untyped = write_shard(tmp_path / "untyped.h5", [EXAMPLE2_IDS])
    assert invoke("validate", untyped, "-q").exit_code == 0
    strict = invoke("validate", untyped, "-q", "--strict")
    assert (strict.exit_code, strict.stdout, strict.stderr) == (1, "", "")


def test_validate_quiet_bad_invocation_still_says_why(good):
    result = invoke("validate", good, "-q", "--vocab-size", 0)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "--vocab-size" in result.stderr


# --- shell completion ----------------------------------------------------------------------------


@pytest.mark.parametrize(("shell", "needle"), [("bash", "complete -o"), ("zsh", "compdef")])
def test_shell_completion_script(shell, needle):
    result = CliRunner().invoke(
        cli, [], prog_name="tokentype", env={"_TOKENTYPE_COMPLETE": f"{shell}_source"}
    )
    assert result.exit_code == 0, result.output
    assert needle in result.stdout
    assert "_TOKENTYPE_COMPLETE" in result.stdout
    assert result.stderr == ""


def test_readme_shows_how_to_enable_completion():
    from tests.helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    assert 'eval "$(_TOKENTYPE_COMPLETE=bash_source tokentype)"' in readme


# --- --color -------------------------------------------------------------------------------------

COLOURED = "\x1b[34m"  # prompt tokens


@pytest.fixture
def terminal(monkeypatch):
    """Make CliRunner's stdout claim to be a terminal."""
    monkeypatch.setattr(
        click.testing._NamedTextIOWrapper, "isatty", lambda self: True, raising=False
    )


def _rows(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env or {})


def _no_env(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


@pytest.fixture(params=["inspect", "diff"])
def colouring(request, good, tmp_path):
    """(args, exit code) of a command showing rows: inspect's rows, or diff's A above B."""
    if request.param == "inspect":
        return ["inspect", good, "--rows", 0], 0
    # Two prompt tokens become completion; the first stays prompt, in the prompt colour.
    retyped = write_shard(tmp_path / "retyped.h5", [EXAMPLE2_IDS], [[0, 1, 1, *EXAMPLE2_TYPES[3:]]])
    return ["diff", good, retyped, "--rows", 1], 1  # they teach differently: exit 1


@pytest.mark.parametrize(
    ("choice", "env", "coloured"),
    [
        ("always", {}, True),  # | less -R
        ("always", {"NO_COLOR": "1"}, True),  # the flag is more specific than the environment
        ("never", {}, False),
        ("never", {"FORCE_COLOR": "1"}, False),
        ("auto", {}, False),  # CliRunner's stdout is no terminal
        ("auto", {"FORCE_COLOR": "1"}, True),
        ("auto", {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),
        ("auto", {"FORCE_COLOR": "0"}, False),
        (None, {"FORCE_COLOR": "1"}, True),
    ],
)
def test_rows_color_choice_and_environment(colouring, monkeypatch, choice, env, coloured):
    _no_env(monkeypatch)
    args, code = colouring
    flag = [] if choice is None else ["--color", choice]
    result = _rows(*args, *flag, env=env)
    assert result.exit_code == code, result.output
    assert (COLOURED in result.stdout) is coloured
    assert ("[prompt]" in result.stdout) is not coloured
    assert result.stderr == ""


def test_auto_colours_a_terminal_unless_no_color(colouring, terminal, monkeypatch):
    _no_env(monkeypatch)
    args, _ = colouring
    assert COLOURED in _rows(*args).stdout
    assert COLOURED not in _rows(*args, env={"NO_COLOR": "1"}).stdout
    assert COLOURED not in _rows(*args, "--color", "never").stdout


def test_json_is_never_coloured(colouring, monkeypatch):
    _no_env(monkeypatch)
    args, code = colouring
    result = _rows(*args, "--json", "--color", "always")
    assert result.exit_code == code, result.output
    assert "\x1b[" not in result.stdout
    json.loads(result.stdout)


def test_assign_types_dry_run_preview_takes_color(tmp_path, monkeypatch):
    _no_env(monkeypatch)
    shard = write_shard(tmp_path / "s.h5", [EXAMPLE2_IDS])
    args = ["assign-types", shard, "--tokenizer", CODON_VOCAB, "--rule", "span:0:3=prompt"]
    coloured = _rows(*args, "--dry-run", "--color", "always")
    assert coloured.exit_code == 0, coloured.output
    assert COLOURED in coloured.stdout
    plain = _rows(*args, "--dry-run", "--color", "never", env={"FORCE_COLOR": "1"})
    assert "\x1b[" not in plain.stdout and "[prompt]" in plain.stdout


def test_a_bad_color_choice_is_exit_2(good):
    result = invoke("inspect", good, "--color", "sometimes")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "'sometimes' is not one of 'auto', 'always', 'never'" in result.stderr


@pytest.mark.parametrize("command", ["inspect", "assign-types", "diff"])
def test_every_colouring_command_has_the_same_color_option(command):
    (param,) = [p for p in cli.commands[command].params if p.name == "color"]
    assert param.opts == ["--color"]
    assert list(param.type.choices) == ["auto", "always", "never"]


# --- inspect takes several paths, like validate --------------------------------------------------


@pytest.fixture
def three(tmp_path):
    """a.h5 alone, and a folder d/ holding b.h5 (2 rows)."""
    a = write_shard(tmp_path / "a.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    (tmp_path / "d").mkdir()
    b = write_shard(tmp_path / "d" / "b.h5", [EXAMPLE2_IDS] * 2, [EXAMPLE2_TYPES] * 2)
    return a, tmp_path / "d", b


def test_inspect_several_paths_totals_them_and_lists_each_file(three):
    a, folder, b = three
    result = invoke("inspect", a, folder, "--json", "--prompt-loss-weight", 0)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert "path" not in data
    assert data["inputs"] == [str(a), str(folder)]
    assert (data["rows"], data["seq_len"]) == (3, 11)
    assert data["token_types"]["separator"] == {"count": 3, "share": 3 / 33}
    assert [f["path"] for f in data["files"]] == [str(a), str(b)]
    text = invoke("inspect", a, folder)
    assert text.stdout.startswith(f"{a}, {folder}  (2 files)\n  rows 3  seq_len 11")
    assert f"\n{b}\n" in text.stdout


def test_inspect_a_file_named_twice_counts_once(three):
    a, folder, b = three
    data = json.loads(invoke("inspect", a, b, folder, "--json").stdout)
    assert [f["path"] for f in data["files"]] == [str(a), str(b)]
    assert data["rows"] == 3


def test_inspect_rows_of_several_paths(three):
    a, folder, b = three
    result = invoke("inspect", a, folder, "--rows", "0")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"== {a} =="
    assert lines[1].startswith("row 0 of 1:")
    assert lines[3] == f"== {b} =="
    assert lines[4].startswith("row 0 of 2:")
    data = json.loads(invoke("inspect", a, folder, "--rows", "0", "--json").stdout)
    assert data["inputs"] == [str(a), str(folder)]
    assert [(f["path"], f["rows"], len(f["selected"])) for f in data["files"]] == [
        (str(a), 1, 1),
        (str(b), 2, 1),
    ]


def test_inspect_one_file_keeps_its_plain_shape(three):
    a, _, _ = three
    data = json.loads(invoke("inspect", a, "--json").stdout)
    assert data["path"] == str(a) and "inputs" not in data and "files" not in data


def test_inspect_needs_a_path():
    result = invoke("inspect")
    assert result.exit_code == 2
    assert "Missing argument 'PATHS...'" in result.stderr


def test_inspect_a_missing_one_among_several_is_one_line_exit_1(three, tmp_path):
    a, _, _ = three
    result = invoke("inspect", a, tmp_path / "nope.h5")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: {tmp_path / 'nope.h5'}: no such file; check the path\n"
