"""`tokentype validate`: every check triggered by a fixture, with exact counts and first cells."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from tests.helpers import CODON_VOCAB, EXAMPLE1_IDS, EXAMPLE2_IDS, EXAMPLE2_TYPES, write_shard
from tokentype_cli.cli import cli
from tokentype_cli.schema.names import INPUT_IDS
from tokentype_cli.schema.write import ShardWriter
from tokentype_cli.validate.findings import FIXES, ValidateOptions
from tokentype_cli.validate.shard import validate_file


def invoke(*args):
    return CliRunner().invoke(cli, ["validate", *[str(a) for a in args]])


def findings_of(result) -> dict[str, dict]:
    """Findings of the only file, by check name, from `--json` output."""
    data = json.loads(result.stdout)
    (file,) = data["files"]
    by_check = {f["check"]: f for f in file["findings"]}
    assert len(by_check) == len(file["findings"]), "a check reported twice"
    return by_check


def run_json(*args):
    result = invoke(*args, "--json")
    assert result.stderr == ""
    return result, findings_of(result)


def raw_shard(path, **datasets):
    """A shard written with plain h5py: name=array, or name=(array, create_dataset options)."""
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            array, options = value if isinstance(value, tuple) else (value, {})
            array = np.asarray(array)
            if array.ndim == 2 and "maxshape" not in options:
                options = {"maxshape": (None, array.shape[1]), **options}
            if "compression" not in options:
                options = {"compression": "gzip", **options}
            if options.get("compression") is None:
                options.pop("compression")
            f.create_dataset(name, data=array, **options)
    return path


def rows(*pairs):
    """Stack (ids, types) row pairs into two int32 arrays."""
    ids = np.array([p[0] for p in pairs], dtype=np.int32)
    types = np.array([p[1] for p in pairs], dtype=np.int32)
    return ids, types


GOOD = (EXAMPLE2_IDS, EXAMPLE2_TYPES)


# --- a clean file -------------------------------------------------------------------------------


def test_the_documents_example_2_is_clean_with_every_option(tmp_path):
    shard = write_shard(tmp_path / "example2.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    result = invoke(
        shard,
        "--tokenizer",
        CODON_VOCAB,
        "--max-seq-length",
        11,
        "--require-types",
        "--prompt-loss-weight",
        0,
        "--strict",
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout == f"{shard}: ok (1 row x 11)\n1 file: 0 errors, 0 warnings\n"


def test_json_shape_is_exact(tmp_path):
    shard = write_shard(tmp_path / "s.h5", [EXAMPLE2_IDS], [[0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]])
    result = invoke(shard, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert list(data) == ["inputs", "files", "errors", "warnings"]
    assert data["inputs"] == [str(shard)]
    assert data["errors"] == 0 and data["warnings"] == 1
    (file,) = data["files"]
    assert list(file) == ["path", "rows", "seq_len", "errors", "warnings", "findings"]
    assert file["path"] == str(shard)
    (finding,) = file["findings"]
    assert set(finding) == {
        "check",
        "severity",
        "dataset",
        "message",
        "count",
        "row",
        "column",
        "fix",
    }
    assert finding["check"] == "truncated-eos"


def test_no_files_in_folder_is_an_error_and_still_json(tmp_path):
    result = invoke(tmp_path, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["errors"] == 1
    assert data["files"][0]["findings"][0]["check"] == "no-shards"


def test_folder_expands_to_h5_and_hdf5_files(tmp_path):
    write_shard(tmp_path / "a.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    (tmp_path / "sub").mkdir()
    write_shard(tmp_path / "sub" / "b.hdf5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    (tmp_path / "notes.txt").write_text("not a shard")
    result = invoke(tmp_path, "--json")
    assert result.exit_code == 0
    paths = [f["path"] for f in json.loads(result.stdout)["files"]]
    assert paths == [str(tmp_path / "a.h5"), str(tmp_path / "sub" / "b.hdf5")]


def test_a_file_named_twice_is_checked_once(tmp_path):
    write_shard(tmp_path / "a.h5", [EXAMPLE2_IDS])  # no types: one warning
    result = invoke(tmp_path / "a.h5", tmp_path, tmp_path / "." / "a.h5", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert [f["path"] for f in report["files"]] == [str(tmp_path / "a.h5")]
    assert report["warnings"] == 1


# --- errors -------------------------------------------------------------------------------------


def test_missing_file_is_cannot_open(tmp_path):
    result, found = run_json(tmp_path / "missing.h5")
    assert result.exit_code == 1
    assert found["cannot-open"]["severity"] == "error"
    assert "no such file" in found["cannot-open"]["message"]


def test_non_hdf5_file_is_cannot_open_and_text_report(tmp_path):
    bogus = tmp_path / "notes.h5"
    bogus.write_text("not hdf5")
    result, found = run_json(bogus)
    assert result.exit_code == 1
    assert "not an HDF5 file" in found["cannot-open"]["message"]
    text = invoke(bogus)
    assert text.exit_code == 1
    assert "error    cannot-open: not an HDF5 file" in text.stdout
    assert "fix: check the path" in text.stdout
    assert text.stderr == ""


def test_unreadable_chunk_is_reported_and_the_rest_still_checked(tmp_path):
    # 65536-token rows: one row per chunk and 16 rows per streamed block.
    seq_len, n_rows = 1 << 16, 40
    path = tmp_path / "damaged.h5"
    ids = np.ones((n_rows, seq_len), dtype=np.int32)
    ids[35, 7] = -4  # in a readable block after the damaged one
    ids[17, 3] = -4  # in the damaged block, but in a readable chunk of it
    with ShardWriter(path, seq_len, (INPUT_IDS,)) as writer:
        writer.append(input_ids=ids)
    with h5py.File(path, "r") as f:
        info = f[INPUT_IDS].id.get_chunk_info_by_coord((20, 0))
    with open(path, "r+b") as raw:
        raw.seek(info.byte_offset)
        raw.write(b"\xff" * info.size)
    result, found = run_json(path)
    assert result.exit_code == 1
    unreadable = found["unreadable"]
    # Only the damaged chunk's row is lost; the rest of its block is read chunk by chunk.
    assert (unreadable["count"], unreadable["row"]) == (1, 20)
    assert "rows 20..20" in unreadable["message"]
    negative = found["negative-token-id"]
    assert (negative["count"], negative["row"], negative["column"]) == (2, 17, 3)


def test_no_input_ids(tmp_path):
    path = raw_shard(tmp_path / "s.h5", token_type_ids=np.zeros((2, 3), np.int32))
    result, found = run_json(path)
    assert result.exit_code == 1
    assert set(found) == {"missing-input-ids"}
    assert "holds token_type_ids" in found["missing-input-ids"]["message"]


@pytest.mark.parametrize(
    "datasets",
    [
        {"input_ids": (np.arange(5, dtype=np.int32), {"maxshape": (None,)})},
        {
            "input_ids": np.ones((2, 3), np.int32),
            "token_type_ids": (np.ones((2, 3, 1), np.int32), {"maxshape": (None, 3, 1)}),
        },
    ],
)
def test_not_2d(tmp_path, datasets):
    path = raw_shard(tmp_path / "s.h5", **datasets)
    result, found = run_json(path)
    assert result.exit_code == 1
    assert found["not-2d"]["severity"] == "error"
    assert "expected 2-D" in found["not-2d"]["message"]


def test_shape_mismatch(tmp_path):
    path = raw_shard(
        tmp_path / "s.h5",
        input_ids=np.ones((3, 7), np.int32),
        token_type_ids=np.ones((2, 7), np.int32),
    )
    result, found = run_json(path)
    assert result.exit_code == 1
    assert "(2, 7)" in found["shape-mismatch"]["message"]
    assert "(3, 7)" in found["shape-mismatch"]["message"]


def test_non_integer_dtype(tmp_path):
    path = raw_shard(tmp_path / "s.h5", input_ids=np.ones((2, 7), np.float32))
    result, found = run_json(path)
    assert result.exit_code == 1
    assert found["non-integer-dtype"]["severity"] == "error"
    assert "'input_ids'" in found["non-integer-dtype"]["message"]


def test_type_outside_0_to_3(tmp_path):
    ids, types = rows(GOOD, GOOD, GOOD)
    types[1, 2] = 7
    types[2, 0] = -1
    path = write_shard(tmp_path / "s.h5", ids, types)
    result, found = run_json(path)
    assert result.exit_code == 1
    bad = found["type-out-of-range"]
    assert (bad["count"], bad["row"], bad["column"]) == (2, 1, 2)
    assert "7 at row 1, column 2" in bad["message"]


def test_negative_token_id(tmp_path):
    ids, types = rows(GOOD, GOOD)
    ids[1, 3] = -5
    ids[1, 9] = -1
    result, found = run_json(write_shard(tmp_path / "s.h5", ids, types))
    assert result.exit_code == 1
    neg = found["negative-token-id"]
    assert (neg["count"], neg["row"], neg["column"]) == (2, 1, 3)


def test_token_id_beyond_vocab_size_and_tokenizer(tmp_path):
    ids, types = rows(GOOD, GOOD)
    path = write_shard(tmp_path / "s.h5", ids, types)
    # Padding 69 is outside a vocabulary of 11 ids: 4 per row.
    result, found = run_json(path, "--vocab-size", 11)
    assert result.exit_code == 1
    big = found["token-id-out-of-vocab"]
    assert (big["count"], big["row"], big["column"]) == (8, 0, 7)
    assert "vocabulary size 11" in big["message"]
    ids[1, 0] = 70
    path = write_shard(tmp_path / "t.h5", ids, types)
    result, found = run_json(path, "--tokenizer", CODON_VOCAB)
    big = found["token-id-out-of-vocab"]
    assert (big["count"], big["row"], big["column"]) == (1, 1, 0)
    assert result.exit_code == 1


def test_missing_types_is_a_warning_or_with_require_types_an_error(tmp_path):
    path = write_shard(tmp_path / "s.h5", [EXAMPLE1_IDS])
    result, found = run_json(path)
    assert result.exit_code == 0
    assert found["missing-types"]["severity"] == "warning"
    assert "cases 1 and 2" in found["missing-types"]["message"]
    result, found = run_json(path, "--require-types")
    assert result.exit_code == 1
    assert found["missing-types"]["severity"] == "error"
    assert "case 3" in found["missing-types"]["message"]


def test_zero_rows(tmp_path):
    with ShardWriter(tmp_path / "empty.h5", 7) as _:
        pass
    result, found = run_json(tmp_path / "empty.h5")
    assert result.exit_code == 1
    assert set(found) == {"zero-rows"}


def test_sequence_length_against_option_and_between_files(tmp_path):
    a = write_shard(tmp_path / "a.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    result, found = run_json(a, "--max-seq-length", 2048)
    assert result.exit_code == 1
    assert "--max-seq-length 2048" in found["seq-length"]["message"]
    b = write_shard(tmp_path / "b.h5", [EXAMPLE1_IDS], [[0, 0, 0, 1, 1, 1, 3]])
    result = invoke(a, b, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["files"][0]["findings"] == []
    (mixed,) = data["files"][1]["findings"]
    assert mixed["check"] == "seq-length-mixed"
    assert str(a) in mixed["message"]


def test_row_without_loss_at_prompt_loss_weight_0(tmp_path):
    # The only completion token is the first, which is never a target.
    first_only = (EXAMPLE2_IDS, [1, 0, 0, 0, 0, 0, 3, 2, 2, 2, 2])
    no_answer = (EXAMPLE2_IDS, [1, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2])
    ids, types = rows(GOOD, first_only, no_answer, no_answer)
    path = write_shard(tmp_path / "s.h5", ids, types)
    result, found = run_json(path, "--prompt-loss-weight", 0)
    assert result.exit_code == 1
    no_loss = found["no-loss-row"]
    assert (no_loss["count"], no_loss["row"], no_loss["column"]) == (2, 2, None)
    # The first token counts as completion, so no row lacks a completion token...
    assert "no-learned-token-row" not in found
    # ...and with a positive weight the prompt targets carry loss.
    result, found = run_json(path, "--prompt-loss-weight", 0.1)
    assert "no-loss-row" not in found
    assert result.exit_code == 0


# --- warnings -----------------------------------------------------------------------------------


def test_integer_dtype_other_than_int32(tmp_path):
    path = raw_shard(
        tmp_path / "s.h5",
        input_ids=np.array([EXAMPLE2_IDS], np.int64),
        token_type_ids=np.array([EXAMPLE2_TYPES], np.int32),
    )
    result, found = run_json(path)
    assert result.exit_code == 0
    assert set(found) == {"dtype-not-int32"}
    assert "<i8" in found["dtype-not-int32"]["message"]


def test_not_gzip_and_maxshape(tmp_path):
    path = raw_shard(
        tmp_path / "s.h5",
        input_ids=(np.array([EXAMPLE2_IDS], np.int32), {"compression": None, "maxshape": None}),
        token_type_ids=(np.array([EXAMPLE2_TYPES], np.int32), {"compression": "lzf"}),
    )
    result = invoke(path, "--json")
    assert result.exit_code == 0
    # Storage checks are per dataset: one finding each.
    found = [(f["check"], f["severity"]) for f in json.loads(result.stdout)["files"][0]["findings"]]
    assert found == [("not-gzip", "warning"), ("not-gzip", "warning"), ("maxshape", "warning")]
    assert "'input_ids' is uncompressed" in result.stdout
    assert "'token_type_ids' is lzf" in result.stdout
    assert "'input_ids' has maxshape (1, 11)" in result.stdout
    strict = invoke(path, "--strict", "--json")
    assert strict.exit_code == 1
    data = json.loads(strict.stdout)
    assert (data["errors"], data["warnings"]) == (3, 0)


def test_padding_followed_by_content(tmp_path):
    gap = ([9, 5, 69, 69, 6, 2, 69], [0, 1, 2, 2, 1, 3, 2])
    twice = ([9, 69, 5, 69, 6, 2, 69], [0, 2, 1, 2, 1, 3, 2])
    ids, types = rows((EXAMPLE1_IDS, [0, 0, 0, 1, 1, 1, 3]), gap, twice)
    result, found = run_json(write_shard(tmp_path / "s.h5", ids, types))
    hit = found["padding-then-content"]
    # Column of the first non-padding token after padding.
    assert (hit["count"], hit["row"], hit["column"]) == (3, 1, 4)
    assert result.exit_code == 0


def test_prompt_or_completion_directly_followed_by_padding(tmp_path):
    cut = ([9, 5, 6, 10, 7, 69, 69], [0, 0, 0, 1, 1, 2, 2])
    prompt_cut = ([9, 5, 6, 69, 69, 69, 69], [0, 0, 0, 2, 2, 2, 2])
    ids, types = rows((EXAMPLE1_IDS, [0, 0, 0, 1, 1, 1, 3]), cut, prompt_cut)
    result, found = run_json(write_shard(tmp_path / "s.h5", ids, types))
    hit = found["truncated-eos"]
    assert (hit["count"], hit["row"], hit["column"]) == (2, 1, 4)
    assert result.exit_code == 0


def test_separator_ids_mixed_or_not_the_tokenizers_eos(tmp_path):
    other_sep = ([9, 5, 6, 10, 7, 8, 5], [0, 0, 0, 1, 1, 1, 3])
    ids, types = rows((EXAMPLE1_IDS, [0, 0, 0, 1, 1, 1, 3]), other_sep, other_sep)
    path = write_shard(tmp_path / "s.h5", ids, types)
    result, found = run_json(path)
    hit = found["separator-id"]
    assert (hit["count"], hit["row"], hit["column"]) == (2, 1, 6)
    assert "more than one id (2, 5)" in hit["message"]
    assert result.exit_code == 0
    # The codon vocabulary's EOS is SEP=2: with it only the id-5 separators are wrong...
    result, found = run_json(path, "--tokenizer", CODON_VOCAB)
    assert (found["separator-id"]["count"], found["separator-id"]["row"]) == (2, 1)
    assert "EOS id 2" in found["separator-id"]["message"]
    # ...and a file using 5 throughout is consistent but not the tokenizer's.
    ids, types = rows(other_sep, other_sep)
    path = write_shard(tmp_path / "t.h5", ids, types)
    assert "separator-id" not in run_json(path)[1]
    hit = run_json(path, "--tokenizer", CODON_VOCAB)[1]["separator-id"]
    assert (hit["count"], hit["row"], hit["column"]) == (2, 0, 6)


def test_padding_ids_mixed_or_not_the_tokenizers(tmp_path):
    zero_pad = ([9, 5, 6, 10, 7, 8, 2, 69, 69, 0, 0], EXAMPLE2_TYPES)
    ids, types = rows(GOOD, zero_pad)
    path = write_shard(tmp_path / "s.h5", ids, types)
    hit = run_json(path)[1]["padding-id"]
    assert (hit["count"], hit["row"], hit["column"]) == (2, 1, 9)
    # With the codon vocabulary padding may be PAD=69 (or the EOS, SEP=2).
    hit = run_json(path, "--tokenizer", CODON_VOCAB)[1]["padding-id"]
    assert (hit["count"], hit["row"], hit["column"]) == (2, 1, 9)
    # Both of the tokenizer's ids, but mixed: the second one is flagged.
    ids, types = rows(([*EXAMPLE2_IDS[:7], 0, 2, 2, 2], EXAMPLE2_TYPES), GOOD)
    path = write_shard(tmp_path / "mixed.h5", ids, types)
    hit = run_json(path, "--tokenizer", CODON_VOCAB)[1]["padding-id"]
    assert (hit["count"], hit["row"], hit["column"]) == (5, 0, 7)
    assert "other than id 2" in hit["message"] and "ids seen: 0, 2, 69" in hit["message"]
    eos_pad = ([9, 5, 6, 10, 7, 8, 2, 2, 2, 2, 2], EXAMPLE2_TYPES)
    ids, types = rows(eos_pad, eos_pad)
    assert (
        "padding-id"
        not in run_json(write_shard(tmp_path / "t.h5", ids, types), "--tokenizer", CODON_VOCAB)[1]
    )


def test_rows_of_only_padding_and_rows_without_completion(tmp_path):
    only_pad = ([69] * 11, [2] * 11)
    prompt_only = (EXAMPLE2_IDS, [0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2])
    ids, types = rows(GOOD, prompt_only, only_pad, GOOD, only_pad)
    result, found = run_json(write_shard(tmp_path / "s.h5", ids, types))
    assert result.exit_code == 0
    only = found["padding-only-row"]
    assert (only["count"], only["row"], only["column"]) == (2, 2, None)
    none = found["no-learned-token-row"]
    assert (none["count"], none["row"]) == (3, 1)


def test_every_check_has_a_fix_and_every_finding_carries_it(tmp_path):
    assert all(FIXES.values())
    report = validate_file(tmp_path / "missing.h5", ValidateOptions())
    assert report.findings[0].fix == FIXES["cannot-open"]


# --- streaming: counts and first cells are exact across blocks ---------------------------------


def test_counts_and_first_cells_match_a_whole_array_reference(tmp_path):
    rng = np.random.default_rng(7)
    seq_len, n_rows = 4096, 700  # 16 rows per chunk, 256 per streamed block
    types = rng.choice(
        np.array([0, 1, 2, 3], np.int32), size=(n_rows, seq_len), p=[0.3, 0.6, 0.09, 0.01]
    )
    types[:300] = 1  # the first offences are in the second block
    ids = rng.integers(0, 1000, size=(n_rows, seq_len), dtype=np.int32)
    ids[types == 2] = 999
    ids[types == 3] = 998
    ids[500, 100] = -3
    path = write_shard(tmp_path / "big.h5", ids, types)
    result, found = run_json(path, "--vocab-size", 999)

    def first(mask, shift=0):
        row, column = np.argwhere(mask)[0]
        return int(mask.sum()), int(row), int(column) + shift

    pad = types == 2
    expect = {
        "padding-then-content": first(pad[:, :-1] & ~pad[:, 1:], 1),
        "truncated-eos": first((types[:, :-1] <= 1) & pad[:, 1:]),
        "token-id-out-of-vocab": first(ids >= 999),
        "negative-token-id": first(ids < 0),
    }
    for check, (count, row, column) in expect.items():
        assert (found[check]["count"], found[check]["row"], found[check]["column"]) == (
            count,
            row,
            column,
        ), check
    assert result.exit_code == 1


def test_group_instead_of_dataset_and_rows_of_length_0(tmp_path):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f.create_group("input_ids")
    result, found = run_json(path)
    assert result.exit_code == 1
    assert "is a group" in found["not-2d"]["message"]
    path = raw_shard(tmp_path / "z.h5", input_ids=np.zeros((3, 0), np.int32))
    result, found = run_json(path)
    assert result.exit_code == 1
    assert "length 0" in found["seq-length"]["message"]


def test_bad_invocation_is_exit_2_with_nothing_on_stdout(tmp_path):
    shard = write_shard(tmp_path / "s.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    for args in ([shard, "--vocab-size", 0], [], [shard, "--prompt-loss-weight", -1]):
        result = invoke(*args)
        assert result.exit_code == 2, args
        assert result.stdout == ""
        assert "Usage:" in result.stderr
    result = invoke(shard, "--tokenizer", tmp_path / "nope.json")
    assert result.exit_code == 2
    assert "nope.json" in result.stderr


def test_text_report_over_several_files(tmp_path):
    good = write_shard(tmp_path / "good.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    untyped = write_shard(tmp_path / "untyped.h5", [EXAMPLE2_IDS])
    result = invoke(good, untyped, tmp_path / "missing.h5")
    assert result.exit_code == 1
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"{good}: ok (1 row x 11)"
    assert lines[1] == f"{untyped}: 0 errors, 1 warning"
    assert lines[2].startswith("  warning  missing-types: no 'token_type_ids'")
    assert lines[4] == f"{tmp_path / 'missing.h5'}: 1 error, 0 warnings"
    assert lines[-1] == "3 files: 1 error, 1 warning"
