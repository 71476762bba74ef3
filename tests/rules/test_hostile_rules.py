"""Rules are untrusted input: no pattern may hang, overflow or read without end."""

from __future__ import annotations

import time

import pytest

from tests.helpers import CODON_VOCAB, assert_one_line_error, invoke
from tokentype_cli.rules import text

GAA, GGC, SEP = 9, 5, 2


@pytest.fixture
def long_run(shard_factory):
    # "GAA GAA ... GAA GGC": nested repeats of GAA that must fail at GGC backtrack 2^40 ways.
    return shard_factory([[GAA] * 40 + [GGC, SEP]], name="run.h5")


@pytest.mark.parametrize("mode", [("--dry-run",), ("--explain",)])
def test_a_nested_repeat_runs_in_linear_time(long_run, mode):
    started = time.monotonic()
    rule = 'through:re:"((GAA )+)+$"=prompt'
    args = (*mode, rule) if mode == ("--explain",) else ("--rule", rule, *mode)
    result = invoke("assign-types", long_run, "--tokenizer", CODON_VOCAB, *args)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 10


def test_a_pattern_re2_cannot_take_is_stopped_in_bounded_time(long_run, monkeypatch):
    monkeypatch.setattr(text, "REGEX_SECONDS", 0.5)
    text.compile_patterns.cache_clear()
    started = time.monotonic()
    for args in (
        ("--rule", r'through:re:"((\w+ )+)+$"=prompt', "--dry-run"),
        ("--explain", r'through:re:"((\w+ )+)+$"'),
    ):
        result = invoke("assign-types", long_run, "--tokenizer", CODON_VOCAB, *args)
        assert_one_line_error(result, 1, r're:"((\w+ )+)+$"', "ran past 0.5 s on one article")
    assert time.monotonic() - started < 10


def test_re2_and_python_agree_where_re2_is_used(long_run):
    for rule in ('through:re:"GAA GGC"=prompt', 'until:re:"(?i)gaa g"=prompt'):
        result = invoke(
            "assign-types", long_run, "--tokenizer", CODON_VOCAB, "--rule", rule, "--dry-run",
            "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert '"articles_matched": 1' in result.stdout


def test_a_repeat_count_too_large_is_one_line(long_run):
    result = invoke(
        "assign-types", long_run, "--tokenizer", CODON_VOCAB, "--rule",
        'through:re:"a{99999999999}"=prompt', "--dry-run",
    )  # fmt: skip
    assert result.exit_code in (1, 2)
    assert "Traceback" not in result.stderr and "OverflowError" not in result.stderr
    assert "bad regular expression 'a{99999999999}'" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_rules_from_dev_zero_are_bounded(long_run):
    result = invoke("assign-types", long_run, "--tokenizer", CODON_VOCAB, "--rules", "/dev/zero")
    assert_one_line_error(result, 1, "/dev/zero: larger than the 16 MB a rules file may have")


@pytest.mark.parametrize("expression", ["a*|:", "^|b", "(?:ab)*", "a+|:"])
@pytest.mark.parametrize("subject", ["::", ":", "a:a", "ab\nb:", ""])
def test_the_matches_found_are_pythons_whichever_engine_runs(expression, subject):
    # RE2's finditer steps past a non-empty match that starts where an empty one did ("a*|:"
    # on "::"): a text rule would then type other tokens than the rule says.
    import re

    from tokentype_cli.rules.parse import TextPattern

    matcher, _ = text.compile_patterns((TextPattern(expression, regex=True),))
    expected = [m.span() for m in re.finditer(expression, subject, re.MULTILINE)]
    assert matcher.spans(subject) == expected
