"""`tokentype inspect`: summary, JSON shape, loss shares, row view, colour and padding collapse."""

from __future__ import annotations

import json

import click.testing
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from tests.helpers import (
    CODON_VOCAB,
    EXAMPLE1_ALT_TYPES,
    EXAMPLE1_IDS,
    EXAMPLE1_TYPES,
    EXAMPLE2_IDS,
    EXAMPLE2_TYPES,
    write_shard,
)
from tokentype_cli.cli import cli, use_color
from tokentype_cli.errors import OptionError
from tokentype_cli.inspect.shard import parse_rows
from tokentype_cli.loss import (
    LossTally,
    learned_targets,
    normalised_weights,
    target_weights,
)
from tokentype_cli.report.rows import (
    PALETTE,
    UNKNOWN_STYLE,
    format_row,
    render_segments,
    row_segments,
    style_of,
)
from tokentype_cli.schema.names import TokenType
from tokentype_cli.schema.write import ShardWriter
from tokentype_cli.tokenizer_loader import load_tokenizer


def invoke(*args, env=None):
    return CliRunner(env=env).invoke(cli, ["inspect", *[str(a) for a in args]])


@pytest.fixture
def codons():
    return load_tokenizer(CODON_VOCAB)


@pytest.fixture
def example2(tmp_path):
    return write_shard(tmp_path / "example2.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])


# --- training semantics: the document's genetic-code examples ----------------------------------


def test_example_1_learns_the_completion_and_separator():
    assert learned_targets(EXAMPLE1_IDS, EXAMPLE1_TYPES, 0.0).tolist() == [10, 7, 8, 2]


def test_example_1_alternative_types():
    # Targets are input_ids[1:]: the first token (9) is context, never a target.
    assert learned_targets(EXAMPLE1_IDS, EXAMPLE1_ALT_TYPES, 0.0).tolist() == [5, 7, 8, 2]


def test_example_2_never_learns_padding():
    assert learned_targets(EXAMPLE2_IDS, EXAMPLE2_TYPES, 0.0).tolist() == [10, 7, 8, 2]
    assert learned_targets(EXAMPLE2_IDS, EXAMPLE2_TYPES, 1.0).tolist() == [5, 6, 10, 7, 8, 2]


def test_weights_and_their_normalisation():
    types = np.array([EXAMPLE2_TYPES, [2] * 11])
    weights = target_weights(types, 0.1)
    assert weights[0].tolist() == pytest.approx([0.1, 0.1, 1, 1, 1, 1, 0, 0, 0, 0])
    normal = normalised_weights(types, 0.1)
    assert normal[0].sum() == pytest.approx(1.0)
    assert normal[1].tolist() == [0.0] * 10
    # Without types every target weighs 1.
    assert target_weights(None, 0.0, shape=(2, 5)).tolist() == [[1.0] * 4] * 2


def test_loss_tally_over_blocks():
    tally = LossTally(0.0)
    tally.add(np.array([EXAMPLE2_TYPES]))
    tally.add(np.array([[2] * 11, EXAMPLE2_TYPES]))
    assert tally.rows == 3 and tally.rows_without_loss == 1
    assert tally.first_row_without_loss == 1
    assert tally.share() == {"prompt": 0.0, "completion": 0.75, "padding": 0.0, "separator": 0.25}


# --- summary ------------------------------------------------------------------------------------


def test_summary_text(example2):
    result = invoke(example2)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith(f"{example2}\n  rows 1  seq_len 11  tokens 11\n")
    assert "input_ids       shape (1, 11)  <i4  gzip 4 +shuffle" in out
    assert "maxshape (None, 11)" in out
    assert "    0 prompt                   3   27.27%" in out
    assert "    2 padding                  4   36.36%" in out
    assert "articles (separators) 1" in out
    assert "padding share 36.36%" in out
    assert "loss at" not in out


def test_summary_json_shape_and_values(example2):
    result = invoke(example2, "--json")
    assert result.exit_code == 0
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert {"path", "rows", "seq_len", "datasets", "token_types"} <= set(data)
    assert "loss" not in data
    assert (data["path"], data["rows"], data["seq_len"]) == (str(example2), 1, 11)
    ids = data["datasets"]["input_ids"]
    assert ids["shape"] == [1, 11] and ids["maxshape"] == [None, 11]
    assert ids["dtype"] == "<i4" and ids["compression"] == "gzip"
    assert ids["chunks"][1] == 11 and isinstance(ids["attrs"], dict)
    assert list(data["token_types"]) == ["prompt", "completion", "padding", "separator"]
    assert {k: v["count"] for k, v in data["token_types"].items()} == {
        "prompt": 3,
        "completion": 3,
        "padding": 4,
        "separator": 1,
    }
    assert data["articles"] == 1
    assert data["padding_share"] == pytest.approx(4 / 11)


def test_summary_loss_with_prompt_loss_weight(tmp_path):
    path = write_shard(tmp_path / "s.h5", [EXAMPLE2_IDS, [69] * 11], [EXAMPLE2_TYPES, [2] * 11])
    data = json.loads(invoke(path, "--json", "--prompt-loss-weight", 0).stdout)
    assert data["loss"] == {
        "prompt_loss_weight": 0.0,
        "normalization": "token",
        "share": {"prompt": 0.0, "completion": 0.75, "padding": 0.0, "separator": 0.25},
        "rows_without_loss": 1,
    }
    data = json.loads(invoke(path, "--json", "--prompt-loss-weight", 1).stdout)
    assert data["loss"]["share"]["prompt"] == pytest.approx(2 / 6)
    text = invoke(path, "--prompt-loss-weight", 0).stdout
    assert "loss at prompt_loss_weight 0, token level" in text
    assert "share prompt 0.00%  completion 75.00%  padding 0.00%  separator 25.00%" in text
    assert "rows without loss 1" in text


def test_summary_without_types(tmp_path):
    path = write_shard(tmp_path / "ids.h5", [EXAMPLE1_IDS])
    data = json.loads(invoke(path, "--json", "--prompt-loss-weight", 0).stdout)
    assert data["token_types"] is None
    assert data["loss"]["rows_without_loss"] == 0
    assert "token types: none" in invoke(path).stdout


def test_folder_gives_the_total_and_each_file(tmp_path):
    write_shard(tmp_path / "a.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    write_shard(tmp_path / "b.h5", [EXAMPLE2_IDS] * 2, [EXAMPLE2_TYPES] * 2)
    result = invoke(tmp_path, "--json", "--prompt-loss-weight", 0)
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert (data["rows"], data["seq_len"]) == (3, 11)
    assert data["token_types"]["separator"]["count"] == 3
    assert data["loss"]["share"]["completion"] == 0.75
    assert [f["path"] for f in data["files"]] == [str(tmp_path / "a.h5"), str(tmp_path / "b.h5")]
    assert [f["rows"] for f in data["files"]] == [1, 2]
    text = invoke(tmp_path).stdout
    assert text.startswith(f"{tmp_path}  (2 files)\n")
    assert f"\n{tmp_path / 'b.h5'}\n" in text


def test_missing_input_ids_is_one_line_exit_1(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["other"] = np.zeros((2, 2), np.int32)
    result = invoke(tmp_path / "x.h5")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no dataset 'input_ids'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- rows ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("0", [0]), ("-1", [9]), ("3:6", [3, 4, 5]), (":2", [0, 1]), ("8:", [8, 9]), ("1,-2", [1, 8])],
)
def test_parse_rows(spec, expected):
    assert [row for part in parse_rows(spec, 10) for row in part] == expected


@pytest.mark.parametrize("spec", ["x", "1:2:3:4", "10", "-11", ""])
def test_parse_rows_rejects(spec):
    with pytest.raises(OptionError):
        parse_rows(spec, 10)


def test_rows_show_ids_with_type_markers_when_not_coloured(tmp_path):
    path = write_shard(
        tmp_path / "s.h5",
        [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]],
        [[0, 1, 1, 3]] * 4,
    )
    result = invoke(path, "--rows", "1:3")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout == (
        "row 1 of 4: 1 prompt, 2 completion, 1 separator\n"
        "[prompt] 5 [completion] 6 7 [separator] 8\n"
        "row 2 of 4: 1 prompt, 2 completion, 1 separator\n"
        "[prompt] 9 [completion] 10 11 [separator] 12\n"
    )
    last = invoke(path, "--rows", "-1").stdout
    assert last.startswith("row 3 of 4") and "\x1b[" not in last


