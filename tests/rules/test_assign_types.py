"""assign-types through the CLI: the document's examples, writing, reporting, and failing safely."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

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
    ROOT,
)
from tokentype_cli.cli import cli
from tokentype_cli.rules import engine as rules_engine
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_IDS


def run(*args, input=None):
    return CliRunner().invoke(cli, ["assign-types", *[str(a) for a in args]], input=input)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def types_of(path):
    with h5py.File(path, "r") as shard:
        return shard[TOKEN_TYPE_IDS][:].tolist()


@pytest.fixture
def example2_shard(shard_factory):
    return shard_factory([EXAMPLE2_IDS], name="example2.h5")


# --- the document's examples ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("until:ATG=prompt", EXAMPLE1_TYPES), ("span:2:4=prompt", EXAMPLE1_ALT_TYPES)],
)
def test_example1(example1_shard, rule, expected):
    result = run(example1_shard, "--tokenizer", CODON_VOCAB, "--rule", rule)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert types_of(example1_shard) == [expected]
    with h5py.File(example1_shard, "r") as shard:
        assert shard[INPUT_IDS][:].tolist() == [EXAMPLE1_IDS]
        dataset = shard[TOKEN_TYPE_IDS]
        assert (dataset.dtype, dataset.compression) == ("i4", "gzip")
        assert dataset.attrs["tokentype_command"] == "tokentype assign-types"
        assert rule.split(":")[0] in dataset.attrs["tokentype_options"]


def test_example1_with_ids_only(example1_shard):
    result = run(example1_shard, "--sep", 2, "--rule", "until:10=0")
    assert result.exit_code == 0, result.output
    assert types_of(example1_shard) == [EXAMPLE1_TYPES]


def test_example2_padding(example2_shard):
    result = run(example2_shard, "--tokenizer", CODON_VOCAB, "--rule", "until:ATG=prompt")
    assert result.exit_code == 0, result.output
    assert types_of(example2_shard) == [EXAMPLE2_TYPES]


def test_example2_rules_file(example2_shard, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('sep = ["SEP"]\npad = "PAD"\n[[rules]]\nuntil = ["ATG"]\ntype = "prompt"\n')
    result = run(example2_shard, "--tokenizer", CODON_VOCAB, "--rules", rules)
    assert result.exit_code == 0, result.output
    assert types_of(example2_shard) == [EXAMPLE2_TYPES]


def test_rules_from_stdin_then_command_line_rules(example2_shard):
    rules = {"sep": [2], "pad": 69, "rules": [{"until": [10], "type": "prompt"}]}
    result = run(
        example2_shard, "--rules", "-", "--rule", "token:5=completion", input=json.dumps(rules)
    )
    assert result.exit_code == 0, result.output
    assert types_of(example2_shard) == [[0, 1, 0, 1, 1, 1, 3, 2, 2, 2, 2]]


# --- the report ----------------------------------------------------------------------------------------


def test_report_on_stderr(example2_shard):
    result = run(
        example2_shard,
        "--tokenizer",
        CODON_VOCAB,
        "--rule",
        "until:ATG=prompt",
        "--rule",
        "between:GAA .. TTT=padding",
    )
    assert result.exit_code == 2  # TTT is not in the vocabulary: a bad invocation
    assert "Error: --rule 2 'between:GAA .. TTT=padding': " in result.stderr
    assert "token 'TTT' is not in the vocabulary" in result.stderr
    result = run(
        example2_shard,
        "--tokenizer",
        CODON_VOCAB,
        "--rule",
        "until:ATG=prompt",
        "--rule",
        "through:GAC GAA=padding",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert "1 row x 11 tokens, 1 article" in lines[0]
    assert "in place" in lines[0]
    assert lines[1] == "  structure: sep 2, pad 69, default completion"
    assert "until ATG -> prompt" in lines[2]
    assert "matched 1 of 1 article, 0 not; set 3 tokens" in lines[2]
    assert "matched 0 of 1 article, 1 not; set 0 tokens (first unmatched row 0)" in lines[3]
    assert lines[4].split() == ["tokens", "prompt", "completion", "padding", "separator"]
    assert lines[5].split() == ["structure", "0", "6", "4", "1"]
    assert lines[6].split() == ["after", "3", "3", "4", "1"]


def test_json_report_on_stdout(example2_shard):
    result = run(example2_shard, "--tokenizer", CODON_VOCAB, "--rule", "until:ATG=prompt", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["written"] is True
    assert (report["rows"], report["tokens"], report["articles"]) == (1, 11, 1)
    assert (report["sep"], report["pad"], report["default"]) == ([2], 69, "completion")
    assert report["rules"] == [
        {
            "rule": "until ATG -> prompt",
            "where": "--rule 1 'until:ATG=prompt'",
            "articles_matched": 1,
            "articles_not_matched": 0,
            "tokens_set": 3,
            "first_unmatched_row": None,
        }
    ]
    structure = {k: v["count"] for k, v in report["token_types_structure"].items()}
    assert structure == {"prompt": 0, "completion": 6, "padding": 4, "separator": 1}
    after = {k: v["count"] for k, v in report["token_types"].items()}
    assert after == {"prompt": 3, "completion": 3, "padding": 4, "separator": 1}


def test_quiet(example1_shard):
    result = run(example1_shard, "--sep", 2, "--rule", "until:10=0", "-q")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


# --- writing -----------------------------------------------------------------------------------------


def test_output_leaves_file_untouched(example1_shard, tmp_path):
    before = digest(example1_shard)
    out = tmp_path / "typed.h5"
    result = run(example1_shard, "--sep", 2, "--rule", "span:2:4=prompt", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"written to {out}" in result.stderr
    assert digest(example1_shard) == before
    assert types_of(out) == [EXAMPLE1_ALT_TYPES]
    with h5py.File(out, "r") as shard:
        assert shard[INPUT_IDS][:].tolist() == [EXAMPLE1_IDS]


def test_existing_types_need_overwrite_or_from_existing(example1_shard):
    assert run(example1_shard, "--sep", 2, "--rule", "until:10=0").exit_code == 0
    before = digest(example1_shard)
    result = run(example1_shard, "--sep", 2, "--rule", "span:2:4=0")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {example1_shard}: dataset 'token_type_ids' already exists; pass --overwrite to"
        " replace it or --from-existing to start from it"
    ]
    assert digest(example1_shard) == before
    result = run(example1_shard, "--sep", 2, "--rule", "span:2:4=0", "--overwrite")
    assert result.exit_code == 0, result.output
    assert types_of(example1_shard) == [[1, 1, 0, 0, 1, 1, 3]]


def test_from_existing_keeps_structure_and_changes_the_rest(shard_factory):
    ids = [[9, 5, 6, 10, 7, 8, 2, 9, 5, 69, 69]]
    # Existing types from some tool: a separator and padding that --sep/--pad would not find.
    existing = [[1, 1, 1, 1, 1, 3, 1, 1, 3, 2, 2]]
    path = shard_factory(ids, existing)
    result = run(path, "--from-existing", "--rule", "until:10=prompt", "--rule", "token:2=0")
    assert result.exit_code == 0, result.output
    assert types_of(path) == [[0, 0, 0, 1, 1, 3, 0, 1, 3, 2, 2]]
    assert "separators and padding of the existing token_type_ids" in result.stderr


def test_from_existing_needs_types(example1_shard):
    result = run(example1_shard, "--from-existing", "--rule", "until:10=0")
    assert result.exit_code == 1
    assert "no dataset 'token_type_ids' to start from; drop --from-existing" in result.stderr


def test_from_existing_rejects_invalid_types(shard_factory):
    path = shard_factory([[1, 2, 3]], [[0, 7, 1]])
    before = digest(path)
    result = run(path, "--from-existing")
    assert result.exit_code == 1
    assert "row 0 column 1 holds 7, not a type 0..3" in result.stderr
    assert digest(path) == before


def test_from_existing_with_sep_is_a_bad_invocation(shard_factory):
    path = shard_factory([[1, 2, 3]], [[0, 1, 3]])
    result = run(path, "--from-existing", "--sep", 3)
    assert result.exit_code == 2
    assert "drop --sep" in result.stderr


def test_many_rows_many_blocks(tmp_path, shard_factory):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 6, size=(3000, 24)).astype(np.int32)
    path = shard_factory(ids)
    result = run(path, "--sep", 2, "--pad", 5, "--rule", "between:3 .. 4=prompt", "--json")
    assert result.exit_code == 0, result.output
    from tokentype_cli.rules.parse import Rule, Structure
    from tokentype_cli.schema.names import TokenType

    expected = rules_engine.apply_rules(
        ids, Structure(sep=(2,), pad=5), [Rule("between", TokenType.PROMPT, tokens=(3,), end=(4,))]
    )
    assert types_of(path) == expected.types.tolist()
    assert json.loads(result.stdout)["articles"] == expected.articles


# --- failing safely ----------------------------------------------------------------------------------


def test_require_match_fails_and_writes_nothing(shard_factory, tmp_path):
    path = shard_factory([EXAMPLE1_IDS, [9, 5, 6, 7, 8, 2, 9]])
    before = digest(path)
    out = tmp_path / "out.h5"
    result = run(path, "--sep", 2, "--rule", "until:10=0", "--require-match", "-o", out)
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.startswith(f"Error: {path}: row 1: rule 'until 10 -> prompt'")
    assert "drop --require-match" in message and "\n" not in message
    assert digest(path) == before
    assert not out.exists()
    assert list(tmp_path.glob(".*.tmp")) == []
    result = run(path, "--sep", 2, "--rule", "until:10=0", "--require-match")
    assert result.exit_code == 1
    assert digest(path) == before


def test_require_match_ignores_span_and_token_rules(example1_shard):
    result = run(example1_shard, "--sep", 2, "--rule", "token:99=0", "--require-match")
    assert result.exit_code == 0, result.output


def test_interrupted_in_place_run_leaves_file_as_it_was(shard_factory, monkeypatch):
    # Two blocks of iter_row_chunks: the first is written before the second is interrupted.
    ids = np.tile(np.array(EXAMPLE1_IDS, dtype=np.int32), (200_000, 1))
    path = shard_factory(ids)
    before = digest(path)
    calls = {"n": 0}
    real = rules_engine.apply_rules

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr("tokentype_cli.rules.assign.apply_rules", interrupted)
    result = run(path, "--sep", 2, "--rule", "until:10=0")
    assert result.exit_code != 0
    assert calls["n"] == 2
    assert digest(path) == before
    assert list(path.parent.glob(".*.tmp")) == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--rule", "until:ATG=prompt"], 2, "token 'ATG' is a vocabulary string; pass --tokenizer"),
        (["--rule", "until ATG"], 2, "--rule 1 'until ATG': no 'KIND:' at the start"),
        (["--rule", "until:10=learned"], 2, "unknown token type 'learned'"),
        (["--sep", "SEP"], 2, "--sep 'SEP': token 'SEP' is a vocabulary string"),
        (["--default", "learned"], 2, "Invalid value for '--default'"),
        (["--show", "-1"], 2, "Invalid value for '--show'"),
    ],
)
def test_bad_invocations(example1_shard, args, code, message):
    before = digest(example1_shard)
    result = run(example1_shard, *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert result.stdout == ""
    assert digest(example1_shard) == before


def test_bad_rules_file_is_exit_1(example1_shard, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{"until": [10], "type": 0}, {"untill": [10]}]}))
    result = run(example1_shard, "--rules", rules)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {rules} rule 2: unknown key 'untill'; use one of span, token, until, through,"
        " between and type"
    )


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (lambda p: p, 1, "shard.h5: no such file; check the path"),
        (lambda p: (p.write_text("not hdf5"), p)[1], 1, "shard.h5: not an HDF5 file"),
        (lambda p: (p.mkdir(), p)[1], 2, "shard.h5' is a directory"),
    ],
)
def test_unusable_files(tmp_path, make, code, message):
    path = make(tmp_path / "shard.h5")
    result = run(path, "--sep", 2)
    assert result.exit_code == code
    assert message in result.stderr
    assert result.stdout == ""


def test_file_without_input_ids(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as shard:
        shard["tokens"] = np.zeros((2, 3), dtype=np.int32)
    result = run(path, "--sep", 2)
    assert result.exit_code == 1
    assert "no dataset 'input_ids'" in result.stderr


# --- dry run ------------------------------------------------------------------------------------------


def test_dry_run_prints_rows_and_writes_nothing(shard_factory):
    path = shard_factory([EXAMPLE1_IDS, EXAMPLE1_IDS, EXAMPLE1_IDS])
    before = digest(path)
    result = run(
        path, "--tokenizer", CODON_VOCAB, "--rule", "until:ATG=prompt", "--dry-run", "--show", 2
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "row 0 of 3: 3 prompt, 3 completion, 1 separator",
        "[prompt] GAA GGC GCC [completion] ATG ATC GAC [separator] SEP",
        "row 1 of 3: 3 prompt, 3 completion, 1 separator",
        "[prompt] GAA GGC GCC [completion] ATG ATC GAC [separator] SEP",
    ]
    assert "dry run, nothing written" in result.stderr
    assert digest(path) == before


def test_dry_run_json_includes_rows(example2_shard):
    result = run(
        example2_shard, "--sep", 2, "--pad", 69, "--rule", "until:10=0", "--dry-run", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["written"] is False
    assert report["preview"] == [
        {"row": 0, "input_ids": EXAMPLE2_IDS, "token_type_ids": EXAMPLE2_TYPES}
    ]


def test_dry_run_does_not_need_overwrite(example1_shard):
    assert run(example1_shard, "--sep", 2).exit_code == 0
    result = run(example1_shard, "--sep", 2, "--rule", "span:2:4=0", "--dry-run")
    assert result.exit_code == 0, result.output


# --- help and a real pipe -------------------------------------------------------------------------------


def test_help():
    result = CliRunner().invoke(cli, ["assign-types", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    for option in (
        "--rules",
        "--rule",
        "--sep",
        "--pad",
        "--default",
        "--from-existing",
        "--require-match",
        "--dry-run",
        "--overwrite",
        "--output",
        "--json",
    ):
        assert option in result.stdout


def test_subprocess_pipe(example2_shard):
    command = [
        sys.executable,
        "-m",
        "tokentype_cli",
        "assign-types",
        str(example2_shard),
        "--tokenizer",
        str(CODON_VOCAB),
        "--rule",
        "until:ATG=prompt",
        "--json",
    ]
    produced = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    consumed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json,sys; print(json.load(sys.stdin)['token_types']['prompt']['count'])",
        ],
        input=produced.stdout,
        capture_output=True,
        text=True,
        check=True,
    )
    assert consumed.stdout.strip() == "3"
    assert types_of(example2_shard) == [EXAMPLE2_TYPES]


def test_empty_shard_gets_an_empty_dataset(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as shard:
        shard.create_dataset(INPUT_IDS, shape=(0, 5), maxshape=(None, 5), dtype="i4", chunks=(4, 5))
    result = run(path, "--sep", 2, "--rule", "until:3=0", "--require-match")
    assert result.exit_code == 0, result.output
    assert types_of(path) == []


def test_rows_of_length_zero(tmp_path):
    path = tmp_path / "zero.h5"
    with h5py.File(path, "w") as shard:
        shard.create_dataset(INPUT_IDS, shape=(3, 0), dtype="i4")
    result = run(path, "--sep", 2)
    assert result.exit_code == 1
    assert "'input_ids' has rows of length 0" in result.stderr


def test_punctuation_tokens_in_a_toml_file(tmp_path, shard_factory):
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"<eos>": 0, "=": 1, "..": 2, ":": 3, "a": 4}))
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nbetween = [["=", ".."], [":"]]\ntype = "prompt"\n')
    path = shard_factory([[4, 1, 2, 4, 3, 4, 0, 1, 2, 3]])
    result = run(path, "--tokenizer", vocab, "--rules", rules, "--rule", "token:':'=padding")
    assert result.exit_code == 0, result.output
    assert types_of(path) == [[1, 0, 0, 0, 2, 1, 3, 0, 0, 2]]


def test_same_command_same_bytes(example1_shard, tmp_path):
    outputs = []
    for name in ("a.h5", "b.h5"):
        out = tmp_path / name
        args = ["--sep", 2, "--rule", "until:10=0", "-o", tmp_path / "typed.h5"]
        assert run(example1_shard, *args).exit_code == 0
        (tmp_path / "typed.h5").rename(out)
        outputs.append(digest(out))
    assert outputs[0] == outputs[1]


def test_show_without_dry_run_is_a_usage_error(example2_shard):
    before = digest(example2_shard)
    result = run(example2_shard, "--tokenizer", CODON_VOCAB, "--show", "5")
    assert result.exit_code == 2
    assert "--show only applies with --dry-run" in result.stderr
    assert digest(example2_shard) == before


def test_no_sep_and_no_pad_switch_off_the_tokenizer_defaults(example2_shard):
    result = run(
        example2_shard, "--tokenizer", CODON_VOCAB, "--no-sep", "--no-pad", "--rule", "span:0:3=0"
    )
    assert result.exit_code == 0, result.output
    # One article per row, nothing is padding: SEP and PAD keep the default type.
    assert types_of(example2_shard) == [[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--no-sep", "--sep", "SEP"], "--no-sep and --sep contradict each other"),
        (["--no-pad", "--pad", "PAD"], "--no-pad and --pad contradict each other"),
    ],
)
def test_no_sep_or_no_pad_with_a_token_is_a_usage_error(example2_shard, flags, message):
    result = run(example2_shard, "--tokenizer", CODON_VOCAB, *flags)
    assert result.exit_code == 2
    assert message in result.stderr
