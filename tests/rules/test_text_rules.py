"""assign-types with text patterns through the CLI: tokenize's own types recovered from text,
the not-in-vocabulary hint, --explain, --require-exact, --ignore-case, rules-file tables."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import CODON_VOCAB, CONFORMANCE, EXAMPLE2_IDS, assert_one_line_error, invoke
from tokentype_cli.errors import RuleError
from tokentype_cli.rules.parse import parse_rule_spec, parse_rules_text
from tokentype_cli.schema.names import TOKEN_TYPE_IDS
from tokentype_cli.tokenizer_loader import load_tokenizer

GPT2 = CONFORMANCE / "tokenizer-gpt2"
CHATML = CONFORMANCE / "tokenizer-chatml"


def need(folder):
    if not folder.is_dir():
        pytest.skip(f"tokenizer not present at {folder} (outside the workplace)")
    return folder


def types_of(path) -> np.ndarray:
    with h5py.File(path, "r") as shard:
        return shard[TOKEN_TYPE_IDS][:]


# --- tokenize's types, recovered by text rules ----------------------------------------------------

# Words people write, with what trips tokenizers up: leading spaces, newlines, '#', ':', accents.
words = st.text(alphabet="abc XYZ#:\né☃", min_size=1, max_size=30)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pairs=st.lists(
        st.tuples(words, st.one_of(st.none(), words), words.filter(str.strip)),
        min_size=5,
        max_size=40,
    )
)
def test_alpaca_text_rule_types_what_tokenize_typed(tmp_path_factory, pairs):
    """`through:"### Response:"=prompt` on a tokenize-made Alpaca shard gives tokenize's types."""
    need(GPT2)
    folder = tmp_path_factory.mktemp("alpaca")
    lines = []
    for instruction, given_input, response in pairs:
        prompt = f"### Instruction:\n{instruction}\n\n"
        if given_input is not None:
            prompt += f"### Input:\n{given_input}\n\n"
        lines.append(json.dumps({"prompt": prompt + "### Response:", "completion": response}))
    source = folder / "alpaca.jsonl"
    source.write_text("\n".join(lines) + "\n")
    shard = folder / "alpaca.h5"
    made = invoke(
        "tokenize", source, "-o", shard, "--tokenizer", GPT2, "--max-seq-length", 256,
        "--packing", "greedy::drop", "--quiet",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    typed = folder / "typed.h5"
    result = invoke(
        "assign-types", shard, "--tokenizer", GPT2, "-o", typed, "--overwrite", "--quiet",
        "--rule", 'through:"### Response:"=prompt', "--require-match", "--require-exact",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(types_of(typed), types_of(shard))


turns = st.text(alphabet="abc XYZ#:\né☃<|>", min_size=1, max_size=20)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conversations=st.lists(
        st.tuples(st.one_of(st.none(), turns), st.lists(st.tuples(turns, turns), min_size=1)),
        min_size=5,
        max_size=30,
    )
)
def test_chatml_text_rule_types_what_tokenize_typed(tmp_path_factory, conversations):
    """A ChatML conversation per line, the last answer learned: a regular expression finds the
    last assistant header (greedy `.*`), and everything through it is the prompt.

    One pair per line: tokenize ends every pair of a multi-pair line with an eos typed
    completion (as the reference does), while assign-types makes every eos a separator."""
    need(CHATML)
    folder = tmp_path_factory.mktemp("chatml")
    lines = []
    for system, exchanges in conversations:
        prompt = "" if system is None else f"<|im_start|>system\n{system}<|im_end|>\n"
        for user, assistant in exchanges[:-1]:
            prompt += f"<|im_start|>user\n{user}<|im_end|>\n"
            prompt += f"<|im_start|>assistant\n{assistant}<|im_end|>\n"
        prompt += f"<|im_start|>user\n{exchanges[-1][0]}<|im_end|>\n<|im_start|>assistant\n"
        lines.append(json.dumps({"prompt": prompt, "completion": f"{exchanges[-1][1]}<|im_end|>"}))
    source = folder / "chat.jsonl"
    source.write_text("\n".join(lines) + "\n")
    shard = folder / "chat.h5"
    made = invoke(
        "tokenize", source, "-o", shard, "--tokenizer", CHATML, "--max-seq-length", 1024,
        "--packing", "greedy::drop", "--eos-token", "<|endoftext|>", "--quiet",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    typed = folder / "typed.h5"
    result = invoke(
        "assign-types", shard, "--tokenizer", CHATML, "--sep", "<|endoftext|>", "-o", typed,
        "--overwrite", "--quiet", "--require-match", "--require-exact", "--rule",
        'through:re:"(?s).*<\\|im_start\\|>assistant\\n"=prompt',
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(types_of(typed), types_of(shard))


# --- say what would match -------------------------------------------------------------------------


def test_a_token_missing_from_the_vocabulary_shows_the_split_and_the_text_spelling():
    gpt2 = load_tokenizer(need(GPT2))
    with pytest.raises(RuleError) as error:
        parse_rule_spec("through:### Response:=prompt", "--rule 1", gpt2)
    message = str(error.value)
    assert "token 'Response:' is not in the vocabulary" in message
    assert '"### Response:" tokenizes as ### ĠResponse : (ids 21017 18261 25)' in message
    assert message.endswith('to match the text write through:"### Response:"=prompt')
    with pytest.raises(RuleError, match=r'write between:"<\|user\|>" \.\. 50256=prompt$'):
        parse_rule_spec("between:<|user|> .. 50256=prompt", "--rule 1", gpt2)
    with pytest.raises(RuleError, match=r'write \{"until": \{"text": "### Response:"\}\}$'):
        parse_rules_text('{"rules": [{"until": ["###", "Response:"], "type": 0}]}', "r.json", gpt2)


def test_the_hint_reaches_the_command_line(tmp_path):
    need(GPT2)
    shard = tmp_path / "s.h5"
    from tests.helpers import write_shard

    write_shard(shard, [[21017, 18261, 25, 50256]])
    result = invoke("assign-types", shard, "--tokenizer", GPT2, "--rule", "until:Response:=0")
    assert result.exit_code == 2
    assert "Response: tokenizes as ĠResponse :" not in result.stderr  # quoted, with its ids
    assert '"Response:" tokenizes as Response : (ids 31077 25)' in result.stderr
    assert 'to match the text write until:"Response:"=0' in result.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ('until:"GAA" ATG=prompt', "a pattern is text"),
        ("until:'GAA' 'ATG'=prompt", "until takes one text"),
        ('until:re:"(GAA"=prompt', r"bad regular expression '\(GAA'"),
        ('until:""=prompt', "must be a non-empty string"),
        ('between:"GAA" GAA .. "ATG"=prompt', "a pattern is text"),
    ],
)
def test_bad_text_patterns(spec, message):
    with pytest.raises(RuleError, match=message):
        parse_rule_spec(spec, "--rule 1", load_tokenizer(CODON_VOCAB))


def test_text_needs_a_tokenizer():
    with pytest.raises(RuleError, match="pass --tokenizer"):
        parse_rule_spec('until:"ATG"=prompt', "--rule 1", None)
    with pytest.raises(RuleError, match=r"r\.json rule 1: a text pattern .* pass --tokenizer"):
        parse_rules_text('{"rules": [{"until": {"text": "ATG"}, "type": 0}]}', "r.json", None)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"until": {"text": "A", "re": "B"}, "type": 0}, "exactly one of text and re"),
        ({"until": {"txt": "A"}, "type": 0}, "unknown key 'txt' in a text pattern"),
        ({"until": [{"text": "A"}, "ATG"], "type": 0}, "not both"),
        ({"until": [{"text": "A"}, {"text": "B"}], "type": 0}, "until takes one text"),
        ({"until": {"text": "A", "ignore_case": "yes"}, "type": 0}, "ignore_case must be true"),
        ({"until": {"re": "("}, "type": 0}, "bad regular expression"),
    ],
)
def test_bad_text_tables_in_rules_files(document, message):
    with pytest.raises(RuleError, match=message):
        parse_rules_text(json.dumps({"rules": [document]}), "r.json", load_tokenizer(CODON_VOCAB))


