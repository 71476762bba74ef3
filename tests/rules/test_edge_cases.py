"""assign-types regressions from QA: span bounds beyond every row."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import pytest

from tests.helpers import ROOT, invoke
from tokentype_cli.schema.names import TOKEN_TYPE_IDS

# --- assign-types: span bounds beyond any row ---------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("span:99999999999999999999:=prompt", [1, 1, 1, 1, 1, 1, 3]),
        ("span:-99999999999999999999:2=prompt", [0, 0, 1, 1, 1, 1, 3]),
        ("span::99999999999999999999=prompt", [0, 0, 0, 0, 0, 0, 3]),
    ],
)
def test_span_bounds_beyond_every_row_mean_what_python_slices_mean(example1_shard, spec, expected):
    result = invoke("assign-types", example1_shard, "--sep", 2, "--rule", spec, "--json")
    assert result.exit_code == 0, result.output
    with h5py.File(example1_shard) as shard:
        assert shard[TOKEN_TYPE_IDS][0].tolist() == expected


def test_span_bounds_beyond_every_row_in_a_rules_file(example1_shard, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{"span": [-(10**30), 10**30], "type": "prompt"}]}))
    result = invoke("assign-types", example1_shard, "--sep", 2, "--rules", rules)
    assert result.exit_code == 0, result.output
    with h5py.File(example1_shard) as shard:
        assert shard[TOKEN_TYPE_IDS][0].tolist() == [0, 0, 0, 0, 0, 0, 3]


# --- assign-types: --rules - without a standard input --------------------------------------------


def test_rules_from_a_closed_stdin_is_one_line(example1_shard):
    command = [sys.executable, "-m", "tokentype_cli", "assign-types", str(example1_shard)]
    done = subprocess.run(
        [*command, "--rules", "-", "--dry-run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        preexec_fn=lambda: os.close(0),  # as with `<&-` in a shell
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "Error: <stdin>: no standard input to read rules from; give a rules file"
    ]
