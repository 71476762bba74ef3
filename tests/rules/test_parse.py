"""Rules files (TOML, JSON) and the command-line rule spelling: what parses, and what errors say."""

from __future__ import annotations

import json

import pytest

from tests.helpers import CODON_VOCAB
from tokentype_cli.errors import OptionError, RuleError
from tokentype_cli.rules.parse import (
    Rule,
    RulesConfig,
    Structure,
    TextPattern,
    build_structure,
    load_rules_file,
    parse_rule_spec,
    parse_rules_text,
    parse_token_word,
)
from tokentype_cli.schema.names import TokenType
from tokentype_cli.tokenizer_loader import load_tokenizer

T = TextPattern
P, C, PAD, SEP = TokenType.PROMPT, TokenType.COMPLETION, TokenType.PADDING, TokenType.SEPARATOR


@pytest.fixture(scope="module")
def codons():
    return load_tokenizer(CODON_VOCAB)


@pytest.fixture
def odd_vocab(tmp_path):
    """A vocabulary whose tokens look like the spelling's own punctuation."""
    vocab = {"=": 0, "..": 1, ":": 2, "5": 3, "a=b": 4, "x:y": 5, "<|user|>": 6, "<|assistant|>": 7}
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(vocab))
    return load_tokenizer(path)


ISSUE_EXAMPLE = {
    "sep": [2],
    "pad": 69,
    "default": "completion",
    "rules": [
        {"span": "2:4", "type": "prompt"},
        {"token": ["GCC"], "type": "prompt"},
        {"until": ["ATG"], "type": "prompt"},
        {"through": ["ATG", "ATC"], "type": "prompt"},
        {"between": [["GAA"], ["GAC"]], "type": 0},
    ],
}
ISSUE_EXAMPLE_RULES = [
    Rule("span", P, start=2, stop=4),
    Rule("token", P, tokens=(6,)),
    Rule("until", P, tokens=(10,)),
    Rule("through", P, tokens=(10, 7)),
    Rule("between", P, tokens=(9,), end=(8,)),
]

TOML_EXAMPLE = """
sep = [2]
pad = "PAD"
default = "completion"

[[rules]]
span = "2:4"
type = "prompt"

[[rules]]
token = ["GCC"]
type = "prompt"

[[rules]]
until = ["ATG"]
type = "prompt"

[[rules]]
through = ["ATG", "ATC"]
type = "prompt"

[[rules]]
between = [["GAA"], ["GAC"]]
type = 0
"""


def same_rules(got: list[Rule], expected: list[Rule]) -> None:
    def key(rule):
        return (rule.kind, rule.type, rule.start, rule.stop, rule.tokens, rule.end)

    assert [key(r) for r in got] == [key(r) for r in expected]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("r.json", json.dumps(ISSUE_EXAMPLE)),
        ("r.toml", TOML_EXAMPLE),
        ("r.txt", json.dumps(ISSUE_EXAMPLE)),
        ("-", TOML_EXAMPLE),
    ],
)
def test_rules_file_formats(codons, name, text):
    config = parse_rules_text(text, name, codons)
    assert (config.sep, config.pad, config.default) == ((2,), 69, C)
    same_rules(config.rules, ISSUE_EXAMPLE_RULES)
    assert config.rules[2].where == f"{name} rule 3"


def test_rules_file_from_disk_and_stdin(codons, tmp_path, monkeypatch):
    path = tmp_path / "rules.toml"
    path.write_text(TOML_EXAMPLE)
    same_rules(load_rules_file(path, codons).rules, ISSUE_EXAMPLE_RULES)
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(json.dumps(ISSUE_EXAMPLE)))
    same_rules(load_rules_file("-", codons).rules, ISSUE_EXAMPLE_RULES)


