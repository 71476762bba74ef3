"""`tokentype repack`: rewrite a shard's row datasets into the schema's storage, so the storage
warnings validate gives are fixed by the tool itself."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.helpers import EXAMPLE2_IDS, EXAMPLE2_TYPES, assert_one_line_error, digest, invoke
from tokentype_cli.schema.names import CATEGORY_IDS, INPUT_IDS, TOKEN_TYPE_IDS
from tokentype_cli.schema.storage import chunk_rows

STORAGE_CHECKS = {"dtype-not-int32", "not-gzip", "maxshape"}


def foreign_shard(path, ids_dtype="<i8", rows=3):
    """A shard as another tool writes it: int64 ids, no compression, fixed shape, contiguous."""
    with h5py.File(path, "w") as f:
        f.attrs["source"] = "elsewhere"
        ids = f.create_dataset(INPUT_IDS, data=np.array([EXAMPLE2_IDS] * rows, ids_dtype))
        ids.attrs["note"] = "kept"
        f.create_dataset(TOKEN_TYPE_IDS, data=np.array([EXAMPLE2_TYPES] * rows, "<i2"))
        f.create_dataset(CATEGORY_IDS, data=np.zeros((rows, 11), "<u1"), chunks=(1, 11))
        f.create_dataset("meta", data=np.arange(5))
    return path


def storage_findings(path) -> set[tuple[str, str]]:
    data = json.loads(invoke("validate", path, "--json").stdout)
    return {
        (f["check"], f["dataset"])
        for file in data["files"]
        for f in file["findings"]
        if f["check"] in STORAGE_CHECKS
    }


def test_repack_in_place_fixes_every_storage_warning(tmp_path):
    path = foreign_shard(tmp_path / "s.h5")
    assert storage_findings(path)  # int64, uncompressed, fixed maxshape
    result = invoke("repack", path)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"{path}: rewrote input_ids, token_type_ids, category_ids in the schema's storage"
        " (int32, gzip 4 + shuffle, row chunks, maxshape (None, 11))\n"
    )
    assert storage_findings(path) == set()
    assert invoke("validate", path, "--strict").exit_code == 0
    with h5py.File(path) as f:
        for name in (INPUT_IDS, TOKEN_TYPE_IDS, CATEGORY_IDS):
            dataset = f[name]
            assert dataset.dtype == np.dtype("<i4")
            assert (dataset.compression, dataset.compression_opts, dataset.shuffle) == (
                "gzip",
                4,
                True,
            )
            assert dataset.chunks == (chunk_rows(11), 11)
            assert dataset.maxshape == (None, 11)
        assert f[INPUT_IDS][:].tolist() == [EXAMPLE2_IDS] * 3
        assert f[TOKEN_TYPE_IDS][:].tolist() == [EXAMPLE2_TYPES] * 3
        assert f[INPUT_IDS].attrs["note"] == "kept"
        assert f.attrs["source"] == "elsewhere"
        assert f["meta"][:].tolist() == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_repack_to_output_leaves_the_input_alone_and_is_deterministic(tmp_path):
    path = foreign_shard(tmp_path / "s.h5")
    before = digest(path)
    for name in ("a.h5", "b.h5"):
        result = invoke("repack", path, "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
    assert digest(path) == before
    assert digest(tmp_path / "a.h5") == digest(tmp_path / "b.h5")
    assert storage_findings(tmp_path / "a.h5") == set()


def test_a_shard_already_in_the_schema_is_left_as_it_is(tmp_path):
    path = foreign_shard(tmp_path / "s.h5")
    invoke("repack", path)
    before = digest(path)
    result = invoke("repack", path)
    assert result.exit_code == 0
    assert result.stderr == f"{path}: already in the schema's storage; nothing written\n"
    assert digest(path) == before


def test_ids_beyond_int32_are_a_one_line_error_and_nothing_changes(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(INPUT_IDS, data=np.array([[1, 2, 2**31]], "<i8"))
    before = digest(path)
    result = invoke("repack", path)
    assert_one_line_error(result, 1, str(path), "2147483648", "int32")
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_repack_json(tmp_path):
    path = foreign_shard(tmp_path / "s.h5", rows=2)
    result = invoke("repack", path, "-o", tmp_path / "out.h5", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert data["path"] == str(path) and data["output"] == str(tmp_path / "out.h5")
    assert (data["written"], data["rows"], data["seq_len"]) == (True, 2, 11)
    assert list(data["datasets"]) == [INPUT_IDS, TOKEN_TYPE_IDS, CATEGORY_IDS]
    ids = data["datasets"][INPUT_IDS]
    assert ids["before"] == {
        "dtype": "<i8",
        "compression": None,
        "compression_opts": None,
        "shuffle": False,
        "chunks": None,
        "maxshape": [2, 11],
    }
    assert ids["after"] == {
        "dtype": "<i4",
        "compression": "gzip",
        "compression_opts": 4,
        "shuffle": True,
        "chunks": [chunk_rows(11), 11],
        "maxshape": [None, 11],
    }


@pytest.mark.parametrize("layout", ["no-input-ids", "1-d", "floats"])
def test_what_cannot_be_repacked_is_one_line_exit_1(tmp_path, layout):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        if layout == "no-input-ids":
            f["other"] = np.zeros((2, 3), np.int32)
        elif layout == "1-d":
            f[INPUT_IDS] = np.zeros(4, np.int32)
        else:
            f[INPUT_IDS] = np.zeros((2, 3), np.int32)
            f[TOKEN_TYPE_IDS] = np.zeros((2, 3), np.float32)
    before = digest(path)
    result = invoke("repack", path)
    assert_one_line_error(result, 1, str(path))
    assert digest(path) == before


def test_validate_points_storage_warnings_at_repack(tmp_path):
    path = foreign_shard(tmp_path / "s.h5")
    data = json.loads(invoke("validate", path, "--json").stdout)
    fixes = {f["fix"] for f in data["files"][0]["findings"] if f["check"] in STORAGE_CHECKS}
    assert fixes and all("tokentype repack FILE" in fix for fix in fixes)
