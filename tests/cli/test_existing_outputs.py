"""An existing output of any command is replaced only with --overwrite, and a file that is not
HDF5 never is."""

from __future__ import annotations

import pytest

from tests.helpers import CODON_VOCAB, EXAMPLE1_IDS, EXAMPLE1_TYPES, invoke, jsonl, write_shard


@pytest.fixture
def shard(tmp_path):
    return write_shard(tmp_path / "in.h5", [EXAMPLE1_IDS])


def _commands(tmp_path, shard, output):
    types = jsonl(tmp_path / "types.jsonl", EXAMPLE1_TYPES)
    source = jsonl(tmp_path / "pairs.jsonl", {"prompt": "GAA GGC GCC", "completion": "ATG"})
    return {
        "tokenize": ["tokenize", source, "-o", output, "--tokenizer", CODON_VOCAB],
        "add-types": ["add-types", shard, types, "-o", output],
        "assign-types": [
            "assign-types",
            shard,
            "--tokenizer",
            CODON_VOCAB,
            "--rule",
            "until:ATG=prompt",
            "-o",
            output,
        ],
        "repack": ["repack", shard, "-o", output],
    }


@pytest.mark.parametrize("command", ["tokenize", "add-types", "assign-types", "repack"])
def test_a_text_file_is_never_replaced(command, tmp_path, shard):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    args = _commands(tmp_path, shard, notes)[command]
    for extra in ([], ["--overwrite"]):
        result = invoke(*args, *extra)
        assert result.exit_code == 2, result.output
        assert "is not an HDF5 file; it is never replaced" in result.stderr
    assert notes.read_text() == "my notes\n"


@pytest.mark.parametrize("command", ["tokenize", "add-types", "assign-types", "repack"])
def test_an_existing_shard_needs_overwrite(command, tmp_path, shard):
    existing = write_shard(tmp_path / "old.h5", [[1, 2, 3]])
    args = _commands(tmp_path, shard, existing)[command]
    refused = invoke(*args)
    assert refused.exit_code == 2 and "already exists; pass --overwrite" in refused.stderr
    assert invoke(*args, "--overwrite").exit_code == 0