# --- the command ------------------------------------------------------------------------------------


@pytest.fixture
def codon_shard(shard_factory):
    return shard_factory([EXAMPLE2_IDS, [9, 5, 6, 2, 10, 7, 8, 2, 69, 69, 69]], name="c.h5")


def test_text_rules_from_a_toml_file(codon_shard, tmp_path):
    """The document's example 2 with the pattern written as text; old token files still work."""
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nuntil = { text = "atg", ignore_case = true }\ntype = "prompt"\n')
    result = invoke(
        "assign-types", codon_shard, "--tokenizer", CODON_VOCAB, "--rules", rules, "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rules"][0]["rule"] == 'until "atg" (ignore case) -> prompt'
    assert report["rules"][0]["seams"] == 0
    assert types_of(codon_shard).tolist() == [
        [0, 0, 0, 1, 1, 1, 3, 2, 2, 2, 2],
        [1, 1, 1, 3, 1, 1, 1, 3, 2, 2, 2],
    ]


def test_ignore_case_applies_to_command_line_and_file(codon_shard):
    result = invoke(
        "assign-types", codon_shard, "--tokenizer", CODON_VOCAB, "--dry-run", "--json",
        "--rule", 'through:"gaa ggc"=prompt', "--ignore-case",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rule = json.loads(result.stdout)["rules"][0]
    assert rule["rule"] == 'through "gaa ggc" (ignore case) -> prompt'
    assert (rule["articles_matched"], rule["tokens_set"]) == (2, 4)


def test_require_exact_names_the_row_and_token(codon_shard):
    """ "AA G" starts inside GAA and ends inside GGC: two seams, an error with --require-exact."""
    args = ("--tokenizer", CODON_VOCAB, "--rule", "through:'AA G'=prompt")
    result = invoke("assign-types", codon_shard, *args, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "2 seams (first in row 0)" in result.stderr  # one per article: GGC is cut
    result = invoke("assign-types", codon_shard, *args, "--require-exact")
    assert_one_line_error(result, 1, "row 0:", "cuts token 5 'GGC' at column 1", "--require-exact")
    assert TOKEN_TYPE_IDS not in h5py.File(codon_shard, "r")


def test_explain_marks_the_matches(codon_shard):
    result = invoke(
        "assign-types", codon_shard, "--tokenizer", CODON_VOCAB, "--explain", 'through:"GGC"'
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "row 0, columns 0..5: matched columns 1..1; 0 seams",
        "[completion] GAA ⟦GGC⟧ GCC ATG ATC GAC",
        "row 1, columns 0..2: matched columns 1..1; 0 seams",
        "[completion] GAA ⟦GGC⟧ GCC",
        "row 1, columns 4..6: no match; 0 seams",
        "[completion] ATG ATC GAC",
    ]
    assert result.stderr == ""
    assert TOKEN_TYPE_IDS not in h5py.File(codon_shard, "r")


def test_explain_with_a_type_shows_the_types_it_sets(codon_shard):
    result = invoke(
        "assign-types", codon_shard, "--tokenizer", CODON_VOCAB, "--show", 1,
        "--explain", "until:'C A'=prompt",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "row 0, columns 0..5: matched columns 2..3; 1 seam (columns 2)",
        "[prompt] GAA GGC [completion] ⟦GCC ATG⟧ ATC GAC",
    ]


def test_explain_json(codon_shard):
    result = invoke(
        "assign-types", codon_shard, "--tokenizer", CODON_VOCAB, "--explain",
        "between:GAA .. GCC", "--show", 1, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rule"] == "between GAA .. GCC"
    (article,) = data["articles"]
    assert article["marks"] == [[0, 3]]
    assert article["tokens"] == ["GAA", "GGC", "GCC", "ATG", "ATC", "GAC"]