def test_rows_decoded_with_the_tokenizer_and_ids(example2):
    result = invoke(example2, "--rows", "0", "--tokenizer", CODON_VOCAB, "--prompt-loss-weight", 0)
    assert result.exit_code == 0
    assert result.stdout == (
        "row 0 of 1: 3 prompt, 3 completion, 4 padding, 1 separator;"
        " loss on 4 of 10 targets at prompt_loss_weight 0\n"
        "[prompt] GAA GGC GCC [completion] ATG ATC GAC [separator] SEP [padding] PAD PAD PAD PAD\n"
    )
    both = invoke(example2, "--rows", "0", "--tokenizer", CODON_VOCAB, "--ids").stdout
    assert "[prompt] GAA(9) GGC(5) GCC(6) [completion] ATG(10)" in both


def test_rows_json(example2):
    result = invoke(example2, "--rows", "0", "--tokenizer", CODON_VOCAB, "--json")
    data = json.loads(result.stdout)
    assert data["path"] == str(example2) and data["rows"] == 1
    (row,) = data["selected"]
    assert row["row"] == 0
    assert row["input_ids"] == EXAMPLE2_IDS and row["token_type_ids"] == EXAMPLE2_TYPES
    assert row["tokens"][:3] == ["GAA", "GGC", "GCC"]


