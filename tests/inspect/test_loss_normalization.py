"""inspect's loss shares at token level (the default) and per row, against plain statements of each.

Token level is what Megatron-LM (`sum(loss * loss_mask) / sum(loss_mask)`) and a Hugging Face
mean over the unmasked labels compute: every target of the batch weighs alike. Row level
normalises each row's weights by their sum first, for trainers that average per sequence.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tests.helpers import invoke, write_shard
from tokentype_cli.loss import LossTally

NAMES = ["prompt", "completion", "padding", "separator"]


def weight_of(token_type: int, prompt_loss_weight: float) -> float:
    return {0: prompt_loss_weight, 1: 1.0, 2: 0.0, 3: 1.0}[token_type]


def token_level_by_hand(rows: list[list[int]], w: float) -> dict[str, float]:
    """Each type's share of sum(weight) over every target (input position 1 onwards) of every row."""
    total = dict.fromkeys(range(4), 0.0)
    for row in rows:
        for token_type in row[1:]:
            total[token_type] += weight_of(token_type, w)
    whole = sum(total.values())
    return {NAMES[t]: (total[t] / whole if whole else 0.0) for t in range(4)}


def row_level_by_hand(rows: list[list[int]], w: float) -> dict[str, float]:
    """Each row's weights divided by their sum, summed over rows, as shares of that sum."""
    total = dict.fromkeys(range(4), 0.0)
    for row in rows:
        row_sum = sum(weight_of(t, w) for t in row[1:])
        if row_sum == 0:
            continue
        for token_type in row[1:]:
            total[token_type] += weight_of(token_type, w) / row_sum
    whole = sum(total.values())
    return {NAMES[t]: (total[t] / whole if whole else 0.0) for t in range(4)}


BY_HAND = {"token": token_level_by_hand, "row": row_level_by_hand}


def random_rows(seed: int, count: int = 40, length: int = 24) -> list[list[int]]:
    """Rows of prompt then completion then separator then padding, of varied lengths."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        prompt, completion = rng.randrange(0, 12), rng.randrange(0, 8)
        row = [0] * prompt + [1] * completion + [3]
        rows.append((row + [2] * length)[:length])
    rows.append([2] * length)  # a row carrying no loss
    return rows


@pytest.mark.parametrize("normalization", ["token", "row"])
@pytest.mark.parametrize("weight", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("seed", [1, 2])
def test_shares_match_the_plain_definition(tmp_path, normalization, weight, seed):
    rows = random_rows(seed)
    path = write_shard(tmp_path / "s.h5", np.ones((len(rows), len(rows[0]))), rows)
    args = ["inspect", path, "--json", "--prompt-loss-weight", weight]
    if normalization == "row" or seed == 2:  # token is the default; seed 2 names it
        args += ["--loss-normalization", normalization]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    loss = json.loads(result.stdout)["loss"]
    assert loss["normalization"] == normalization
    assert loss["share"] == pytest.approx(BY_HAND[normalization](rows, weight))
    assert loss["rows_without_loss"] == sum(
        sum(weight_of(t, weight) for t in row[1:]) == 0 for row in rows
    )


def test_the_two_differ_where_rows_learn_different_amounts(tmp_path):
    # A long answer and a short one: per row each row counts alike, per token the long one wins.
    rows = [[0, 0, 1, 1, 1, 1, 1, 3], [0, 0, 0, 0, 0, 0, 1, 3]]
    path = write_shard(tmp_path / "s.h5", np.ones((2, 8)), rows)
    token = json.loads(invoke("inspect", path, "--json", "--prompt-loss-weight", 0).stdout)
    assert token["loss"]["share"]["completion"] == pytest.approx(6 / 8)
    row = json.loads(
        invoke(
            "inspect", path, "--json", "--prompt-loss-weight", 0, "--loss-normalization", "row"
        ).stdout
    )
    assert row["loss"]["share"]["completion"] == pytest.approx((5 / 6 + 1 / 2) / 2)


@pytest.mark.parametrize("normalization", ["token", "row"])
def test_a_folder_merges_its_files_as_one_batch(tmp_path, normalization):
    first, second = random_rows(3, count=7), random_rows(4, count=5)
    (tmp_path / "d").mkdir()
    for name, rows in (("a.h5", first), ("b.h5", second)):
        write_shard(tmp_path / "d" / name, np.ones((len(rows), len(rows[0]))), rows)
    result = invoke(
        "inspect", tmp_path / "d", "--json", "--prompt-loss-weight", 0.1,
        "--loss-normalization", normalization,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["loss"]["share"] == pytest.approx(BY_HAND[normalization](first + second, 0.1))
    for file, rows in zip(data["files"], (first, second), strict=True):
        assert file["loss"]["share"] == pytest.approx(BY_HAND[normalization](rows, 0.1))


@pytest.mark.parametrize("normalization", ["token", "row"])
def test_tally_over_blocks_and_merges_equals_one_pass(normalization):
    rows = random_rows(5, count=30)
    whole = LossTally(0.3, normalization=normalization)
    whole.add(np.array(rows))
    parts = LossTally(0.3, normalization=normalization)
    parts.add(np.array(rows[:10]))
    other = LossTally(0.3, normalization=normalization)
    other.add(np.array(rows[10:]))
    parts.merge(other)
    expected = BY_HAND[normalization](rows, 0.3)
    assert whole.share() == pytest.approx(expected)
    assert parts.share() == pytest.approx(expected)


def test_text_summary_names_the_normalisation(tmp_path):
    path = write_shard(tmp_path / "s.h5", np.ones((1, 4)), [[0, 0, 1, 3]])
    token = invoke("inspect", path, "--prompt-loss-weight", 0.5)
    assert "loss at prompt_loss_weight 0.5, token level (every target alike)" in token.stdout
    row = invoke("inspect", path, "--prompt-loss-weight", 0.5, "--loss-normalization", "row")
    assert "loss at prompt_loss_weight 0.5, row level (each row's weights sum to 1)" in row.stdout


def test_an_unknown_normalisation_is_exit_2(tmp_path):
    path = write_shard(tmp_path / "s.h5", np.ones((1, 4)), [[0, 0, 1, 3]])
    result = invoke("inspect", path, "--loss-normalization", "sequence")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "'sequence' is not one of 'token', 'row'" in result.stderr
