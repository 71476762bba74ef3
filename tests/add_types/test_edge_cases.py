"""add-types regressions from QA: unreadable sources and JSON values that are not types."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.helpers import EXAMPLE1_IDS, EXAMPLE1_TYPES, assert_one_line_error, digest, invoke

# --- add-types: sources that cannot be read or are not integers ---------------------------------


def test_jsonl_source_that_cannot_be_opened_is_one_line(example1_shard, tmp_path):
    folder = tmp_path / "types.jsonl"
    folder.mkdir()
    before = digest(example1_shard)
    result = invoke("add-types", example1_shard, folder)
    assert_one_line_error(result, 1, str(folder))
    assert digest(example1_shard) == before


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # JSON booleans are not token types (numpy would read true as 1).
        ("[0, 0, 0, true, 1, 1, 3]", "column 3 is True, not an integer type"),
        ("[false, 0, 0, 1, 1, 1, 3]", "column 0 is False, not an integer type"),
        # Too large for numpy's integers: still named at its own column, as a bad type.
        (
            "[0, 0, 0, 1, 1, 99999999999999999999999, 3]",
            "column 5 has type 99999999999999999999999",
        ),
    ],
)
def test_jsonl_values_that_are_not_types(example1_shard, line, expected):
    before = digest(example1_shard)
    result = invoke("add-types", example1_shard, "-", input=line + "\n")
    assert_one_line_error(result, 1, "<stdin>:1:", expected)
    assert digest(example1_shard) == before


# --- add-types / assign-types: a dataset that cannot be copied into the new file ----------------


@pytest.mark.parametrize("command", ["add-types", "assign-types"])
def test_dangling_link_beside_input_ids_is_one_line_and_nothing_written(tmp_path, command):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as shard:
        shard["input_ids"] = np.array([EXAMPLE1_IDS], np.int32)
        shard["category_ids"] = h5py.SoftLink("/nowhere")
    np.save(tmp_path / "t.npy", np.array([EXAMPLE1_TYPES], np.int32))
    before = digest(path)
    args = ["t.npy"] if command == "add-types" else ["--sep", "2"]
    args = [tmp_path / a if a.endswith(".npy") else a for a in args]
    result = invoke(command, path, *args)
    assert_one_line_error(result, 1, str(path), "'category_ids'")
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5", "t.npy"]


# --- add-types: a JSONL source is spooled where the result is written ----------------------------


def test_jsonl_is_spooled_beside_the_output_not_the_read_only_file(
    example1_shard, tmp_path, monkeypatch
):
    # FILE's folder may be read-only (a shared data set) when -o writes elsewhere.
    from tokentype_cli.add_types import add as add_types

    real = add_types.temporary_folder
    used = []

    def spy(beside):
        used.append(Path(beside).parent)
        if Path(beside).parent == example1_shard.parent:
            raise PermissionError(1, "Operation not permitted")
        return real(beside)

    monkeypatch.setattr(add_types, "temporary_folder", spy)
    out = tmp_path / "elsewhere"
    out.mkdir()
    result = invoke(
        "add-types", example1_shard, "-", "-o", out / "typed.h5", input="[0,0,0,1,1,1,3]\n"
    )
    assert result.exit_code == 0, result.output
    assert used == [out]
    # In place, a folder that cannot be written is one line, not a traceback.
    result = invoke("add-types", example1_shard, "-", input="[0,0,0,1,1,1,3]\n")
    assert_one_line_error(result, 1, "<stdin>: cannot spool the types beside", "writable")
