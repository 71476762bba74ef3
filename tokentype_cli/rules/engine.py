"""The vectorised rule engine: token types for a whole block of rows at once.

The block's article bodies are gathered into one flat array (row-major, separators and padding
left out) with an article index per token; every rule is then a handful of numpy passes over that
array: sliding comparisons find pattern occurrences, per-article first occurrences come from the
sorted order, and `between` chains its spans by pointer jumping. No Python loop runs per token,
per row or per occurrence. The semantics are stated in rules.py.

Text rules decode the part's bodies once (rules_text.py); finding the text is the `re` module's
work, per part for plain text and per article for regular expressions, and the character spans
it returns map back to token ranges by binary search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tokentype_cli.loss import N_TYPES, type_counts
from tokentype_cli.rules.parse import Rule, Structure
from tokentype_cli.rules.text import Decoded, TokenTexts, find_text
from tokentype_cli.schema.names import PADDING, SEPARATOR

# Rows are processed in parts of about this many tokens (see apply_rules).
PART_TOKENS = 1 << 17


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
    seams: list[int]  # per rule: tokens a text rule's selection cuts (partly inside)
    first_seam: list[tuple[int, int, int] | None]  # per rule: (row in block, column, id) of one


@dataclass
class Hits:
    """What one rule selects in a part: per body token and per article slot."""

    mask: np.ndarray  # body tokens it sets
    matched: np.ndarray  # article slots it matched
    seams: np.ndarray  # body tokens partly inside a text rule's selection (sorted, unique)
    marked: tuple[np.ndarray, np.ndarray]  # body token ranges [lo, hi) --explain marks


def structure_masks(ids: np.ndarray, structure: Structure) -> tuple[np.ndarray, np.ndarray]:
    """(separator, padding) masks of a block: every sep token, and the pad run ending each row."""
    seq_len = ids.shape[1]
    if not structure.sep:
        is_sep = np.zeros(ids.shape, dtype=bool)
    elif len(structure.sep) == 1:
        is_sep = ids == structure.sep[0]
    else:
        is_sep = np.isin(ids, structure.sep)
    is_pad = np.zeros(ids.shape, dtype=bool)
    if structure.pad is None or not seq_len:
        return is_sep, is_pad
    # Start of the trailing pad run: one past the last other token (0 for a row of padding).
    not_pad = ids != structure.pad
    run_start = np.where(not_pad.any(axis=1), seq_len - np.argmax(not_pad[:, ::-1], axis=1), 0)
    padded = np.flatnonzero(run_start < seq_len)
    if not padded.size:
        return is_sep, is_pad
    is_pad[padded] = np.arange(seq_len)[None, :] >= run_start[padded, None]
    if structure.pad in structure.sep:
        is_sep[is_pad] = False
        closing = padded[run_start[padded] > 0]
        is_pad[closing, run_start[closing]] = False
        is_sep[closing, run_start[closing]] = True
    return is_sep, is_pad


class _Bodies:
    """Every article body of a block, concatenated in row-major order.

    Articles are numbered by the boundaries before them in the block (each row start and each
    token after a separator), so empty articles have numbers too and per-article arrays are
    indexed by that number; `lengths` is 0 for them.
    """

    def __init__(self, ids: np.ndarray, is_sep: np.ndarray, is_structure: np.ndarray) -> None:
        seq_len = ids.shape[1]
        self.seq_len = seq_len
        self._ids = ids
        self.index = np.flatnonzero(~is_structure)
        boundary = np.empty(ids.shape, dtype=bool)
        boundary[:, 0] = True
        boundary[:, 1:] = is_sep[:, :-1]
        numbers = np.cumsum(boundary.ravel(), dtype=np.int32)
        self.n_slots = int(numbers[-1]) if numbers.size else 0
        self.article = numbers[self.index] - 1
        size = self.index.size
        first = np.empty(size, dtype=bool)
        if size:
            first[0] = True
            np.not_equal(self.article[1:], self.article[:-1], out=first[1:])
        body_starts = np.flatnonzero(first)
        present = self.article[body_starts]
        self.starts = np.zeros(self.n_slots, dtype=np.int64)
        self.starts[present] = body_starts
        self.lengths = np.zeros(self.n_slots, dtype=np.int64)
        self.lengths[present] = np.diff(np.append(body_starts, size))
        self.count = body_starts.size
        self.size = size
        self._body_ids: np.ndarray | None = None

    @property
    def ids(self) -> np.ndarray:
        if self._body_ids is None:
            self._body_ids = self._ids.ravel()[self.index]
        return self._body_ids

    def row_of(self, article: int) -> int:
        return int(self.index[self.starts[article]] // self.seq_len)


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


def _ranges(b: _Bodies, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Mask of the flat body ranges low[i] <= p < high[i], given sorted and disjoint."""
    keep = high > low
    low, high = low[keep], high[keep]
    # Alternating runs out, in, out, ..., out; np.repeat fills them far faster than a cumsum.
    bounds = np.empty(2 * low.size + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, b.size
    bounds[1:-1:2], bounds[2:-1:2] = low, high
    inside = np.zeros(2 * low.size + 1, dtype=bool)
    inside[1::2] = True
    return np.repeat(inside, np.diff(bounds))


_NONE = np.empty(0, dtype=np.int64)


def _span(b: _Bodies, rule: Rule) -> Hits:
    lengths = b.lengths

    def bound(value: int | None, empty: np.ndarray) -> np.ndarray:
        if value is None:
            return empty
        # No body is longer than a row: a bigger bound means what the row length means (as in
        # Python slices), and clamping keeps it within int64.
        value = max(-b.seq_len, min(value, b.seq_len))
        if value >= 0:
            return np.minimum(value, lengths)
        return np.maximum(lengths + value, 0)

    start = bound(rule.start, np.zeros_like(lengths))
    stop = bound(rule.stop, lengths)
    low, high = b.starts + start, b.starts + stop
    return Hits(_ranges(b, low, high), stop > start, _NONE, (low, high))


def _token(b: _Bodies, rule: Rule) -> Hits:
    mask = b.ids == rule.tokens[0] if len(rule.tokens) == 1 else np.isin(b.ids, rule.tokens)
    matched = np.zeros(b.n_slots, dtype=bool)
    matched[b.article[mask]] = True
    found = np.flatnonzero(mask)
    return Hits(mask, matched, _NONE, (found, found + 1))


def _until(b: _Bodies, rule: Rule, through: bool) -> Hits:
    found = find_pattern(b, rule.tokens)
    articles = b.article[found]
    first = np.ones(found.size, dtype=bool)
    np.not_equal(articles[1:], articles[:-1], out=first[1:])
    articles, found = articles[first], found[first]
    after = found + len(rule.tokens)
    stop = after if through else found
    matched = np.zeros(b.n_slots, dtype=bool)
    matched[articles] = True
    return Hits(_ranges(b, b.starts[articles], stop), matched, _NONE, (found, after))


def _between(b: _Bodies, rule: Rule) -> Hits:
    begins = find_pattern(b, rule.tokens)
    ends = find_pattern(b, rule.end)
    matched = np.zeros(b.n_slots, dtype=bool)
    if not begins.size:
        return Hits(np.zeros(b.size, dtype=bool), matched, _NONE, (_NONE, _NONE))
    article = b.article[begins]
    matched[article] = True
    start, stop = chain_spans(
        begins,
        begins + len(rule.tokens),
        article,
        ends,
        ends + len(rule.end),
        b.article[ends],
        b.starts + b.lengths,
    )
    return Hits(_ranges(b, start, stop), matched, _NONE, (start, stop))


# --- text rules ----------------------------------------------------------------------------------


def _indices(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Every index of the ranges [low, high) (empty ranges allowed), concatenated."""
    size = np.maximum(high - low, 0)
    total = int(size.sum())
    if not total:
        return _NONE
    begins = np.cumsum(size) - size
    return np.repeat(low - begins, size) + np.arange(total, dtype=np.int64)


def _seams(d: Decoded, a: np.ndarray, z: np.ndarray, *, from_article_start: bool) -> np.ndarray:
    """Body tokens partly inside a selected character span [a, z) (sorted, unique).

    Only edges can cut a token; a span from its article's start has one edge, and an empty span
    has no character for a token to be partly in.
    """
    keep = z > a
    a, z = a[keep], z[keep]
    parts = []
    for edge in (z,) if from_article_start else (a, z):
        if edge.size:
            # Tokens with a character before the edge and one at or after it.
            lo, _ = d.inside(edge, edge)
            parts.append(_indices(lo, np.searchsorted(d.start, edge, side="left")))
    return np.unique(np.concatenate(parts)) if parts else _NONE


def _disjoint(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token ranges of disjoint character spans may share a split token: start after the last."""
    if low.size > 1:
        # Against the furthest range so far: an empty range ends before the ones around it.
        low = low.copy()
        low[1:] = np.maximum(low[1:], np.maximum.accumulate(high)[:-1])
    return low, high


def _text(b: _Bodies, d: Decoded, rule: Rule) -> Hits:
    """A text rule: find the text, select characters, take the tokens they cover."""
    slots = b.article[d.article_first]  # article slot of each decoded article
    matched = np.zeros(b.n_slots, dtype=bool)
    if rule.kind == "between":
        begin_a, begin_z, begin_article = find_text(rule.find, d, first_only=False)
        end_a, end_z, end_article = find_text(rule.find_end, d, first_only=False)
        matched[slots[begin_article]] = True
        if not begin_a.size:
            return Hits(np.zeros(b.size, dtype=bool), matched, _NONE, (_NONE, _NONE))
        a, z = chain_spans(
            begin_a, begin_z, begin_article, end_a, end_z, end_article, d.article_end
        )
        low, high = d.inside(a, z)
        seams = _seams(d, a, z, from_article_start=False)
        marked = (low, high)
        low, high = _disjoint(low, high)
    else:
        first_only = rule.kind != "token"
        a, z, article = find_text(rule.find, d, first_only=first_only)
        matched[slots[article]] = True
        marked = d.inside(a, z)
        if rule.kind == "token":
            low, high = _disjoint(*marked)
            seams = _seams(d, a, z, from_article_start=False)
        elif rule.kind == "until":
            # Partial tokens stay outside: up to the last token ending by the match's start.
            low = d.article_first[article]
            high = np.maximum(d.exact(d.article_start[article], a)[1], low)
            seams = _seams(d, d.article_start[article], a, from_article_start=True)
        else:
            # Partial tokens count as inside: through the last token starting before its end.
            low = d.article_first[article]
            high = np.maximum(d.inside(d.article_start[article], z)[1], low)
            seams = _seams(d, d.article_start[article], z, from_article_start=True)
    return Hits(_ranges(b, low, high), matched, seams, marked)


def chain_spans(
    begin_start: np.ndarray,
    begin_stop: np.ndarray,
    begin_article: np.ndarray,
    end_start: np.ndarray,
    end_stop: np.ndarray,
    end_article: np.ndarray,
    article_end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The (start, stop) spans `between` selects, given every START and END occurrence.

    Occurrences are sorted by start, positions are in one coordinate space (flat body tokens, or
    characters of the decoded text) and `article_end[a]` is where article a ends in it. From each
    article's first START the span runs through the first END that starts once that START is over
    (else to the end of the article); the next span begins at the first START at or after the
    stop. Shared by token and text rules so both chain alike.
    """
    count = begin_start.size
    article = begin_article
    # Where the span from each START would end: after the first END starting once START is over,
    # else at the end of the body.
    following = np.searchsorted(end_start, begin_stop)
    has_end = following < end_start.size
    has_end[has_end] = end_article[following[has_end]] == article[has_end]
    body_end = article_end[article]
    if end_start.size:
        stop = np.where(has_end, end_stop[np.minimum(following, end_start.size - 1)], body_end)
    else:
        stop = body_end
    # The START where scanning resumes; `count` marks "none left in this article". A START is
    # never its own successor (an empty text match stops where it starts), so the chains end.
    after = np.searchsorted(begin_start, np.maximum(stop, begin_start + 1))
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
    return begin_start[chosen], stop[chosen]


def apply_rules(
    ids: np.ndarray,
    structure: Structure,
    rules: Sequence[Rule],
    existing: np.ndarray | None = None,
    *,
    texts: TokenTexts | None = None,
    first_row: int = 0,
) -> BlockResult:
    """Types for a (rows, seq_len) block of input_ids under `structure` and `rules`.

    Text rules decode the bodies through `texts`; `first_row` is the block's first row in the
    file, for messages (the result's rows count from the block's start).
    """
    ids = np.asarray(ids)
    if structure.from_existing and existing is None:
        raise ValueError("from_existing needs the existing token_type_ids")
    if texts is None and any(rule.uses_text for rule in rules):
        raise ValueError("text rules need the tokenizer's texts")
    rows, seq_len = ids.shape
    result = BlockResult(
        types=np.empty(ids.shape, dtype=np.int32),
        before=np.zeros(N_TYPES, dtype=np.int64),
        after=np.zeros(N_TYPES, dtype=np.int64),
        articles=0,
        matched=[0] * len(rules),
        tokens_set=[0] * len(rules),
        first_unmatched_row=[None] * len(rules),
        seams=[0] * len(rules),
        first_seam=[None] * len(rules),
    )
    # Parts of about PART_TOKENS keep the temporaries in cache and let malloc reuse their memory
    # (one pass over a 1M-token block spent more time in page faults than in numpy).
    step = max(1, PART_TOKENS // max(1, seq_len))
    for row in range(0, rows, step):
        part = slice(row, row + step)
        _apply_part(
            ids[part],
            structure,
            rules,
            None if existing is None else existing[part],
            result,
            row,
            texts,
            first_row,
        )
    return result


def _bodies(
    ids: np.ndarray, structure: Structure, existing: np.ndarray | None, out: np.ndarray
) -> tuple[_Bodies, np.ndarray]:
    """Fill `out` with the structure's types; the bodies, and the tokens per type so far."""
    if structure.from_existing:
        out[...] = existing
        is_sep = out == SEPARATOR
        is_structure = is_sep | (out == PADDING)
        before = type_counts(out)[:N_TYPES]
    else:
        is_sep, is_pad = structure_masks(ids, structure)
        is_structure = is_sep | is_pad
        out.fill(int(structure.default))
        out[is_sep] = SEPARATOR
        out[is_pad] = PADDING
        seps, pads = int(np.count_nonzero(is_sep)), int(np.count_nonzero(is_pad))
        before = np.zeros(N_TYPES, dtype=np.int64)
        before[int(structure.default)] += out.size - seps - pads
        before[SEPARATOR] += seps
        before[PADDING] += pads
    return _Bodies(ids, is_sep, is_structure), before


def _evaluate(b: _Bodies, rule: Rule, decoded: Decoded | None) -> Hits:
    if rule.uses_text:
        assert decoded is not None
        return _text(b, decoded, rule)
    if rule.kind == "span":
        return _span(b, rule)
    if rule.kind == "token":
        return _token(b, rule)
    if rule.kind in ("until", "through"):
        return _until(b, rule, through=rule.kind == "through")
    return _between(b, rule)


def _decode(b: _Bodies, texts: TokenTexts, first_row: int) -> Decoded:
    return texts.decode(b.ids, b.article, lambda t: first_row + int(b.index[t] // b.seq_len))


def _apply_part(
    ids: np.ndarray,
    structure: Structure,
    rules: Sequence[Rule],
    existing: np.ndarray | None,
    result: BlockResult,
    first_row: int,
    texts: TokenTexts | None,
    file_row: int,
) -> None:
    out = result.types[first_row : first_row + len(ids)]
    if not out.size:
        return
    b, before = _bodies(ids, structure, existing, out)
    result.before += before
    result.articles += b.count
    if not rules:
        result.after += type_counts(out)[:N_TYPES]
        return
    decoded = None
    if texts is not None and any(rule.uses_text for rule in rules):
        decoded = _decode(b, texts, file_row + first_row)
    body_types = out.ravel()[b.index]
    for number, rule in enumerate(rules):
        hits = _evaluate(b, rule, decoded)
        body_types[hits.mask] = int(rule.type)
        matched = int(np.count_nonzero(hits.matched))
        result.matched[number] += matched
        result.tokens_set[number] += int(np.count_nonzero(hits.mask))
        if matched < b.count and result.first_unmatched_row[number] is None:
            missing = int(np.flatnonzero(~hits.matched & (b.lengths > 0))[0])
            result.first_unmatched_row[number] = first_row + b.row_of(missing)
        if hits.seams.size:
            result.seams[number] += int(hits.seams.size)
            if result.first_seam[number] is None:
                flat = int(b.index[hits.seams[0]])
                row, column = divmod(flat, b.seq_len)
                result.first_seam[number] = (first_row + row, column, int(b.ids[hits.seams[0]]))
    out.ravel()[b.index] = body_types
    result.after += type_counts(out)[:N_TYPES]


@dataclass
class Explained:
    """Where one rule matches in a block: what --explain shows."""

    types: np.ndarray  # (rows, seq_len): the structure's types (the caller applies rules)
    body: np.ndarray  # flat (row * seq_len + column) position of every body token
    article: np.ndarray  # article slot of every body token
    marked: tuple[np.ndarray, np.ndarray]  # body token ranges [lo, hi) the rule matched
    seams: np.ndarray  # body tokens partly inside the selection
    matched: np.ndarray  # per article slot


def explain_rule(
    ids: np.ndarray,
    structure: Structure,
    rule: Rule,
    existing: np.ndarray | None = None,
    *,
    texts: TokenTexts | None = None,
) -> Explained:
    """Where `rule` matches in a small block of rows (no parts: --explain reads a few rows)."""
    ids = np.asarray(ids)
    types = np.empty(ids.shape, dtype=np.int32)
    b, _ = _bodies(ids, structure, existing, types)
    decoded = _decode(b, texts, 0) if rule.uses_text and texts is not None else None
    hits = _evaluate(b, rule, decoded)
    return Explained(types, b.index, b.article, hits.marked, hits.seams, hits.matched)
