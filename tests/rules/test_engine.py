"""The vectorised rule engine against a plain-Python statement of the semantics (rules.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import (
    EXAMPLE1_ALT_TYPES,
    EXAMPLE1_IDS,
    EXAMPLE1_TYPES,
    EXAMPLE2_IDS,
    EXAMPLE2_TYPES,
)
from tokentype_cli.rules import engine as rules_engine
from tokentype_cli.rules.engine import apply_rules
from tokentype_cli.rules.parse import Rule, Structure
from tokentype_cli.schema.names import TokenType

# --- the semantics, one row at a time, in plain Python ---------------------------------------------


def find(tokens: list[int], pattern: tuple[int, ...], start: int = 0) -> int | None:
    for i in range(start, len(tokens) - len(pattern) + 1):
        if tuple(tokens[i : i + len(pattern)]) == pattern:
            return i
    return None


def select(rule: Rule, tokens: list[int]) -> tuple[list[int], bool]:
    """Body positions a rule sets, and whether it matched the article."""
    n = len(tokens)
    if rule.kind == "span":
        chosen = list(range(n)[rule.start : rule.stop])
        return chosen, bool(chosen)
    if rule.kind == "token":
        chosen = [p for p, t in enumerate(tokens) if t in rule.tokens]
        return chosen, bool(chosen)
    if rule.kind in ("until", "through"):
        first = find(tokens, rule.tokens)
        if first is None:
            return [], False
        return list(range(first + (len(rule.tokens) if rule.kind == "through" else 0))), True
    chosen, i, matched = [], 0, False
    while i < n:
        if tuple(tokens[i : i + len(rule.tokens)]) != rule.tokens:
            i += 1
            continue
        matched = True
        end = find(tokens, rule.end, i + len(rule.tokens))
        stop = n if end is None else end + len(rule.end)
        chosen.extend(range(i, stop))
        i = stop
    return chosen, matched


def reference_row(row, structure: Structure, rules, existing=None):
    n = len(row)
    if structure.from_existing:
        types = list(existing)
        role = ["sep" if t == 3 else "pad" if t == 2 else "body" for t in types]
    else:
        role = ["sep" if token in structure.sep else "body" for token in row]
        k = n
        while structure.pad is not None and k > 0 and row[k - 1] == structure.pad:
            k -= 1
        for i in range(k, n):
            role[i] = "pad"
        if structure.pad in structure.sep and 0 < k < n:
            role[k] = "sep"
        names = {"sep": 3, "pad": 2, "body": int(structure.default)}
        types = [names[r] for r in role]
    before = list(types)
    bodies, current = [], []
    for i in range(n):
        if role[i] == "sep":
            bodies.append(current)
            current = []
        elif role[i] == "body":
            current.append(i)
    bodies.append(current)
    bodies = [body for body in bodies if body]
    matched = [0] * len(rules)
    tokens_set = [0] * len(rules)
    for r, rule in enumerate(rules):
        for body in bodies:
            chosen, hit = select(rule, [row[i] for i in body])
            matched[r] += hit
            tokens_set[r] += len(chosen)
            for p in chosen:
                types[body[p]] = int(rule.type)
    return types, before, len(bodies), matched, tokens_set


def reference(rows, structure, rules, existing=None):
    out = []
    counts_before = np.zeros(4, dtype=np.int64)
    articles = 0
    matched = [0] * len(rules)
    tokens_set = [0] * len(rules)
    first_unmatched: list[int | None] = [None] * len(rules)
    for r, row in enumerate(rows):
        types, before, n_articles, hit, count = reference_row(
            list(row), structure, rules, None if existing is None else list(existing[r])
        )
        out.append(types)
        counts_before += np.bincount(before, minlength=4)
        articles += n_articles
        for i in range(len(rules)):
            matched[i] += hit[i]
            tokens_set[i] += count[i]
            if hit[i] < n_articles and first_unmatched[i] is None:
                first_unmatched[i] = r
    return (
        np.array(out, dtype=np.int32),
        counts_before,
        articles,
        matched,
        tokens_set,
        first_unmatched,
    )


# --- strategies -----------------------------------------------------------------------------------

VOCAB = 6  # small, so patterns, separators and padding collide often
token = st.integers(0, VOCAB - 1)
pattern = st.lists(token, min_size=1, max_size=3).map(tuple)
token_type = st.sampled_from(list(TokenType))
bound = st.one_of(st.none(), st.integers(-9, 9))

rule_strategy = st.one_of(
    st.builds(lambda a, b, t: Rule("span", t, start=a, stop=b), bound, bound, token_type),
    st.builds(lambda p, t: Rule("token", t, tokens=p), pattern, token_type),
    st.builds(lambda p, t: Rule("until", t, tokens=p), pattern, token_type),
    st.builds(lambda p, t: Rule("through", t, tokens=p), pattern, token_type),
    st.builds(lambda s, e, t: Rule("between", t, tokens=s, end=e), pattern, pattern, token_type),
)


@st.composite
def structures(draw):
    sep = tuple(draw(st.lists(token, max_size=2, unique=True)))
    pad = draw(st.one_of(st.none(), token, st.sampled_from(sep) if sep else st.none()))
    return Structure(sep=sep, pad=pad, default=draw(token_type))


@st.composite
def blocks(draw, max_rows=6, max_len=16):
    n_rows = draw(st.integers(1, max_rows))
    seq_len = draw(st.integers(1, max_len))
    cells = st.lists(token, min_size=seq_len, max_size=seq_len)
    return np.array(draw(st.lists(cells, min_size=n_rows, max_size=n_rows)), dtype=np.int32)


def check(rows, structure, rules, existing=None):
    result = apply_rules(rows, structure, rules, existing)
    types, before, articles, matched, tokens_set, first_unmatched = reference(
        rows.tolist(), structure, rules, existing
    )
    np.testing.assert_array_equal(result.types, types)
    assert result.types.dtype == np.int32
    np.testing.assert_array_equal(result.before, before)
    np.testing.assert_array_equal(result.after, np.bincount(types.ravel(), minlength=4))
    assert result.articles == articles
    assert result.matched == matched
    assert result.tokens_set == tokens_set
    assert result.first_unmatched_row == first_unmatched


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=blocks(), structure=structures(), rules=st.lists(rule_strategy, max_size=5))
def test_engine_matches_reference(rows, structure, rules):
    check(rows, structure, rules)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), rules=st.lists(rule_strategy, max_size=4))
def test_engine_matches_reference_from_existing(data, rules):
    rows = data.draw(blocks())
    existing = np.array(
        data.draw(
            st.lists(
                st.lists(st.integers(0, 3), min_size=rows.shape[1], max_size=rows.shape[1]),
                min_size=rows.shape[0],
                max_size=rows.shape[0],
            )
        ),
        dtype=np.int32,
    )
    check(rows, Structure(from_existing=True), rules, existing)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    start=pattern,
    end=pattern,
    token_type=token_type,
)
def test_between_on_long_rows_with_many_turns(data, start, end, token_type):
    """Chains of many spans per article exercise the pointer jumping."""
    rows = data.draw(blocks(max_rows=3, max_len=80))
    rule = Rule("between", token_type, tokens=start, end=end)
    check(rows, Structure(sep=(5,)), [rule])


# --- the document's examples ------------------------------------------------------------------------

SEP, PAD, ATG = 2, 69, 10


@pytest.mark.parametrize(
    ("row", "rule", "expected"),
    [
        (EXAMPLE1_IDS, Rule("until", TokenType.PROMPT, tokens=(ATG,)), EXAMPLE1_TYPES),
        (EXAMPLE1_IDS, Rule("span", TokenType.PROMPT, start=2, stop=4), EXAMPLE1_ALT_TYPES),
        (EXAMPLE2_IDS, Rule("until", TokenType.PROMPT, tokens=(ATG,)), EXAMPLE2_TYPES),
    ],
)
def test_document_examples(row, rule, expected):
    result = apply_rules(np.array([row]), Structure(sep=(SEP,), pad=PAD), [rule])
    assert result.types.tolist() == [expected]


def test_pad_equal_to_sep_keeps_one_separator():
    rows = np.array([[9, 5, 2, 2, 2], [2, 2, 2, 2, 2], [9, 2, 5, 2, 2]])
    result = apply_rules(rows, Structure(sep=(2,), pad=2), [])
    assert result.types.tolist() == [[1, 1, 3, 2, 2], [2, 2, 2, 2, 2], [1, 3, 1, 3, 2]]


def test_patterns_never_straddle_a_separator():
    rows = np.array([[9, 5, 2, 6, 10]])
    rule = Rule("until", TokenType.PROMPT, tokens=(5, 6))
    result = apply_rules(rows, Structure(sep=(2,)), [rule])
    assert result.types.tolist() == [[1, 1, 3, 1, 1]]
    assert result.matched == [0]


def test_multi_turn_chat_between():
    user, assistant, eos = 1, 2, 0
    row = [user, 7, 8, assistant, 9, 9, user, 7, assistant, 9, eos, user, 7]
    rule = Rule("between", TokenType.PROMPT, tokens=(user,), end=(assistant,))
    result = apply_rules(np.array([row]), Structure(sep=(eos,)), [rule])
    assert result.types.tolist() == [[0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 3, 0, 0]]
    assert result.matched == [2]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=blocks(max_rows=12),
    structure=structures(),
    rules=st.lists(rule_strategy, max_size=4),
    part=st.integers(1, 40),
)
def test_parts_of_a_block_add_up(rows, structure, rules, part):
    """A block is processed in parts of rows; counts and first rows must merge across them."""
    saved = rules_engine.PART_TOKENS
    rules_engine.PART_TOKENS = part
    try:
        check(rows, structure, rules)
    finally:
        rules_engine.PART_TOKENS = saved


def test_default_padding_is_not_structure():
    """--default padding types the bodies, but only --sep/--pad make separators and padding."""
    rows = np.array([[9, 5, 6, 10, 7, 8, 2, 69, 69]])
    rule = Rule("until", TokenType.COMPLETION, tokens=(10,))
    result = apply_rules(rows, Structure(sep=(2,), pad=69, default=TokenType.PADDING), [rule])
    assert result.types.tolist() == [[1, 1, 1, 2, 2, 2, 3, 2, 2]]
    assert result.articles == 1


def test_empty_rows():
    result = apply_rules(np.zeros((0, 4), dtype=np.int32), Structure(sep=(2,)), [])
    assert result.types.shape == (0, 4)
    assert result.articles == 0


P_, C_ = TokenType.PROMPT, TokenType.COMPLETION


@pytest.mark.parametrize(
    ("row", "structure", "rule", "expected"),
    [
        # Overlapping STARTs: the second START inside the first span is skipped.
        ([1, 1, 1, 4, 1, 1], Structure(), Rule("between", P_, tokens=(1, 1), end=(4,)), [0] * 6),
        # An END overlapping its START does not close it; the next one does.
        (
            [1, 2, 3, 5, 2, 3, 5],
            Structure(),
            Rule("between", P_, tokens=(1, 2), end=(2, 3)),
            [0, 0, 0, 0, 0, 0, 1],
        ),
        # START == END: from one to the next, then resume after it.
        (
            [7, 1, 7, 7, 1, 7, 1],
            Structure(),
            Rule("between", P_, tokens=(7,), end=(7,)),
            [0, 0, 0, 0, 0, 0, 1],
        ),
        # Overlapping occurrences of an until pattern: the first one counts.
        ([5, 1, 1, 1, 5], Structure(), Rule("through", P_, tokens=(1, 1)), [0, 0, 0, 1, 1]),
        # A pattern at the very end of the body, right before padding.
        ([9, 5, 8, 6, 6], Structure(pad=6), Rule("through", P_, tokens=(5, 8)), [0, 0, 0, 2, 2]),
        # A pattern running into padding does not match.
        ([9, 5, 8, 6, 6], Structure(pad=6), Rule("until", P_, tokens=(8, 6)), [1, 1, 1, 2, 2]),
        # A pattern across a separator does not match; each article has its own first occurrence.
        (
            [9, 5, 2, 8, 9, 5],
            Structure(sep=(2,)),
            Rule("until", P_, tokens=(5, 2)),
            [1, 1, 3, 1, 1, 1],
        ),
        (
            [9, 5, 2, 8, 9, 5],
            Structure(sep=(2,)),
            Rule("until", P_, tokens=(9,)),
            [1, 1, 3, 0, 1, 1],
        ),
        # Spans count from each article's body, negatives from its end.
        (
            [1, 2, 3, 0, 4, 5, 0, 0],
            Structure(sep=(0,), pad=0),
            Rule("span", P_, start=-1),
            [1, 1, 0, 3, 1, 0, 3, 2],
        ),
        # sep == pad: the first token of the end run closes the article, the rest is padding.
        (
            [4, 0, 4, 0, 0, 0],
            Structure(sep=(0,), pad=0),
            Rule("span", P_, start=0, stop=1),
            [0, 3, 0, 3, 2, 2],
        ),
    ],
)
def test_edge_cases(row, structure, rule, expected):
    result = apply_rules(np.array([row]), structure, [rule])
    assert result.types.tolist() == [expected]
    check(np.array([row]), structure, [rule])