def test_ids_work_without_a_tokenizer():
    config = parse_rules_text(
        '{"sep": 2, "rules": [{"until": [10], "type": "prompt"}]}', "r.json", None
    )
    assert config.sep == (2,)
    same_rules(config.rules, [Rule("until", P, tokens=(10,))])


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"rules": [{"until": ["ATG"], "type": "prompt", "when": 1}]},
            "r.json rule 1: unknown key 'when'",
        ),
        ({"rulez": []}, "r.json: unknown key 'rulez'"),
        ({"rules": [{"span": "0:1", "type": 0}, {"until": ["ATX"], "type": 0}]}, "r.json rule 2: "),
        ({"rules": [{"until": [], "type": 0}]}, "r.json rule 1: empty pattern"),
        ({"rules": [{"between": [["GAA"], []], "type": 0}]}, "r.json rule 1 END: empty pattern"),
        (
            {"rules": [{"between": ["GAA"], "type": 0}]},
            "r.json rule 1: between must be [START, END]",
        ),
        ({"rules": [{"until": ["ATG"]}]}, "r.json rule 1: missing 'type'"),
        ({"rules": [{"until": ["ATG"], "type": "learned"}]}, "r.json rule 1: unknown token type"),
        (
            {"rules": [{"until": ["ATG"], "span": "1:2", "type": 0}]},
            "r.json rule 1: needs exactly one",
        ),
        ({"rules": [{"type": 0}]}, "r.json rule 1: needs exactly one"),
        ({"rules": [{"span": "1:x", "type": 0}]}, "r.json rule 1: span bound 'x'"),
        ({"rules": [{"span": "1", "type": 0}]}, "r.json rule 1: span '1' is not A:B"),
        ({"rules": [{"token": [1.5], "type": 0}]}, "r.json rule 1: token 1.5 is neither"),
        ({"rules": [{"token": [-1], "type": 0}]}, "r.json rule 1: token id -1"),
        ({"rules": [{"token": [70], "type": 0}]}, "outside the vocabulary"),
        ({"rules": "until ATG"}, "r.json: 'rules' must be a list"),
        ({"from_existing": "yes"}, "r.json: from_existing must be true or false"),
        ({"pad": "NOPE"}, "r.json: pad: "),
    ],
)
def test_bad_rules_name_their_position(codons, document, message):
    with pytest.raises(RuleError) as error:
        parse_rules_text(json.dumps(document), "r.json", codons)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_vocabulary_strings_need_a_tokenizer():
    with pytest.raises(
        RuleError, match=r"r.json rule 1: token 'ATG' is a vocabulary string; pass --tokenizer"
    ):
        parse_rules_text('{"rules": [{"until": ["ATG"], "type": 0}]}', "r.json", None)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("r.toml", "rules = [", "r.toml: not valid TOML"),
        ("r.json", "{", "r.json: not valid JSON"),
        ("r.json", "[1]", "r.json: a rules file holds one table"),
    ],
)
def test_unparseable_files(name, text, message):
    with pytest.raises(RuleError, match=message):
        parse_rules_text(text, name, None)


def test_missing_rules_file(tmp_path):
    with pytest.raises(RuleError, match="no such rules file"):
        load_rules_file(tmp_path / "nope.toml", None)


