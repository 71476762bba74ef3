"""inspect regressions from QA: row selections, loss shares, damaged or odd files, empty folders."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.helpers import assert_one_line_error, invoke, write_shard
from tokentype_cli.loss import LossTally

# --- inspect: row selections that select nothing -------------------------------------------------


@pytest.mark.parametrize("spec", ["5:9", "1:0", "0,7:"])
def test_rows_range_selecting_nothing_is_a_bad_invocation(example1_shard, spec):
    result = invoke("inspect", example1_shard, "--rows", spec)
    assert_one_line_error(result, 2, f"--rows {spec}", "selects no rows")


# --- inspect: loss shares per row with --loss-normalization row (token level: test_loss_...) ----


def test_loss_share_normalises_each_rows_weights_by_their_sum(tmp_path):
    # Row 0's targets: 1 completion, 1 separator, 8 padding -> each half of that row's loss.
    # Row 1's targets: 8 completion, 1 separator -> 8/9 and 1/9 of that row's loss.
    types = [
        [0, 1, 3, 2, 2, 2, 2, 2, 2, 2],
        [0, 1, 1, 1, 1, 1, 1, 1, 1, 3],
    ]
    path = write_shard(tmp_path / "s.h5", np.ones((2, 10)), types)
    result = invoke(
        "inspect", path, "--json", "--prompt-loss-weight", 0, "--loss-normalization", "row"
    )
    assert result.exit_code == 0, result.output
    share = json.loads(result.stdout)["loss"]["share"]
    assert share["completion"] == pytest.approx((1 / 2 + 8 / 9) / 2)
    assert share["separator"] == pytest.approx((1 / 2 + 1 / 9) / 2)
    assert share["prompt"] == share["padding"] == 0.0


def test_loss_share_with_a_prompt_weight_by_hand():
    # Targets [0 0 0 1 3] at weight 0.5: row sum 0.5*3 + 1 + 1 = 3.5.
    # Targets [1 1 1 1 1]: all completion.
    tally = LossTally(0.5, normalization="row")
    tally.add(np.array([[1, 0, 0, 0, 1, 3], [0, 1, 1, 1, 1, 1]]))
    share = tally.share()
    assert share["prompt"] == pytest.approx((1.5 / 3.5) / 2)
    assert share["completion"] == pytest.approx((1 / 3.5 + 1) / 2)
    assert share["separator"] == pytest.approx((1 / 3.5) / 2)
    # A row carrying no loss adds nothing, and the shares of two tallies merge by rows.
    other = LossTally(0.5, normalization="row")
    other.add(np.array([[1, 2, 2, 2, 2, 2]]))
    other.merge(tally)
    assert other.share() == pytest.approx(share)
    assert other.rows_without_loss == 1


# --- inspect: damaged metadata and rows of length 0 ---------------------------------------------


@pytest.mark.parametrize("link", ["soft", "external"])
@pytest.mark.parametrize("rows", [None, "0"])
def test_dangling_link_is_a_one_line_error(tmp_path, link, rows):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as shard:
        shard["input_ids"] = np.ones((2, 7), np.int32)
        shard["token_type_ids"] = (
            h5py.SoftLink("/nowhere")
            if link == "soft"
            else h5py.ExternalLink(str(tmp_path / "gone.h5"), "/types")
        )
    args = ["inspect", path] if rows is None else ["inspect", path, "--rows", rows]
    if link == "external":
        # Refused before it is followed; followed on request, the missing file is one line too.
        assert_one_line_error(invoke(*args), 1, str(path), "'token_type_ids'", "--allow-external")
        args.append("--allow-external")
    assert_one_line_error(invoke(*args), 1, str(path), "cannot be read")


def test_rows_of_length_0_with_types_show_as_empty(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as shard:
        shard.create_dataset("input_ids", shape=(2, 0), dtype="i4")
        shard.create_dataset("token_type_ids", shape=(2, 0), dtype="i4")
    result = invoke("inspect", path, "--rows", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("row 0 of 2: empty\n")


# --- --prompt-loss-weight: only finite weights; huge ones do not overflow the shares ------------


@pytest.mark.parametrize("command", ["inspect", "validate"])
@pytest.mark.parametrize("weight", ["nan", "inf", "-inf"])
def test_prompt_loss_weight_must_be_finite(tmp_path, command, weight):
    path = write_shard(tmp_path / "s.h5", np.ones((1, 4)), [[0, 0, 1, 3]])
    result = invoke(command, path, "--prompt-loss-weight", weight, "--json")
    assert_one_line_error(result, 2, "--prompt-loss-weight")


def test_huge_prompt_loss_weight_gives_finite_shares(tmp_path):
    path = write_shard(tmp_path / "s.h5", np.ones((1, 4)), [[0, 0, 1, 3]])
    result = invoke("inspect", path, "--prompt-loss-weight", "1e308", "--json")
    assert result.exit_code == 0 and result.stderr == ""
    loss = json.loads(result.stdout, parse_constant=pytest.fail)["loss"]
    assert loss["share"]["prompt"] == pytest.approx(1.0)
    assert loss["share"]["completion"] == pytest.approx(0.0)


def test_negative_zero_weight_is_reported_as_0(tmp_path):
    path = write_shard(tmp_path / "s.h5", np.ones((1, 4)), [[0, 0, 1, 3]])
    result = invoke("inspect", path, "--prompt-loss-weight", "-0", "--json")
    assert '"prompt_loss_weight": 0.0' in result.stdout


def test_rows_of_an_empty_shard_say_it_is_empty(tmp_path):
    path = write_shard(tmp_path / "s.h5", np.zeros((0, 4)), np.zeros((0, 4)))
    for spec in ("0", "0:3", "-1"):
        result = invoke("inspect", path, "--rows", spec)
        assert_one_line_error(result, 2, f"--rows {spec}: the file has no rows to show")


# --- inspect: a folder without shards -------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--rows", "0"], ["--json"], ["--rows", "0", "--json"]])
def test_folder_without_shards_is_the_same_one_line_error(tmp_path, extra):
    result = invoke("inspect", tmp_path, *extra)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: {tmp_path}: folder holds no *.h5 or *.hdf5 files;"
        " pass a shard or a folder of shards\n"
    )


# --- inspect: token_type_ids shaped unlike input_ids ----------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--rows", "0"]])
def test_types_of_another_shape_are_the_same_error_for_summary_and_rows(tmp_path, extra):
    # --rows used to drop such types silently and say the row had no token_type_ids.
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as shard:
        shard["input_ids"] = np.ones((2, 7), np.int32)
        shard["token_type_ids"] = np.ones((2, 6), np.int32)
    result = invoke("inspect", path, *extra)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: {path}: 'token_type_ids' has shape (2, 6) but 'input_ids' has (2, 7);"
        " fix it with `tokentype add-types FILE TYPES --overwrite`\n"
    )
