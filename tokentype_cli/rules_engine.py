"""The vectorised rule engine: token types for a whole block of rows at once.

The block's article bodies are gathered into one flat array (row-major, separators and padding
left out) with an article index per token; every rule is then a handful of numpy passes over that
array: sliding comparisons find pattern occurrences, per-article first occurrences come from the
sorted order, and `between` chains its spans by pointer jumping. No Python loop runs per token,
per row or per occurrence. The semantics are stated in rules.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tokentype_cli.rules import Rule, Structure
from tokentype_cli.schema import MAX_TOKEN_TYPE, TokenType

N_TYPES = int(MAX_TOKEN_TYPE) + 1


@dataclass
class BlockResult:
    """Types of one block and what each rule did in it."""

    types: np.ndarray  # (rows, seq_len) int32
    before: np.ndarray  # tokens per type before the rules run, length 4
    after: np.ndarray  # tokens per type after
    articles: int  # articles with a non-empty body
    matched: list[int]  # per rule: articles in which it selected or found something
    tokens_set: list[int]  # per rule: tokens it set
    first_unmatched_row: list[int | None]  # per rule: first row (in the block) it did not match


@dataclass
class _Bodies:
    """Every article body of a block, concatenated."""

    index: np.ndarray  # flat (row-major) index in the block of each body token
    ids: np.ndarray  # token ids
    article: np.ndarray  # article number (0..K-1) of each token, non-decreasing
    position: np.ndarray  # position of each token in its body
    starts: np.ndarray  # flat body index where each article starts
    lengths: np.ndarray  # body length of each article
    rows: np.ndarray  # row (in the block) of each article


def structure_types(ids: np.ndarray, structure: Structure) -> np.ndarray:
    """Separators, end-of-row padding, and the default everywhere else."""
    seq_len = ids.shape[1]
    types = np.full(ids.shape, int(structure.default), dtype=np.int32)
    if structure.sep:
        is_sep = ids == structure.sep[0] if len(structure.sep) == 1 else np.isin(ids, structure.sep)
        types[is_sep] = TokenType.SEPARATOR
    if structure.pad is not None and seq_len:
        not_pad = ids != structure.pad
        # Length of the trailing run of pad: index of the last non-pad token from the end.
        any_other = not_pad.any(axis=1)
        last_other = seq_len - 1 - np.argmax(not_pad[:, ::-1], axis=1)
        run_start = np.where(any_other, last_other + 1, 0)
        in_run = np.arange(seq_len)[None, :] >= run_start[:, None]
        types[in_run] = TokenType.PADDING
        if structure.pad in structure.sep:
            closing = np.flatnonzero((run_start > 0) & (run_start < seq_len))
            types[closing, run_start[closing]] = TokenType.SEPARATOR
    return types


def _bodies(ids: np.ndarray, types: np.ndarray) -> _Bodies:
    seq_len = ids.shape[1]
    is_sep = types == TokenType.SEPARATOR
    body = ~(is_sep | (types == TokenType.PADDING))
    index = np.flatnonzero(body)
    # A separator closes its article: the article number of a token is the separators before it.
    article_in_row = np.cumsum(is_sep, axis=1, dtype=np.int64)
    key = article_in_row.ravel()[index] + (index // seq_len) * (seq_len + 1)
    first = np.empty(index.size, dtype=bool)
    if index.size:
        first[0] = True
        np.not_equal(key[1:], key[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    article = np.cumsum(first, dtype=np.int64) - 1
    lengths = np.diff(np.append(starts, index.size))
    position = np.arange(index.size, dtype=np.int64) - starts[article]
    return _Bodies(
        index=index,
        ids=ids.ravel()[index],
        article=article,
        position=position,
        starts=starts,
        lengths=lengths,
        rows=index[starts] // seq_len if seq_len else starts,
    )


def find_pattern(b: _Bodies, pattern: Sequence[int]) -> np.ndarray:
    """Sorted flat body indexes where `pattern` starts, all of it inside one article."""
    n, width = b.ids.size, len(pattern)
    if n < width:
        return np.empty(0, dtype=np.int64)
    found = np.flatnonzero(b.ids[: n - width + 1] == pattern[0])
    for offset in range(1, width):
        found = found[b.ids[found + offset] == pattern[offset]]
    if width > 1:
        found = found[b.article[found + width - 1] == b.article[found]]
    return found


def _first_per_article(b: _Bodies, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(articles, body position of their first occurrence) for sorted occurrences."""
    articles = b.article[found]
    first = np.ones(found.size, dtype=bool)
    np.not_equal(articles[1:], articles[:-1], out=first[1:])
    return articles[first], b.position[found[first]]


def _span(b: _Bodies, rule: Rule) -> tuple[np.ndarray, np.ndarray]:
    lengths = b.lengths

    def bound(value: int | None, empty: np.ndarray) -> np.ndarray:
        if value is None:
            return empty
        if value >= 0:
            return np.minimum(value, lengths)
        return np.maximum(lengths + value, 0)

    start = bound(rule.start, np.zeros_like(lengths))
    stop = bound(rule.stop, lengths)
    mask = (b.position >= start[b.article]) & (b.position < stop[b.article])
    return mask, stop > start