# --- command-line spelling ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("through:ATG=prompt", Rule("through", P, tokens=(10,))),
        ("span:2:4=prompt", Rule("span", P, start=2, stop=4)),
        ("span::-1=completion", Rule("span", C, start=None, stop=-1)),
        ("span:3:=0", Rule("span", P, start=3, stop=None)),
        ("span:-2:=sep", Rule("span", SEP, start=-2, stop=None)),
        ("token:GCC 8=padding", Rule("token", PAD, tokens=(6, 8))),
        ("until:ATG ATC=1", Rule("until", C, tokens=(10, 7))),
        ("between:GAA .. ATC GAC=prompt", Rule("between", P, tokens=(9,), end=(7, 8))),
        ("UNTIL: 10 =prompt", Rule("until", P, tokens=(10,))),
        ('until:tok:"ATG"=prompt', Rule("until", P, tokens=(10,))),
        ("until:tok:ATG=prompt", Rule("until", P, tokens=(10,))),
        ('until:"ATG"=prompt', Rule("until", P, find=(TextPattern("ATG"),))),
        ("until:'GAA GGC'=prompt", Rule("until", P, find=(TextPattern("GAA GGC"),))),
        ('until:re:"^G(AA|GC)"=prompt', Rule("until", P, find=(TextPattern("^G(AA|GC)", True),))),
        ('token:"GCC" re:G.C=prompt', Rule("token", P, find=(T("GCC"), T("G.C", True)))),
        (
            "between:\"GAA\" .. re:'A[TG]C'=prompt",
            Rule("between", P, find=(T("GAA"),), find_end=(T("A[TG]C", True),)),
        ),
        ('between:"GAA" .. GAC=prompt', Rule("between", P, find=(T("GAA"),), end=(8,))),
    ],
)
def test_command_line_spelling(codons, spec, expected):
    rule = parse_rule_spec(spec, "--rule 1", codons)
    same_rules([rule], [expected])
    assert rule.describe().endswith(f"-> {expected.type.name.lower()}")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("token:= =prompt", Rule("token", P, tokens=(0,))),
        ('token:tok:".."=prompt', Rule("token", P, tokens=(1,))),
        ("token:tok:'..' : x:y a=b=prompt", Rule("token", P, tokens=(1, 2, 5, 4))),
        ('token:tok:"5" 5=prompt', Rule("token", P, tokens=(3, 5))),
        ("token:tok:5 5=prompt", Rule("token", P, tokens=(3, 5))),
        ('between:tok:".." .. ==prompt', Rule("between", P, tokens=(1,), end=(0,))),
        ('between:".." .. "="=prompt', Rule("between", P, find=(T(".."),), find_end=(T("="),))),
        ("between:<|user|> .. <|assistant|>=prompt", Rule("between", P, tokens=(6,), end=(7,))),
        ('until:tok:"\\u003d"=prompt', Rule("until", P, tokens=(0,))),
        ('until:"\\u003d"=prompt', Rule("until", P, find=(T("="),))),
    ],
)
def test_punctuation_tokens_can_be_written(odd_vocab, spec, expected):
    same_rules([parse_rule_spec(spec, "--rule 1", odd_vocab)], [expected])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("after:ATG=prompt", "unknown rule kind 'after'"),
        ("until ATG=prompt", "no 'KIND:' at the start"),
        ("until:ATG", "no '=TYPE' at the end"),
        ("until:=prompt", "empty pattern"),
        ("until:ATG=learned", "unknown token type 'learned'"),
        ("until:ATX=prompt", "token 'ATX' is not in the vocabulary"),
        ("between:GAA GAC=prompt", "between needs START .. END"),
        ("between:GAA .. =prompt", "empty START or END"),
        ("span:1=prompt", "is not A:B"),
        ('until:"ATG=prompt', "unclosed quote"),
    ],
)
def test_bad_command_line_rules(codons, spec, message):
    with pytest.raises(RuleError) as error:
        parse_rule_spec(spec, "--rule 2", codons)
    assert str(error.value).startswith(f"--rule 2 {spec!r}: ")
    assert message in str(error.value)


def test_token_words(codons, odd_vocab):
    assert parse_token_word("SEP", codons, "--sep") == 2
    assert parse_token_word("69", codons, "--pad") == 69
    assert parse_token_word('"5"', odd_vocab, "--sep") == 3
    with pytest.raises(RuleError, match="--sep: 'A B' is not one token"):
        parse_token_word("A B", codons, "--sep")


# --- structure defaults ---------------------------------------------------------------------------


def test_tokenizer_supplies_sep_and_pad(codons):
    structure = build_structure(
        RulesConfig(), sep=None, pad=None, default=None, from_existing=False, tokenizer=codons
    )
    assert structure == Structure(sep=(2,), pad=69, default=C)


def test_without_tokenizer_neither_is_set():
    structure = build_structure(
        RulesConfig(), sep=None, pad=None, default=None, from_existing=False, tokenizer=None
    )
    assert structure == Structure()


def test_command_line_overrides_file(codons):
    config = RulesConfig(sep=(5,), pad=6, default=P)
    structure = build_structure(
        config, sep=[7, 8], pad=9, default=PAD, from_existing=False, tokenizer=codons
    )
    assert structure == Structure(sep=(7, 8), pad=9, default=PAD)
    assert build_structure(
        config, sep=None, pad=None, default=None, from_existing=False, tokenizer=codons
    ) == Structure(sep=(5,), pad=6, default=P)


def test_pad_falls_back_to_eos(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"<|endoftext|>": 0, "a": 1}))
    structure = build_structure(
        RulesConfig(),
        sep=None,
        pad=None,
        default=None,
        from_existing=False,
        tokenizer=load_tokenizer(path),
    )
    assert structure == Structure(sep=(0,), pad=0)


def test_from_existing_refuses_structure_options(codons):
    assert build_structure(
        RulesConfig(from_existing=True),
        sep=None,
        pad=None,
        default=None,
        from_existing=False,
        tokenizer=codons,
    ) == Structure(from_existing=True)
    with pytest.raises(OptionError, match="drop --sep"):
        build_structure(
            RulesConfig(), sep=[2], pad=None, default=None, from_existing=True, tokenizer=None
        )
    with pytest.raises(OptionError, match="drop 'pad' of the rules file"):
        build_structure(
            RulesConfig(pad=3), sep=None, pad=None, default=None, from_existing=True, tokenizer=None
        )
