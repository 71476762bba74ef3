"""add-types: every source format, the checks made before writing, and nothing lost on failure."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tests.helpers import (
    EXAMPLE1_ALT_TYPES,
    EXAMPLE1_IDS,
    EXAMPLE1_TYPES,
    digest,
    types_of,
    write_shard,
)
from tokentype_cli.cli import cli
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_IDS


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


@pytest.fixture
def sources(tmp_path):
    """Example 1's types in each source format, keyed by how the CLI names them."""
    types = np.array([EXAMPLE1_TYPES], dtype=np.int32)
    np.save(tmp_path / "types.npy", types)
    (tmp_path / "types.jsonl").write_text(json.dumps(EXAMPLE1_TYPES) + "\n")
    write_shard(tmp_path / "other.h5", [EXAMPLE1_IDS], types)
    with h5py.File(tmp_path / "named.h5", "w") as shard:
        shard["my_types"] = types
    return tmp_path


@pytest.mark.parametrize(
    ("source", "stdin"),
    [
        ("types.npy", None),
        ("types.jsonl", None),
        ("other.h5", None),
        ("named.h5:my_types", None),
        ("-", json.dumps(EXAMPLE1_TYPES) + "\n"),
    ],
)
def test_every_source_gives_the_documents_example(example1_shard, sources, source, stdin):
    argument = source if source == "-" else sources / source
    result = run("add-types", example1_shard, argument, input=stdin)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "wrote token_type_ids 1 x 7" in result.stderr
    assert types_of(example1_shard) == [EXAMPLE1_TYPES]
    with h5py.File(example1_shard, "r") as shard:
        assert shard[INPUT_IDS][:].tolist() == [EXAMPLE1_IDS]
        dataset = shard[TOKEN_TYPE_IDS]
        assert (dataset.dtype, dataset.compression, dataset.maxshape) == ("i4", "gzip", (None, 7))
        assert dataset.attrs["tokentype_command"] == "tokentype add-types"


def test_quiet_prints_nothing(example1_shard, sources):
    result = run("add-types", example1_shard, sources / "types.npy", "--quiet")
    assert result.exit_code == 0
    assert (result.stdout, result.stderr) == ("", "")


def test_existing_types_need_overwrite(example1_shard, sources):
    assert run("add-types", example1_shard, sources / "types.npy").exit_code == 0
    before = digest(example1_shard)
    result = run("add-types", example1_shard, "-", input=json.dumps(EXAMPLE1_ALT_TYPES))
    assert result.exit_code == 1
    assert "already exists; pass --overwrite" in result.stderr
    assert digest(example1_shard) == before
    result = run(
        "add-types", example1_shard, "-", "--overwrite", input=json.dumps(EXAMPLE1_ALT_TYPES)
    )
    assert result.exit_code == 0, result.output
    assert types_of(example1_shard) == [EXAMPLE1_ALT_TYPES]


def test_output_writes_a_new_file_and_leaves_file_untouched(example1_shard, sources, tmp_path):
    before = digest(example1_shard)
    out = tmp_path / "typed.h5"
    result = run("add-types", example1_shard, sources / "types.jsonl", "-o", out)
    assert result.exit_code == 0, result.output
    assert digest(example1_shard) == before
    assert types_of(out) == [EXAMPLE1_TYPES]


BAD_SOURCES = [
    ("[0, 0, 0, 1, 1, 1]\n", "<stdin>:1: 6 types but rows hold 7 tokens"),
    ("[0, 0, 0, 1, 1, 1, 3]\n[0, 0, 0, 1, 1, 1, 3]\n", "<stdin>:2: more than the 1 rows"),
    ("[0, 0, 0, 1, 1, 7, 3]\n", "<stdin>:1: row 0, column 5 has type 7"),
    ("[0, 0, 0, 1, 1, -1, 3]\n", "<stdin>:1: row 0, column 5 has type -1"),
    ("[0, 0, 0, 1, 1.5, 1, 3]\n", "<stdin>:1: column 4 is 1.5, not an integer type"),
    ('[0, 0, 0, 1, "x", 1, 3]\n', "<stdin>:1: column 4 is 'x', not an integer type"),
    ("[0, 0, 0,\n", "<stdin>:1: not valid JSON"),
    ('{"types": 1}\n', "<stdin>:1: a JSON dict; each line must be a list of ints"),
    ("", "<stdin>: 0 rows but input_ids"),
]


@pytest.mark.parametrize(("stdin", "expected"), BAD_SOURCES)
def test_bad_jsonl_is_refused_and_the_file_is_unchanged(example1_shard, stdin, expected):
    before = digest(example1_shard)
    result = run("add-types", example1_shard, "-", input=stdin)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert digest(example1_shard) == before
    assert sorted(p.name for p in example1_shard.parent.iterdir()) == ["example1.h5"]


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.zeros((2, 7), np.int32), "shape (2, 7) differs from input_ids (1, 7)"),
        (np.zeros((1, 7), np.float32), "dtype float32 is not an integer type"),
        (np.array([[0, 1, 2, 3, 4, 1, 1]]), "row 0, column 4 has type 4"),
    ],
)
def test_bad_npy_is_refused(example1_shard, tmp_path, array, expected):
    np.save(tmp_path / "bad.npy", array)
    before = digest(example1_shard)
    result = run("add-types", example1_shard, tmp_path / "bad.npy")
    assert result.exit_code == 1
    assert expected in result.stderr
    assert digest(example1_shard) == before


def test_bad_value_is_reported_at_its_row_and_column(tmp_path):
    shard = write_shard(tmp_path / "s.h5", np.ones((300, 5)))
    types = np.ones((300, 5), np.int32)
    types[217, 3] = 9
    np.save(tmp_path / "t.npy", types)
    result = run("add-types", shard, tmp_path / "t.npy")
    assert result.exit_code == 1
    assert "row 217, column 3 has type 9" in result.stderr


@pytest.mark.parametrize(
    ("make_source", "expected"),
    [
        (lambda d: d / "missing.npy", "missing.npy: no such file"),
        (lambda d: d / "other.h5:nope", "no dataset 'nope'; name one with"),
        (lambda d: d / "named.h5", "no dataset 'token_type_ids'; name one with"),
        (lambda d: d / "readme.txt", "unknown source format"),
    ],
)
def test_unusable_sources(example1_shard, sources, make_source, expected):
    (sources / "readme.txt").write_text("hello")
    result = run("add-types", example1_shard, make_source(sources))
    assert result.exit_code == 1
    assert expected in result.stderr


def test_file_without_input_ids(tmp_path, sources):
    with h5py.File(tmp_path / "empty.h5", "w") as shard:
        shard["something"] = np.zeros(3)
    result = run("add-types", tmp_path / "empty.h5", sources / "types.npy")
    assert result.exit_code == 1
    assert "no dataset 'input_ids'" in result.stderr


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    types=st.tuples(st.integers(1, 30), st.integers(1, 20)).flatmap(
        lambda shape: arrays(np.int64, shape, elements=st.integers(0, 3))
    ),
    as_jsonl=st.booleans(),
)
def test_add_types_then_read_returns_the_source(tmp_path, types, as_jsonl):
    shard = write_shard(tmp_path / "p.h5", np.zeros(types.shape, np.int32))
    if as_jsonl:
        text = "".join(json.dumps(row) + "\n" for row in types.tolist())
        result = run("add-types", shard, "-", "--overwrite", input=text)
    else:
        np.save(tmp_path / "p.npy", types)
        result = run("add-types", shard, tmp_path / "p.npy", "--overwrite")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(types_of(shard), types)