def _token(b: _Bodies, rule: Rule) -> tuple[np.ndarray, np.ndarray]:
    mask = b.ids == rule.tokens[0] if len(rule.tokens) == 1 else np.isin(b.ids, rule.tokens)
    matched = np.bincount(b.article[mask], minlength=b.lengths.size) > 0
    return mask, matched


def _until(b: _Bodies, rule: Rule, through: bool) -> tuple[np.ndarray, np.ndarray]:
    articles, first = _first_per_article(b, find_pattern(b, rule.tokens))
    limit = np.zeros(b.lengths.size, dtype=np.int64)
    limit[articles] = first + (len(rule.tokens) if through else 0)
    matched = np.zeros(b.lengths.size, dtype=bool)
    matched[articles] = True
    return b.position < limit[b.article], matched


def _between(b: _Bodies, rule: Rule) -> tuple[np.ndarray, np.ndarray]:
    n_articles = b.lengths.size
    begins = find_pattern(b, rule.tokens)
    ends = find_pattern(b, rule.end)
    mask = np.zeros(b.ids.size, dtype=bool)
    matched = np.zeros(n_articles, dtype=bool)
    count = begins.size
    if not count:
        return mask, matched
    article = b.article[begins]
    matched[article] = True
    # Where the span from each START would end: after the first END starting once START is over,
    # else at the end of the body.
    following = np.searchsorted(ends, begins + len(rule.tokens))
    has_end = following < ends.size
    has_end[has_end] = b.article[ends[following[has_end]]] == article[has_end]
    body_end = b.starts[article] + b.lengths[article]
    if ends.size:
        end_stop = ends[np.minimum(following, ends.size - 1)] + len(rule.end)
        stop = np.where(has_end, end_stop, body_end)
    else:
        stop = body_end
    # The START where scanning resumes; `count` marks "none left in this article".
    after = np.searchsorted(begins, stop)
    same = after < count
    same[same] = article[np.minimum(after[same], count - 1)] == article[same]
    jump = np.append(np.where(same, after, count), count)
    # The chosen STARTs are the chain jump(head), jump(jump(head)), ... from each article's first
    # START. Pointer jumping gives each START's number of steps to the chain's end (`steps`) and
    # the tables jump^(2^k); a START is chosen iff jumping from its article's head by
    # steps[head] - steps[start] lands on it.
    steps = (jump != count).astype(np.int64)
    tables = [jump]
    nxt = jump
    while (nxt[:count] != count).any():
        steps = steps + steps[nxt]
        nxt = nxt[nxt]
        tables.append(nxt)
    head_flag = np.ones(count, dtype=bool)
    np.not_equal(article[1:], article[:-1], out=head_flag[1:])
    heads = np.flatnonzero(head_flag)[np.cumsum(head_flag) - 1]
    distance = steps[heads] - steps[:count]
    node = heads.copy()
    for level, table in enumerate(tables):
        bit = ((distance >> level) & 1).astype(bool)
        if not bit.any():
            continue
        node[bit] = table[node[bit]]
    chosen = (distance >= 0) & (node == np.arange(count))
    # Chosen spans are disjoint and non-empty: mark starts +1, stops -1, and sum.
    edges = np.zeros(b.ids.size + 1, dtype=np.int8)
    edges[begins[chosen]] += 1
    edges[stop[chosen]] -= 1
    mask = np.cumsum(edges[:-1], dtype=np.int8) > 0
    return mask, matched


def apply_rules(
    ids: np.ndarray,
    structure: Structure,
    rules: Sequence[Rule],
    existing: np.ndarray | None = None,
) -> BlockResult:
    """Types for a (rows, seq_len) block of input_ids under `structure` and `rules`."""
    ids = np.asarray(ids)
    if structure.from_existing:
        if existing is None:
            raise ValueError("from_existing needs the existing token_type_ids")
        types = np.array(existing, dtype=np.int32)
    else:
        types = structure_types(ids, structure)
    before = np.bincount(types.ravel(), minlength=N_TYPES)
    b = _bodies(ids, types)
    body_types = types.ravel()[b.index]
    matched_counts: list[int] = []
    tokens_set: list[int] = []
    first_unmatched: list[int | None] = []
    for rule in rules:
        if rule.kind == "span":
            mask, matched = _span(b, rule)
        elif rule.kind == "token":
            mask, matched = _token(b, rule)
        elif rule.kind in ("until", "through"):
            mask, matched = _until(b, rule, through=rule.kind == "through")
        else:
            mask, matched = _between(b, rule)
        body_types[mask] = int(rule.type)
        matched_counts.append(int(matched.sum()))
        tokens_set.append(int(np.count_nonzero(mask)))
        missing = np.flatnonzero(~matched)
        first_unmatched.append(int(b.rows[missing[0]]) if missing.size else None)
    if rules:
        types.ravel()[b.index] = body_types
    return BlockResult(
        types=types,
        before=before,
        after=np.bincount(types.ravel(), minlength=N_TYPES),
        articles=int(b.lengths.size),
        matched=matched_counts,
        tokens_set=tokens_set,
        first_unmatched_row=first_unmatched,
    )
