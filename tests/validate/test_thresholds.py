"""validate's CI thresholds: --min-learned-per-row, --max-padding-share, --max-truncated-share
(with the tokenize ledger) and --max-rows-without-loss."""

from __future__ import annotations

import json

import pytest

from tests.helpers import CODON_VOCAB, EXAMPLE2_IDS, EXAMPLE2_TYPES, invoke, write_shard
from tokentype_cli.report.ledger import ledger_beside, read_ledger

# Row 0 learns 4 targets (3 completion + separator), row 1 one, row 2 none (prompt and padding).
TYPES = [EXAMPLE2_TYPES, [0] * 9 + [3, 2], [0] * 5 + [2] * 6]
IDS = [EXAMPLE2_IDS] * 3

LINES = [
    '{"prompt": "GAA GGC GCC", "completion": "ATG ATC GAC"}',
    '{"prompt": "GAA", "completion": "ATG ATC GAC ATG ATC GAC ATG ATC GAC"}',
    '{"prompt": "GAA", "completion": "ATG"}',
    '{"prompt": "GGC", "completion": "ATC"}',
]


def validate(*args):
    result = invoke("validate", *args, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    findings = {f["check"]: f for f in json.loads(result.stdout)["files"][0]["findings"]}
    return result.exit_code, findings


@pytest.fixture
def shard(tmp_path):
    return write_shard(tmp_path / "s.h5", IDS, TYPES)


def test_min_learned_per_row(shard):
    code, findings = validate(shard, "--min-learned-per-row", 2)
    assert code == 1
    found = findings["learned-per-row"]
    assert (found["severity"], found["count"], found["row"]) == ("error", 2, 1)
    assert "fewer than --min-learned-per-row 2 targets at prompt_loss_weight 0" in found["message"]
    assert found["fix"]
    # Asked alone it judges at weight 0 but adds no no-loss-row error of its own.
    assert "no-loss-row" not in findings
    # A prompt weight makes prompt targets count: row 1 then learns 9 * 0.5 > 0 targets.
    code, findings = validate(shard, "--min-learned-per-row", 1, "--prompt-loss-weight", 0.5)
    assert "learned-per-row" not in findings
    assert validate(shard, "--min-learned-per-row", 1)[1]["learned-per-row"]["row"] == 2


def test_max_padding_share(shard):
    # 4 + 1 + 6 padding tokens of 33.
    code, findings = validate(shard, "--max-padding-share", 0.3)
    assert code == 1
    found = findings["padding-share"]
    assert (found["count"], found["row"]) == (11, 0)
    assert (
        "padding is 33.33% of the tokens (11 of 33), more than --max-padding-share 0.3"
        in (found["message"])
    )
    assert "2 rows are over it themselves (first: row 0)" in found["message"]
    code, findings = validate(shard, "--max-padding-share", 0.34)
    assert "padding-share" not in findings


def test_max_rows_without_loss(shard):
    code, findings = validate(shard, "--max-rows-without-loss", 0)
    assert code == 1
    found = findings["no-loss-row"]
    assert (found["severity"], found["count"], found["row"]) == ("error", 1, 2)
    assert "more than --max-rows-without-loss 0" in found["message"]
    code, findings = validate(shard, "--max-rows-without-loss", 1)
    assert findings["no-loss-row"]["severity"] == "warning"
    assert "within --max-rows-without-loss 1" in findings["no-loss-row"]["message"]
    # Without the threshold, --prompt-loss-weight alone still makes any such row an error.
    assert validate(shard, "--prompt-loss-weight", 0)[1]["no-loss-row"]["severity"] == "error"


@pytest.fixture
def tokenized(tmp_path):
    """A shard and its ledger from tokenize: line 2 is too long for 8 tokens and is cut."""
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(LINES) + "\n")
    out = tmp_path / "out.h5"
    result = invoke(
        "tokenize",
        source,
        "-o",
        out,
        "--tokenizer",
        CODON_VOCAB,
        "--max-seq-length",
        8,
        "--packing",
        "single::truncate_right",
        "--ledger",
        tmp_path / "out.ledger.jsonl",
        "-q",
    )
    assert result.exit_code == 0, result.output
    return out


def test_max_truncated_share_reads_the_ledger_beside_the_shard(tokenized):
    assert ledger_beside(tokenized) == tokenized.with_name("out.ledger.jsonl")
    code, findings = validate(tokenized, "--max-truncated-share", 0.2)
    assert code == 1
    found = findings["truncated-share"]
    assert (found["count"], found["row"]) == (1, 1)
    assert "25.00% of the 4 input lines" in found["message"]
    assert "(1 lines, 3 tokens; first: line 2)" in found["message"]
    code, findings = validate(tokenized, "--max-truncated-share", 0.25)
    assert code == 0 and "truncated-share" not in findings


def test_max_truncated_share_without_a_ledger_is_an_error(tokenized, tmp_path):
    moved = tmp_path / "elsewhere.jsonl"
    tokenized.with_name("out.ledger.jsonl").rename(moved)
    code, findings = validate(tokenized, "--max-truncated-share", 0.5)
    assert code == 1 and "out.ledger.jsonl" in findings["no-ledger"]["message"]
    code, findings = validate(tokenized, "--max-truncated-share", 0.2, "--ledger", moved)
    assert findings["truncated-share"]["count"] == 1
    moved.write_text("not json\n")
    code, findings = validate(tokenized, "--max-truncated-share", 0.2, "--ledger", moved)
    assert (
        code == 1 and f"{moved}:1: not a tokenize ledger line" in findings["no-ledger"]["message"]
    )


def test_ledger_tally_of_dropped_lines(tmp_path):
    ledger = tmp_path / "x.ledger.jsonl"
    records = [
        {"line": 1, "status": "packed", "reason": None},
        {"line": 2, "status": "dropped", "reason": "too_long", "dropped_too_long": 9},
        {"line": 3, "status": "rejected", "reason": "line 3: " + "x" * 200},
        {"line": 4, "status": "dropped", "reason": "prompt_only"},
    ]
    ledger.write_text("".join(json.dumps(r) + "\n" for r in records))
    tally = read_ledger(ledger)
    assert (tally.lines, tally.cut_for_length, tally.tokens_cut) == (4, 1, 9)
    assert tally.first_cut_line == 2 and tally.first_cut_row is None
    data = tally.as_dict()
    assert data["status"]["dropped"] == 2
    assert all(len(r["reason"] or "") <= 80 for r in data["reasons"])


def test_thresholds_in_the_text_report(shard):
    result = invoke("validate", shard, "--min-learned-per-row", 2, "--max-padding-share", 0.1)
    assert result.exit_code == 1
    assert "  error    learned-per-row: rows learning fewer than" in result.stdout
    assert "  error    padding-share: padding is 33.33%" in result.stdout
    assert "fix: pack rows fuller" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--max-padding-share", "1.5"],
        ["--min-learned-per-row", "0"],
        ["--max-rows-without-loss", "-1"],
        ["--max-truncated-share", "x"],
    ],
)
def test_bad_thresholds_are_exit_2(shard, args):
    result = invoke("validate", shard, *args)
    assert result.exit_code == 2 and result.stdout == ""