def test_long_padding_runs_collapse(tmp_path):
    ids = [[9, 5, 10, 2] + [69] * 1012]
    types = [[0, 0, 1, 3] + [2] * 1012]
    path = write_shard(tmp_path / "s.h5", ids, types)
    out = invoke(path, "--rows", "0", "--tokenizer", CODON_VOCAB).stdout.splitlines()[1]
    assert out == "[prompt] GAA GGC [completion] ATG [separator] SEP [padding] … 1012 × PAD"
    assert invoke(path, "--rows", "0").stdout.splitlines()[1].endswith("[padding] … 1012 × 69")
    # Short runs stay as they are.
    assert "69 69 69" in invoke(path, "--rows", "0", "--collapse", 2000).stdout


def test_bad_rows_are_exit_2(example2):
    for spec in ("5", "a:b"):
        result = invoke(example2, "--rows", spec)
        assert result.exit_code == 2, spec
        assert result.stdout == ""
        assert "--rows" in result.stderr


@pytest.fixture
def terminal(monkeypatch):
    """Make CliRunner's stdout claim to be a terminal."""
    monkeypatch.setattr(
        click.testing._NamedTextIOWrapper, "isatty", lambda self: True, raising=False
    )


def test_rows_are_coloured_on_a_terminal(example2, terminal, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    result = invoke(example2, "--rows", "0", "--tokenizer", CODON_VOCAB)
    lines = result.stdout.splitlines()
    assert "\x1b[34m0 prompt\x1b[0m" in lines[0]  # the legend
    assert "\x1b[34mGAA\x1b[0m \x1b[34mGGC\x1b[0m" in lines[2]
    assert "\x1b[1;35mSEP\x1b[0m" in lines[2]
    assert "[prompt]" not in lines[2]


def test_no_color_turns_colour_off(example2, terminal):
    result = invoke(example2, "--rows", "0", env={"NO_COLOR": "1"})
    assert "\x1b[" not in result.stdout
    assert "[prompt] 9 5 6 [completion]" in result.stdout


def test_use_color_needs_a_tty_and_no_no_color(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color(Stream(True)) and not use_color(Stream(False))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Stream(True))


# --- the formatter as a library -----------------------------------------------------------------


def test_format_row_api(codons):
    assert (
        format_row(EXAMPLE1_IDS, EXAMPLE1_TYPES, tokenizer=codons)
        == "[prompt] GAA GGC GCC [completion] ATG ATC GAC [separator] SEP"
    )
    assert format_row(EXAMPLE1_IDS) == "9 5 6 10 7 8 2"
    coloured = format_row([9, 2], [1, 3], color=True)
    assert coloured == "\x1b[32m9\x1b[0m \x1b[1;35m2\x1b[0m"


def test_row_segments_collapse_only_same_id_padding_runs():
    segments = row_segments([5] + [69] * 9 + [2] * 3, [1] + [2] * 12, collapse_padding=3)
    assert [(s.text, s.column, s.count) for s in segments] == [
        ("5", 0, 1),
        ("… 9 × 69", 1, 9),
        ("… 3 × 2", 10, 3),
    ]
    assert all(s.count == 1 for s in row_segments([69] * 5, [2] * 5, collapse_padding=None))


def test_damaged_file_is_one_line_exit_1(tmp_path):
    seq_len = 1 << 16
    path = tmp_path / "damaged.h5"
    with ShardWriter(path, seq_len) as writer:
        block = np.ones((4, seq_len), np.int32)
        writer.append(input_ids=block, token_type_ids=block)
    with h5py.File(path, "r") as f:
        info = f["token_type_ids"].id.get_chunk_info_by_coord((2, 0))
    with open(path, "r+b") as raw:
        raw.seek(info.byte_offset)
        raw.write(b"\xff" * info.size)
    result = invoke(path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "'token_type_ids' rows 0..3 cannot be read" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_changed_tokens_are_marked_and_break_padding_runs():
    ids, types = [9, 10, 2, 69, 69, 69, 69], [0, 1, 3, 2, 2, 2, 2]
    changed = [False, True, False, False, False, True, True]
    plain = render_segments(row_segments(ids, types, changed=changed, collapse_padding=2))
    assert plain == "[prompt] 9 [completion] «10» [separator] 2 [padding] … 2 × 69 «… 2 × 69»"
    coloured = render_segments(row_segments([10], [1], changed=[True]), color=True)
    assert coloured == "\x1b[32;7m10\x1b[0m"


def test_every_type_differs_by_more_than_colour():
    styles = [PALETTE[t] for t in TokenType] + [UNKNOWN_STYLE]
    assert len({s.underline for s in styles}) == len(styles)
    assert len({s.pattern for s in PALETTE.values()}) == len(PALETTE)
    assert style_of(7) is UNKNOWN_STYLE and style_of(1) is PALETTE[TokenType.COMPLETION]
