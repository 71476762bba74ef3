"""`tokentype tokenize`: reference semantics, CLI behaviour, errors and reproducibility."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from tests.helpers import (
    CODON_PAIR,
    CODON_VOCAB,
    EXAMPLE1_IDS,
    EXAMPLE1_TYPES,
    EXAMPLE2_IDS,
    EXAMPLE2_TYPES,
    ROOT,
    conformance_table,
    jsonl,
    read,
)
from tokentype_cli.cli import cli


def invoke(*args, input=None):
    return CliRunner().invoke(cli, ["tokenize", *[str(a) for a in args]], input=input)


# --- the reference's real cases ------------------------------------------------------------------

# Every case the shared folder's README lists, with the settings its table gives; a column this
# does not know fails the test rather than be ignored.
CASES = sorted(conformance_table()) or ["(the shared folder is absent)"]
# Table cells that are defaults here: no flag needed.
_DEFAULTS = {"prompt-only sequences": "dropped"}


def case_options(row: dict[str, str]) -> list[str]:
    row = dict(row)
    del row["case"], row["input"]
    options = ["--max-seq-length", row.pop("max_seq_length"), "--packing", row.pop("packing")]
    options += ["--packing-boundary", row.pop("packing boundary")]
    options += ["--attention-boundary", row.pop("attention boundary")]
    kept = row.pop("prompt-only sequences")
    assert kept in ("kept", _DEFAULTS["prompt-only sequences"]), kept
    if kept == "kept":
        options.append("--keep-prompt-only-sequences")
    assert not row, f"settings this test does not apply: {sorted(row)}"
    return options


def test_every_case_folder_is_in_the_table(conformance_dir):
    folders = sorted(p.parent.name for p in conformance_dir.glob("*/expected.hdf5"))
    assert folders == sorted(conformance_table())
    assert len(folders) >= 3


@pytest.mark.parametrize("case", CASES)
def test_conformance_case_is_identical(case, conformance_dir, tmp_path):
    row = conformance_table()[case]
    out = tmp_path / f"{case}.h5"
    result = invoke(
        conformance_dir / row["input"],
        "-o",
        out,
        "--tokenizer",
        conformance_dir / "tokenizer-gpt2",
        *case_options(row),
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    with h5py.File(conformance_dir / case / "expected.hdf5", "r") as want, h5py.File(out) as got:
        for name in ("input_ids", "token_type_ids"):
            assert got[name].shape == want[name].shape
            assert got[name].dtype == np.int32
            np.testing.assert_array_equal(got[name][:], want[name][:])


# The reference's own spellings of the options case_options gives.
REFERENCE_SPELLINGS = {
    "--max-seq-length": "--max_seq_length",
    "--packing": "--input_packing_config",
    "--packing-boundary": "--packing_boundary",
    "--attention-boundary": "--attention_boundary",
    "--keep-prompt-only-sequences": "--keep_prompt_only_sequences",
}


@pytest.mark.parametrize("case", CASES)
def test_conformance_with_reference_spellings(case, conformance_dir, tmp_path):
    row = conformance_table()[case]
    out = tmp_path / "ref.h5"
    result = invoke(
        conformance_dir / row["input"],
        "-o",
        out,
        "--tokenizer",
        conformance_dir / "tokenizer-gpt2",
        *[REFERENCE_SPELLINGS.get(option, option) for option in case_options(row)],
        "--prompt_keyword",
        "prompt",
        "--completion_keyword",
        "completion",
        "-q",
    )
    assert result.exit_code == 0, result.output
    with h5py.File(conformance_dir / case / "expected.hdf5") as want:
        ids, types = read(out)
        assert ids == want["input_ids"][:].tolist()
        assert types == want["token_type_ids"][:].tolist()


# --- the source document's examples --------------------------------------------------------------


def test_genetic_code_example_1(tmp_path):
    source = jsonl(tmp_path / "codon.jsonl", CODON_PAIR)
    out = tmp_path / "out.h5"
    result = invoke(source, "-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 7, "-q")
    assert result.exit_code == 0, result.output
    assert read(out) == ([EXAMPLE1_IDS], [EXAMPLE1_TYPES])


def test_genetic_code_example_2_pads_with_pad_type_2(tmp_path):
    source = jsonl(tmp_path / "codon.jsonl", CODON_PAIR)
    out = tmp_path / "out.h5"
    result = invoke(
        source, "-o", out, "--tokenizer", CODON_VOCAB,
        "--packing", "single::drop", "--max-seq-length", 11, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read(out) == ([EXAMPLE2_IDS], [EXAMPLE2_TYPES])


def test_default_row_is_2048_long(tmp_path):
    source = jsonl(tmp_path / "codon.jsonl", CODON_PAIR)
    out = tmp_path / "out.h5"
    assert invoke(source, "-o", out, "--tokenizer", CODON_VOCAB, "-q").exit_code == 0
    ids, types = read(out)
    assert len(ids[0]) == 2048
    assert ids[0][:7] == EXAMPLE1_IDS and set(ids[0][7:]) == {69}
    assert types[0][:7] == EXAMPLE1_TYPES and set(types[0][7:]) == {2}


# --- inputs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["file", "stdin", "stdin-with-format"])
def test_stdin_and_file_give_the_same_rows(how, tmp_path):
    source = jsonl(tmp_path / "codon.jsonl", CODON_PAIR, CODON_PAIR)
    out = tmp_path / "out.h5"
    common = ["-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 7, "-q"]
    if how == "file":
        result = invoke(source, *common)
    elif how == "stdin":
        result = invoke("-", *common, input=source.read_text())
    else:
        result = invoke("-", "--input-format", "jsonl", *common, input=source.read_text())
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""
    assert read(out) == ([EXAMPLE1_IDS] * 2, [EXAMPLE1_TYPES] * 2)


def test_txt_lines_are_completion_articles(tmp_path):
    source = tmp_path / "dna.txt"
    source.write_text("GAA GGC\nATG SEP\n")
    out = tmp_path / "out.h5"
    result = invoke(source, "-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 6, "-q")
    assert result.exit_code == 0, result.output
    # The trailing SEP of the second line is the tokenizer's eos: removed, then one eos added.
    assert read(out) == ([[9, 5, 2, 10, 2, 69]], [[1, 1, 3, 1, 3, 2]])


def test_several_inputs_are_read_in_order(tmp_path):
    a = jsonl(tmp_path / "a.jsonl", {"prompt": "GAA", "completion": "ATG"})
    b = tmp_path / "b.txt"
    b.write_text("GCC\n")
    out = tmp_path / "out.h5"
    result = invoke(a, b, "-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 5, "-q")
    assert result.exit_code == 0, result.output
    assert read(out) == ([[9, 10, 2, 6, 2]], [[0, 1, 3, 1, 3]])


def test_list_line_stays_together_and_pair_boundaries(tmp_path):
    line = [{"prompt": "GAA", "completion": "ATG"}, {"prompt": "GCC", "completion": "GAC"}]
    source = jsonl(tmp_path / "list.jsonl", line)
    out = tmp_path / "out.h5"
    base = [
        source,
        "-o",
        out,
        "--overwrite",
        "--tokenizer",
        CODON_VOCAB,
        "--max-seq-length",
        6,
        "-q",
    ]
    assert invoke(*base).exit_code == 0
    assert read(out) == ([[9, 10, 2, 6, 8, 2]], [[0, 1, 1, 0, 1, 3]])
    assert invoke(*base, "--attention-boundary", "prompt_completion_pair").exit_code == 0
    assert read(out) == ([[9, 10, 2, 6, 8, 2]], [[0, 1, 3, 0, 1, 3]])
    # Pairs packed separately: single packing puts each in its own row. As in the reference,
    # only a line's end and --attention-boundary make separators: the first pair's eos stays 1.
    assert invoke(*base, "--packing", "single::drop", "--packing-boundary",
                  "prompt_completion_pair").exit_code == 0  # fmt: skip
    assert read(out) == (
        [[9, 10, 2, 69, 69, 69], [6, 8, 2, 69, 69, 69]],
        [[0, 1, 1, 2, 2, 2], [0, 1, 3, 2, 2, 2]],
    )


def test_space_separator_prefix_and_postfix(tmp_path):
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"</s>": 0, "Q:": 1, "A": 2, "B": 3, "?": 4, "<pad>": 5}))
    source = jsonl(tmp_path / "in.jsonl", {"prompt": "A   ", "completion": "   B"})
    out = tmp_path / "out.h5"
    result = invoke(
        source, "-o", out, "--tokenizer", vocab, "--max-seq-length", 5,
        "--prompt-prefix", "Q: ", "--prompt-postfix", " ?", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read(out) == ([[1, 2, 4, 3, 0]], [[0, 0, 0, 1, 3]])


def test_missing_prompt_is_empty_and_keys_can_be_renamed(tmp_path):
    source = jsonl(tmp_path / "in.jsonl", {"input": "GAA", "output": "ATG"}, {"output": "GCC"})
    out = tmp_path / "out.h5"
    result = invoke(
        source, "-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 5,
        "--prompt-key", "input", "--completion-key", "output", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read(out) == ([[9, 10, 2, 6, 2]], [[0, 1, 3, 1, 3]])


def test_prompt_only_pairs_and_rows(tmp_path):
    source = jsonl(tmp_path / "in.jsonl", {"prompt": "GAA GGC", "completion": ""}, CODON_PAIR)
    out = tmp_path / "out.h5"
    base = [source, "-o", out, "--overwrite", "--tokenizer", CODON_VOCAB, "--max-seq-length", 7]
    result = invoke(*base, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pairs_skipped_prompt_only"] == 1
    assert read(out) == ([EXAMPLE1_IDS], [EXAMPLE1_TYPES])
    kept = invoke(*base, "--keep-prompt-only-sequences", "-q")
    assert kept.exit_code == 0
    ids, types = read(out)
    assert ids[0][:3] == [9, 5, 2] and types[0][:3] == [0, 0, 3]


def test_eos_and_pad_overrides(tmp_path):
    source = jsonl(tmp_path / "in.jsonl", {"prompt": "GAA", "completion": "ATG"})
    out = tmp_path / "out.h5"
    result = invoke(
        source, "-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 5,
        "--eos-token", "GAC", "--pad-token", "0", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read(out) == ([[9, 10, 8, 0, 0]], [[0, 1, 3, 2, 2]])


def test_no_types_writes_input_ids_only(tmp_path):
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR)
    out = tmp_path / "out.h5"
    args = [source, "-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 7, "--no-types"]
    assert invoke(*args, "-q").exit_code == 0
    with h5py.File(out) as f:
        assert list(f) == ["input_ids"]
        assert f["input_ids"][:].tolist() == [EXAMPLE1_IDS]
        assert f["input_ids"].attrs["tokentype_command"] == "tokentype tokenize"


# --- metrics and ledger ----------------------------------------------------------------------------


def test_summary_on_stderr_and_json_on_stdout(tmp_path):
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR)
    out = tmp_path / "out.h5"
    args = [source, "-o", out, "--overwrite", "--tokenizer", CODON_VOCAB, "--max-seq-length", 11]
    text = invoke(*args)
    assert text.exit_code == 0 and text.stdout == ""
    assert "1 row x 11 tokens from 1 line (1 article, 1 pair)" in text.stderr
    assert "packing efficiency 63.6%" in text.stderr
    as_json = invoke(*args, "--json")
    assert as_json.exit_code == 0 and as_json.stderr == ""
    metrics = json.loads(as_json.stdout)
    assert metrics["tokens_by_type"] == {"prompt": 3, "completion": 3, "padding": 4, "separator": 1}
    assert metrics["rows"] == 1 and metrics["lines"] == 1


def test_ledger_says_where_each_line_went(tmp_path):
    long = {"prompt": "GAA GGC GCC GAA GGC", "completion": "ATG ATC"}
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR, long, {"prompt": "GAA", "completion": ""})
    out, ledger = tmp_path / "out.h5", tmp_path / "ledger.jsonl"
    result = invoke(
        source, "-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 7,
        "--packing", "greedy::truncate_left", "--ledger", ledger, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3]
    assert records[0]["status"] == "packed" and records[0]["rows"] == [[0, 0, 7]]
    assert records[1]["status"] == "truncated" and records[1]["cut_left"] == 1
    assert records[1]["rows"] == [[1, 0, 7]]
    assert records[2]["status"] == "dropped" and records[2]["reason"] == "prompt_only"
    assert json.loads(result.stdout)["tokens_truncated_left"] == 1


# --- bad input -----------------------------------------------------------------------------------

BAD_LINES = {
    "malformed": ('{"prompt": "GAA"', "malformed JSON"),
    "missing completion": ('{"prompt": "GAA"}', "no 'completion' field"),
    "non-string": ('{"prompt": "GAA", "completion": 5}', "not a string"),
    "null": ('{"prompt": null, "completion": "ATG"}', "not a string"),
    "scalar": ("42", "not an object"),
    "nested 100,000 deep": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "unknown word": ('{"prompt": "GAA", "completion": "XYZ"}', "'XYZ' is not in the vocabulary"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_line_is_exit_1_naming_file_and_line(case, tmp_path):
    line, expected = BAD_LINES[case]
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR, line, CODON_PAIR)
    out = tmp_path / "out.h5"
    result = invoke(source, "-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 7)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert f"{source}:2: " in result.stderr and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not out.exists() and os.listdir(tmp_path) == ["in.jsonl"]


def test_invalid_utf8_and_empty_input(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(json.dumps(CODON_PAIR).encode() + b'\n{"completion": "\xff"}\n')
    out = tmp_path / "out.h5"
    result = invoke(source, "-o", out, "--tokenizer", CODON_VOCAB)
    assert result.exit_code == 1 and f"{source}:2: invalid UTF-8" in result.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = invoke(empty, "-o", out, "--tokenizer", CODON_VOCAB)
    assert result.exit_code == 1 and "empty input" in result.stderr
    assert not out.exists()


def test_skip_bad_lines_writes_rejects_and_counts_them(tmp_path):
    lines = [CODON_PAIR, *(BAD_LINES[c][0] for c in sorted(BAD_LINES)), CODON_PAIR]
    source = jsonl(tmp_path / "in.jsonl", *lines)
    out, rejects, ledger = tmp_path / "out.h5", tmp_path / "rejects.jsonl", tmp_path / "l.jsonl"
    result = invoke(
        source, "-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 7,
        "--skip-bad-lines", rejects, "--ledger", ledger, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["lines_rejected"] == len(BAD_LINES)
    assert rejects.read_text().splitlines() == [BAD_LINES[c][0] for c in sorted(BAD_LINES)]
    assert read(out) == ([EXAMPLE1_IDS] * 2, [EXAMPLE1_TYPES] * 2)
    statuses = [json.loads(line)["status"] for line in ledger.read_text().splitlines()]
    assert statuses == ["packed"] + ["rejected"] * len(BAD_LINES) + ["packed"]


def test_unknown_extension_and_bad_options_are_exit_2(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("x\n")
    out = tmp_path / "out.h5"
    assert invoke(source, "-o", out, "--tokenizer", CODON_VOCAB).exit_code == 2
    jsonl_file = jsonl(tmp_path / "in.jsonl", CODON_PAIR)
    assert (
        invoke(jsonl_file, "-o", out, "--tokenizer", CODON_VOCAB, "--packing", "x").exit_code == 2
    )
    zero = invoke(jsonl_file, "-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 0)
    assert zero.exit_code == 2
    assert not out.exists()


def test_unknown_eos_token_is_reported(tmp_path):
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR)
    result = invoke(
        source, "-o", tmp_path / "o.h5", "--tokenizer", CODON_VOCAB, "--eos-token", "NOPE"
    )
    assert result.exit_code == 1
    assert "'NOPE' is not in the vocabulary" in result.stderr


def test_existing_output_survives_a_failed_run(tmp_path):
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR)
    out = tmp_path / "out.h5"
    assert (
        invoke(
            source,
            "-o",
            out,
            "--overwrite",
            "--tokenizer",
            CODON_VOCAB,
            "--max-seq-length",
            7,
            "-q",
        ).exit_code
        == 0
    )
    before = out.read_bytes()
    jsonl(source, CODON_PAIR, "{broken")
    assert (
        invoke(
            source, "-o", out, "--overwrite", "--tokenizer", CODON_VOCAB, "--max-seq-length", 7
        ).exit_code
        == 1
    )
    assert out.read_bytes() == before


# --- reproducibility and a real pipe -------------------------------------------------------------


def test_same_input_twice_gives_byte_identical_files(tmp_path):
    records = [
        {"prompt": "GAA " * (i % 5), "completion": "ATG GCC " * (1 + i % 7)} for i in range(300)
    ]
    source = jsonl(tmp_path / "in.jsonl", *records)
    outputs = []
    for name in ("a.h5", "b.h5"):
        out = tmp_path / name
        result = invoke(
            source, "-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 16,
            "--packing", "greedy::truncate_right", "-q",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_shell_pipeline_cat_tokenize_validate(tmp_path):
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR, CODON_PAIR)
    out = tmp_path / "out.h5"
    python = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = (
        f"cat {source} | {python} -m tokentype_cli tokenize - -o {out}"
        f" --tokenizer {CODON_VOCAB} --max-seq-length 11 --packing single::drop"
        f" && {python} -m tokentype_cli validate {out}"
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert read(out) == ([EXAMPLE2_IDS] * 2, [EXAMPLE2_TYPES] * 2)


def test_txt_crlf_lines_read_like_the_reference(conformance_dir, tmp_path):
    # The reference opens text in universal-newline mode, so CRLF files tokenize like LF ones
    # (GPT-2 has tokens for "\r", so a byte-level tokenizer shows the difference).
    crlf, lf = tmp_path / "crlf.txt", tmp_path / "lf.txt"
    crlf.write_bytes(b"Hello there\r\nGeneral Kenobi\r\n")
    lf.write_bytes(b"Hello there\nGeneral Kenobi\n")
    rows = []
    for source in (crlf, lf):
        out = tmp_path / f"{source.stem}.h5"
        result = invoke(
            source, "-o", out, "--tokenizer", conformance_dir / "tokenizer-gpt2",
            "--max-seq-length", 12, "-q",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        rows.append(read(out))
    assert rows[0] == rows[1]
    assert 198 in rows[0][0][0] and 201 not in rows[0][0][0]  # "\n" kept, no "\r"


def test_failed_run_leaves_no_ledger_rejects_or_shard(tmp_path):
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR, '{"completion": 1}')
    result = invoke(
        source, "-o", tmp_path / "out.h5", "--tokenizer", CODON_VOCAB,
        "--ledger", tmp_path / "ledger.jsonl",
    )  # fmt: skip
    assert result.exit_code == 1
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]
    # Every line rejected: nothing to write is an error too, and the rejects file is not kept.
    only_bad = jsonl(tmp_path / "bad.jsonl", '{"completion": 1}')
    result = invoke(
        only_bad, "-o", tmp_path / "out.h5", "--tokenizer", CODON_VOCAB,
        "--skip-bad-lines", tmp_path / "rejects.jsonl",
    )  # fmt: skip
    assert result.exit_code == 1 and "no rows to write" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["bad.jsonl", "in.jsonl"]


def test_closed_stdin_is_one_line(tmp_path):
    out = tmp_path / "out.h5"
    command = [sys.executable, "-m", "tokentype_cli", "tokenize", "-", "-o", str(out)]
    done = subprocess.run(
        [*command, "--tokenizer", str(CODON_VOCAB)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(0),  # as with `<&-` in a shell
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: <stdin>: standard input is closed; pipe the input in or name a file"
    ]
    assert not out.exists()


def test_summary_counts_are_singular_for_one(tmp_path):
    prompt_only = {"prompt": "GAA", "completion": ""}
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR, prompt_only, "{broken")
    result = invoke(
        source, "-o", tmp_path / "out.h5", "--overwrite", "--tokenizer", CODON_VOCAB, "--max-seq-length", 7,
        "--skip-bad-lines", tmp_path / "rejects.jsonl",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "  1 pair with an empty completion skipped" in result.stderr
    assert "  1 bad line written to" in result.stderr
    # Full packing splits the article; its first row holds prompt tokens only and is dropped.
    split = jsonl(tmp_path / "split.jsonl", {"prompt": "GAA GGC GCC", "completion": "ATG ATC"})
    result = invoke(
        split,
        "-o",
        tmp_path / "out.h5",
        "--overwrite",
        "--tokenizer",
        CODON_VOCAB,
        "--max-seq-length",
        3,
    )
    assert result.exit_code == 0, result.output
    assert "  3 tokens dropped: 1 row without completion tokens" in result.stderr


def test_bad_line_error_offers_skip_bad_lines_but_the_ledger_reason_does_not(tmp_path):
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR, "{broken")
    failed = invoke(source, "-o", tmp_path / "out.h5", "--tokenizer", CODON_VOCAB)
    assert failed.exit_code == 1
    assert failed.stderr.rstrip().endswith(
        "(or pass --skip-bad-lines REJECTS to set bad lines aside)"
    )
    ledger = tmp_path / "ledger.jsonl"
    skipped = invoke(
        source, "-o", tmp_path / "out.h5", "--tokenizer", CODON_VOCAB, "-q",
        "--skip-bad-lines", tmp_path / "rejects.jsonl", "--ledger", ledger,
    )  # fmt: skip
    assert skipped.exit_code == 0, skipped.output
    reason = json.loads(ledger.read_text().splitlines()[1])["reason"]
    assert reason.startswith("malformed JSON") and "--skip-bad-lines" not in reason


def test_nothing_to_write_from_stdin_names_stdin(tmp_path):
    result = invoke("-", "-o", tmp_path / "out.h5", "--tokenizer", CODON_VOCAB,
                    input='{"prompt": "GAA", "completion": ""}\n')  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: <stdin>: no rows to write")


def test_without_a_pad_token_padding_follows_the_eos_override(tmp_path):
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"</s>": 0, "A": 1, "B": 2, "|": 3}))
    source = jsonl(tmp_path / "in.jsonl", {"prompt": "A", "completion": "B"})
    out = tmp_path / "out.h5"
    args = [source, "-o", out, "--overwrite", "--tokenizer", vocab, "--max-seq-length", 5, "-q"]
    assert invoke(*args).exit_code == 0
    assert read(out) == ([[1, 2, 0, 0, 0]], [[0, 1, 3, 2, 2]])
    assert invoke(*args, "--eos-token", "|").exit_code == 0
    assert read(out) == ([[1, 2, 3, 3, 3]], [[0, 1, 3, 2, 2]])


def test_ledger_records_all_have_the_same_keys(tmp_path):
    prompt_only = {"prompt": "GAA", "completion": ""}
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR, "{broken", prompt_only)
    ledger = tmp_path / "ledger.jsonl"
    result = invoke(
        source, "-o", tmp_path / "out.h5", "--tokenizer", CODON_VOCAB, "--max-seq-length", 7,
        "--skip-bad-lines", tmp_path / "rejects.jsonl", "--ledger", ledger, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [r["status"] for r in records] == ["packed", "rejected", "dropped"]
    assert [r["reason"] for r in records][::2] == [None, "prompt_only"]
    assert len({tuple(r) for r in records}) == 1
    help_text = invoke("--help").stdout
    assert all(key in help_text for key in records[0])


def test_unreadable_input_is_one_line(tmp_path, monkeypatch):
    from tokentype_cli.tokenize import read as tokenize_read

    def refuse(path, mode="r", *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR)
    monkeypatch.setattr(tokenize_read, "open", refuse, raising=False)
    result = invoke(source, "-o", tmp_path / "out.h5", "--tokenizer", CODON_VOCAB)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {source}: cannot read (Permission denied); check the file and its permissions\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]


def test_a_line_longer_than_any_read_block_is_one_line(tmp_path):
    source = tmp_path / "long.txt"
    source.write_text("ATG " * 400_000 + "\nGAA\n")
    out = tmp_path / "out.h5"
    result = invoke(source, "-o", out, "--tokenizer", CODON_VOCAB, "--max-seq-length", 4,
                    "--packing", "single::truncate_left", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read(out) == ([[10, 10, 10, 2], [9, 2, 69, 69]], [[1, 1, 1, 3], [1, 3, 2, 2]])


@pytest.mark.parametrize("flag", ["-o", "--ledger", "--skip-bad-lines"])
def test_writing_onto_an_input_is_refused(flag, tmp_path):
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR)
    before = source.read_bytes()
    args = [source, "--tokenizer", CODON_VOCAB, "-o", tmp_path / "out.h5"]
    result = invoke(*args, flag, tmp_path / "." / "in.jsonl")
    assert result.exit_code == 2, result.output
    assert "is also the input" in result.stderr
    assert source.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["in.jsonl"]
    clash = invoke(*args, "--ledger", tmp_path / "out.h5")
    assert clash.exit_code == 2 and "--ledger" in clash.stderr and "is also -o" in clash.stderr


def test_a_bad_pad_or_eos_token_names_its_option(tmp_path):
    source = jsonl(tmp_path / "in.jsonl", CODON_PAIR)
    base = [source, "-o", tmp_path / "o.h5", "--tokenizer", CODON_VOCAB]
    pad = invoke(*base, "--pad-token", "9999")
    assert pad.exit_code == 1
    assert (
        pad.stderr.startswith("Error: --pad-token '9999': ")
        and "outside the vocabulary" in pad.stderr
    )
    eos = invoke(*base, "--eos-token", "NOPE")
    assert eos.exit_code == 1 and eos.stderr.startswith("Error: --eos-token 'NOPE': ")
