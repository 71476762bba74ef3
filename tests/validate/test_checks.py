"""validate: findings name their dataset, --ignore, mixed lengths as one finding, articles cut at a
full row (from the packing in the shard's provenance), and a literal EOS inside a completion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import CODON_VOCAB, EXAMPLE2_IDS, EXAMPLE2_TYPES, invoke, write_shard
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_IDS, Provenance
from tokentype_cli.schema.write import ShardWriter
from tokentype_cli.validate.findings import FIXES


def findings(result) -> list[dict]:
    return [f for file in json.loads(result.stdout)["files"] for f in file["findings"]]


def by_check(result) -> dict[str, dict]:
    found = findings(result)
    checks = {f["check"]: f for f in found}
    assert len(checks) == len(found), "a check reported twice"
    return checks


def tokenized_shard(path, ids, types, **options):
    """A shard whose datasets carry tokenize's provenance with these options."""
    ids = np.asarray(ids, np.int32)
    provenance = Provenance("tokentype tokenize", {"seq_len": ids.shape[1], **options})
    with ShardWriter(path, ids.shape[1], provenance=provenance) as writer:
        writer.append(input_ids=ids, token_type_ids=np.asarray(types, np.int32))
    return path


# --- every finding names its dataset -------------------------------------------------------------


def test_findings_carry_the_dataset_name(tmp_path):
    bad_types = write_shard(tmp_path / "t.h5", [EXAMPLE2_IDS], [[0, 0, 0, 1, 1, 9, 3, 2, 2, 2, 2]])
    untyped = write_shard(tmp_path / "u.h5", [[-1, *EXAMPLE2_IDS[1:]]])
    result = invoke("validate", bad_types, untyped, tmp_path / "missing.h5", "--json")
    assert result.exit_code == 1
    datasets = {f["check"]: f["dataset"] for f in findings(result)}
    assert datasets == {
        "type-out-of-range": TOKEN_TYPE_IDS,
        "missing-types": TOKEN_TYPE_IDS,
        "negative-token-id": INPUT_IDS,
        "cannot-open": None,
    }
    keys = list(findings(result)[0])
    assert keys == ["check", "severity", "dataset", "message", "count", "row", "column", "fix"]


def test_storage_findings_name_each_dataset(tmp_path):
    import h5py

    path = tmp_path / "raw.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(INPUT_IDS, data=np.array([EXAMPLE2_IDS], np.int64))
        f.create_dataset(TOKEN_TYPE_IDS, data=np.array([EXAMPLE2_TYPES], np.int32))
    result = invoke("validate", path, "--json")
    pairs = sorted((f["check"], f["dataset"]) for f in findings(result))
    assert pairs == [
        ("dtype-not-int32", INPUT_IDS),
        ("maxshape", INPUT_IDS),
        ("maxshape", TOKEN_TYPE_IDS),
        ("not-gzip", INPUT_IDS),
        ("not-gzip", TOKEN_TYPE_IDS),
    ]


# --- --ignore ------------------------------------------------------------------------------------


def test_ignore_drops_the_named_checks(tmp_path):
    untyped = write_shard(tmp_path / "u.h5", [EXAMPLE2_IDS])
    assert invoke("validate", untyped, "--strict").exit_code == 1
    result = invoke("validate", untyped, "--strict", "--ignore", "missing-types")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{untyped}: ok (1 row x 11)\n1 file: 0 errors, 0 warnings\n"
    assert result.stderr == ""


def test_ignore_takes_a_comma_list_and_repeats(tmp_path):
    shard = write_shard(
        tmp_path / "s.h5", [EXAMPLE2_IDS, [69] * 11], [[0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2], [2] * 11]
    )
    found = set(by_check(invoke("validate", shard, "--json")))
    assert found == {"truncated-eos", "padding-only-row", "no-learned-token-row"}
    one = invoke("validate", shard, "--json", "--ignore", "truncated-eos,padding-only-row")
    assert set(by_check(one)) == {"no-learned-token-row"}
    two = invoke(
        "validate", shard, "--json", "--ignore", "truncated-eos", "--ignore", " padding-only-row"
    )
    assert set(by_check(two)) == {"no-learned-token-row"}
    assert json.loads(two.stdout)["warnings"] == 1


