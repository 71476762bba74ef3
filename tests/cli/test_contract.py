"""Contracts every subcommand keeps: help with examples, one-line errors, exact exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import CODON_VOCAB, assert_one_line_error, invoke
from tokentype_cli.cli import cli

COMMANDS = [
    "tokenize",
    "assign-types",
    "add-types",
    "validate",
    "inspect",
    "diff",
    "repack",
    "pipeline",
    "data_prep",
]
# The HDF5 argument comes first for these; the rest are filled with harmless values.
HDF5_COMMANDS = {
    "assign-types": [],
    "add-types": ["types.npy"],
    "validate": [],
    "inspect": [],
    "repack": [],
    "diff": ["other.h5"],
}


def test_every_subcommand_is_there():
    assert sorted(cli.commands) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert "Example:" in result.stdout
    assert "tokentype " + command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_documented(command):
    for param in cli.commands[command].params:
        if param.param_type_name == "option" and not getattr(param, "hidden", False):
            assert param.help, f"{command} {param.opts} has no help"


def test_group_help_and_version():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.stdout
    version = invoke("--version")
    assert version.exit_code == 0 and "tokentype" in version.stdout


# diff exits 2 when it cannot compare, as diff(1) does (1 means the builds differ).
CANNOT_READ = {"diff": 2}


@pytest.mark.parametrize("command", sorted(HDF5_COMMANDS))
def test_missing_file_is_exit_1_with_one_line(command, tmp_path):
    missing = tmp_path / "missing.h5"
    result = invoke(command, missing, *HDF5_COMMANDS[command])
    assert result.exit_code == CANNOT_READ.get(command, 1), result.output
    assert result.stdout == "" or command == "validate"
    assert str(missing) in result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) <= 1


@pytest.mark.parametrize("command", sorted(HDF5_COMMANDS))
def test_non_hdf5_file_is_exit_1(command, tmp_path):
    bogus = tmp_path / "notes.h5"
    bogus.write_text("this is not HDF5\n")
    result = invoke(command, bogus, *HDF5_COMMANDS[command])
    assert result.exit_code == CANNOT_READ.get(command, 1), result.output
    assert "not an HDF5 file" in result.output
    assert "Traceback" not in result.output
    assert bogus.read_text() == "this is not HDF5\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_is_exit_2(command):
    result = invoke(command, "--no-such-option")
    assert result.exit_code == 2
    assert result.stdout == ""


def test_tokenize_missing_input_is_exit_1(tmp_path):
    result = invoke(
        "tokenize",
        tmp_path / "missing.jsonl",
        "-o",
        tmp_path / "out.h5",
        "--tokenizer",
        "sample_data/codon_vocab.json",
    )
    # A path that does not exist is a data error (exit 1), named with the fix, not a usage error.
    assert_one_line_error(result, 1, f"{tmp_path / 'missing.jsonl'}: no such file")
    assert not (tmp_path / "out.h5").exists()


# A harmless value for every required option, so each can be left out alone.
REQUIRED_OPTION_VALUES = {
    "--tokenizer": str(CODON_VOCAB),
}
REQUIRED_ARGUMENTS = {"tokenize": ["in.jsonl"], "pipeline": ["in.jsonl"], "data_prep": ["in.jsonl"]}


def _required_options(command: str) -> list[str]:
    # GDP's underscore spellings are aliases: the option is named by tokentype's spelling.
    own = [
        [name for name in param.opts if "_" not in name] for param in cli.commands[command].params
    ]
    return [
        names[-1] if names[-1].startswith("--") else names[0]
        for param, names in zip(cli.commands[command].params, own, strict=True)
        if param.param_type_name == "option" and param.required
    ]


@pytest.mark.parametrize(
    ("command", "missing"),
    [(command, option) for command in COMMANDS for option in _required_options(command)],
)
def test_each_required_option_left_out_is_a_usage_error(command, missing, tmp_path):
    given = [
        arg
        for option in _required_options(command)
        if option != missing
        for arg in (option, str(tmp_path / REQUIRED_OPTION_VALUES[option]))  # absolute stays
    ]
    result = invoke(command, *REQUIRED_ARGUMENTS.get(command, []), *given)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "Error: Missing option" in result.stderr and f"'{missing}'" in result.stderr


def test_tokenize_without_an_output_asks_for_one_or_a_dataset(tmp_path):
    result = invoke("tokenize", "in.jsonl", "--tokenizer", CODON_VOCAB)
    assert result.exit_code == 2, result.output
    assert "Missing option '-o' / '--output' (or '--dataset DIR'" in result.stderr
    both = invoke(
        "tokenize", "in.jsonl", "--tokenizer", CODON_VOCAB, "-o", tmp_path / "x.h5",
        "--dataset", tmp_path / "ds",
    )  # fmt: skip
    assert both.exit_code == 2 and "exclude each other" in both.stderr


def test_the_required_options_are_known():
    found = {option for command in COMMANDS for option in _required_options(command)}
    assert found == set(REQUIRED_OPTION_VALUES)


@pytest.mark.parametrize("command", ["tokenize", "add-types", "assign-types", "repack"])
def test_output_to_stdout_is_refused(command, tmp_path, example1_shard, monkeypatch):
    args = {
        "tokenize": ["in.jsonl", "--tokenizer", str(CODON_VOCAB)],
        "add-types": [str(example1_shard), "types.npy"],
        "assign-types": [str(example1_shard), "--rule", "span:0:1=prompt"],
        "repack": [str(example1_shard)],
    }[command]
    monkeypatch.chdir(tmp_path)  # where a file named "-" would appear
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke(command, *args, "-o", "-")
    assert result.exit_code == 2, result.output
    assert "seekable" in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_only_the_cli_package_imports_click():
    package = Path(__file__).resolve().parents[2] / "tokentype_cli"
    importers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.parent.name != "cli"
        and re.search(r"^\s*(import|from) click\b", path.read_text(), re.M)
    )
    assert importers == []
