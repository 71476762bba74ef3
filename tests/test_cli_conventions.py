"""Conventions shared across commands: -V, validate -q, shell completion, --color, several paths."""

from __future__ import annotations

import json

import click.testing
import pytest
from click.testing import CliRunner

from tokentype_cli import __version__
from tokentype_cli.cli import cli

from .conftest import CODON_VOCAB, EXAMPLE2_IDS, EXAMPLE2_TYPES, invoke, write_shard


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
    from .conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    assert 'eval "$(_TOKENTYPE_COMPLETE=bash_source tokentype)"' in readme