def test_ignore_can_accept_an_error(tmp_path):
    shard = write_shard(tmp_path / "s.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    assert invoke("validate", shard, "--vocab-size", 10).exit_code == 1
    result = invoke("validate", shard, "--vocab-size", 10, "--ignore", "token-id-out-of-vocab")
    assert result.exit_code == 0, result.output


def test_unknown_check_names_are_exit_2_listing_the_known_ones(tmp_path):
    shard = write_shard(tmp_path / "s.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    result = invoke("validate", shard, "--ignore", "missing-types,no-such-check")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "unknown check 'no-such-check'" in result.stderr
    assert ", ".join(FIXES) in " ".join(result.stderr.split())


# --- different sequence lengths: one finding naming the lengths and the odd files ---------------


def test_mixed_lengths_blame_the_minority_even_when_it_comes_first(tmp_path):
    short = write_shard(tmp_path / "a_short.h5", [EXAMPLE2_IDS[:7]], [[0, 0, 0, 1, 1, 1, 3]])
    longs = [write_shard(tmp_path / f"b{i}.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES]) for i in range(3)]
    result = invoke("validate", tmp_path, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    mixed = [f for f in findings(result) if f["check"] == "seq-length-mixed"]
    assert len(mixed) == 1
    (finding,) = mixed
    assert data["files"][0]["path"] == str(short)
    assert data["files"][0]["findings"] == [finding]
    assert finding["count"] == 1 and finding["dataset"] == INPUT_IDS
    assert "lengths seen: 11 (3 files), 7 (1 file: " + str(short) + ")" in finding["message"]
    assert all(f["findings"] == [] for f in data["files"][1:]), longs
    assert data["errors"] == 1


def test_mixed_lengths_name_every_odd_file_and_the_option_decides(tmp_path):
    a = write_shard(tmp_path / "a.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    b = write_shard(tmp_path / "b.h5", [EXAMPLE2_IDS[:7]], [[0, 0, 0, 1, 1, 1, 3]])
    c = write_shard(tmp_path / "c.h5", [EXAMPLE2_IDS[:7]], [[0, 0, 0, 1, 1, 1, 3]])
    result = invoke("validate", a, b, c, "--json", "--max-seq-length", 11)
    (mixed,) = [f for f in findings(result) if f["check"] == "seq-length-mixed"]
    assert f"lengths seen: 11 (1 file), 7 (2 files: {b}, {c})" in mixed["message"]
    assert mixed["count"] == 2
    text = invoke("validate", a, b, c)
    assert text.stdout.count("seq-length-mixed") == 1


# --- an article cut before its EOS where it fills the row ----------------------------------------

CUT_AT_END = [0, 0, 0, 1, 1, 1, 1]  # a whole row of an article without its separator


@pytest.mark.parametrize(
    ("packing", "caught"),
    [
        ("greedy::truncate_right", True),
        ("single::truncate_right", True),
        ("single::drop", True),
        ("full", False),  # full packing splits articles across rows: a row may end mid-article
        (None, False),  # no provenance: nothing says rows hold whole articles
    ],
)
def test_an_article_filling_the_row_without_eos(tmp_path, packing, caught):
    ids = [EXAMPLE2_IDS[:7], EXAMPLE2_IDS[:7]]
    types = [[0, 0, 0, 1, 1, 1, 3], CUT_AT_END]
    if packing is None:
        path = write_shard(tmp_path / "s.h5", ids, types)
    else:
        path = tokenized_shard(tmp_path / "s.h5", ids, types, packing=packing)
    result = invoke("validate", path, "--json")
    assert result.exit_code == 0
    found = by_check(result)
    assert ("truncated-eos" in found) is caught
    if caught:
        hit = found["truncated-eos"]
        assert (hit["count"], hit["row"], hit["column"]) == (1, 1, 6)
        assert f"--packing {packing}" in hit["message"]


def test_a_row_ending_in_its_separator_or_padding_is_fine(tmp_path):
    ids = [EXAMPLE2_IDS[:7], [9, 5, 6, 10, 2, 69, 69]]
    types = [[0, 0, 0, 1, 1, 1, 3], [0, 0, 0, 1, 3, 2, 2]]
    path = tokenized_shard(tmp_path / "s.h5", ids, types, packing="greedy::truncate_right")
    assert "truncated-eos" not in by_check(invoke("validate", path, "--json"))


def test_cut_rows_count_together_with_cuts_before_padding(tmp_path):
    ids = [EXAMPLE2_IDS[:7], [9, 5, 6, 10, 7, 69, 69], EXAMPLE2_IDS[:7]]
    types = [CUT_AT_END, [0, 0, 0, 1, 1, 2, 2], CUT_AT_END]
    path = tokenized_shard(tmp_path / "s.h5", ids, types, packing="single::truncate_right")
    hit = by_check(invoke("validate", path, "--json"))["truncated-eos"]
    assert (hit["count"], hit["row"], hit["column"]) == (3, 0, 6)


def test_damaged_provenance_is_read_as_no_packing(tmp_path):
    import h5py

    path = write_shard(tmp_path / "s.h5", [EXAMPLE2_IDS[:7]], [CUT_AT_END])
    with h5py.File(path, "r+") as f:
        f[INPUT_IDS].attrs["tokentype_options"] = "{not json"
    result = invoke("validate", path, "--json")
    assert result.exit_code == 0
    assert "truncated-eos" not in by_check(result)


# --- an end-of-sequence id inside a completion ---------------------------------------------------


def test_eos_inside_a_completion_is_a_warning_with_the_tokenizer(tmp_path):
    # Row 1: "ATG SEP ATC" typed completion: a literal EOS in the answer text.
    ids = [
        EXAMPLE2_IDS,
        [9, 5, 6, 10, 2, 7, 2, 69, 69, 69, 69],
        [9, 5, 2, 10, 2, 7, 8, 2, 69, 69, 69],
    ]
    types = [EXAMPLE2_TYPES, [0, 0, 0, 1, 1, 1, 3, 2, 2, 2, 2], [0, 0, 0, 1, 1, 1, 1, 3, 2, 2, 2]]
    path = write_shard(tmp_path / "s.h5", ids, types)
    result = invoke("validate", path, "--tokenizer", CODON_VOCAB, "--json")
    assert result.exit_code == 0, result.output
    hit = by_check(result)["eos-in-completion"]
    assert hit["severity"] == "warning"
    # Row 2, column 2 is a prompt EOS: not learned, so not this check.
    assert (hit["count"], hit["row"], hit["column"]) == (2, 1, 4)
    assert "id 2" in hit["message"]
    assert "--split-special-tokens" in hit["fix"]
    # Without the tokenizer nothing says which id ends a sequence.
    assert "eos-in-completion" not in by_check(invoke("validate", path, "--json"))


def test_a_pairs_eos_before_the_next_prompt_is_not_flagged(tmp_path):
    # Two pairs in one line (--attention-boundary jsonl): the first pair's EOS is typed
    # completion and followed by the next prompt, as the reference lays it out.
    ids = [[9, 10, 2, 5, 7, 2, 69]]
    types = [[0, 1, 1, 0, 1, 3, 2]]
    path = write_shard(tmp_path / "s.h5", ids, types)
    result = invoke("validate", path, "--tokenizer", CODON_VOCAB, "--json")
    assert "eos-in-completion" not in by_check(result)
