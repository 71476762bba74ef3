"""assign-types' report names each row of counts for what it is: the file's own types, the structure
the rules start from, and the result."""

from __future__ import annotations

import json

import pytest

from tests.helpers import CODON_VOCAB, EXAMPLE2_IDS, EXAMPLE2_TYPES, invoke, write_shard

RULE = ["--tokenizer", CODON_VOCAB, "--rule", "until:ATG=prompt"]


def count_rows(stderr: str) -> dict[str, list[str]]:
    lines = stderr.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["tokens"])
    assert lines[header].split() == ["tokens", "prompt", "completion", "padding", "separator"]
    return {line.split()[0]: line.split()[1:] for line in lines[header + 1 :]}


def shares(prompt, completion, padding, separator):
    total = prompt + completion + padding + separator
    counts = dict(prompt=prompt, completion=completion, padding=padding, separator=separator)
    return {name: {"count": n, "share": n / total} for name, n in counts.items()}


def test_untyped_file_shows_the_structure_and_the_result(tmp_path):
    shard = write_shard(tmp_path / "s.h5", [EXAMPLE2_IDS])
    result = invoke("assign-types", shard, *RULE)
    assert result.exit_code == 0, result.output
    assert count_rows(result.stderr) == {
        "structure": ["0", "6", "4", "1"],
        "after": ["3", "3", "4", "1"],
    }
    assert "  structure: sep 2, pad 69, default completion" in result.stderr


def test_typed_file_shows_its_existing_types_first(tmp_path):
    # The file's own types differ from the structure the rules start from.
    shard = write_shard(tmp_path / "s.h5", [EXAMPLE2_IDS], [[1, 1, 1, 1, 1, 1, 3, 2, 2, 2, 2]])
    result = invoke("assign-types", shard, *RULE, "--overwrite")
    assert result.exit_code == 0, result.output
    assert count_rows(result.stderr) == {
        "existing": ["0", "6", "4", "1"],
        "structure": ["0", "6", "4", "1"],
        "after": ["3", "3", "4", "1"],
    }
    dry = invoke("assign-types", shard, *RULE, "--dry-run", "--rule", "span:0:1=padding")
    assert count_rows(dry.stderr)["existing"] == ["3", "3", "4", "1"]


def test_from_existing_starts_from_the_existing_types(tmp_path):
    shard = write_shard(tmp_path / "s.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    result = invoke("assign-types", shard, "--from-existing", "--rule", "span:0:1=completion")
    assert result.exit_code == 0, result.output
    assert count_rows(result.stderr) == {
        "existing": ["3", "3", "4", "1"],
        "after": ["2", "4", "4", "1"],
    }


@pytest.mark.parametrize("typed", [False, True])
def test_json_gives_the_same_rows_in_the_common_shape(tmp_path, typed):
    types = [[1, 1, 1, 1, 1, 1, 3, 2, 2, 2, 2]] if typed else None
    shard = write_shard(tmp_path / "s.h5", [EXAMPLE2_IDS], types)
    result = invoke("assign-types", shard, *RULE, "--overwrite", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert data["path"] == str(shard) and data["output"] == str(shard)
    assert (data["rows"], data["seq_len"]) == (1, 11)
    assert data["token_types"] == shares(3, 3, 4, 1)
    assert data["token_types_structure"] == shares(0, 6, 4, 1)
    assert data["token_types_existing"] == (shares(0, 6, 4, 1) if typed else None)
    assert "types_before" not in data and "types_after" not in data and "file" not in data
