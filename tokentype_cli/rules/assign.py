"""`assign-types`: stream a shard's rows through the rule engine and write token_type_ids."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tokentype_cli.errors import DatasetExistsError, RuleError, ShardError
from tokentype_cli.loss import as_small_types, type_counts, type_shares
from tokentype_cli.rules.engine import N_TYPES, BlockResult, apply_rules, explain_rule
from tokentype_cli.rules.parse import PATTERN_KINDS, Rule, Structure
from tokentype_cli.rules.text import TokenTexts
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_IDS, TOKEN_TYPE_NAMES, Provenance
from tokentype_cli.schema.read import iter_row_chunks, open_shard, read_errors, require_rows_dataset
from tokentype_cli.schema.write import (
    rewrite_target,
    write_dataset_atomically,
)
from tokentype_cli.tokenizer_loader import LoadedTokenizer


@dataclass
class RuleReport:
    """What one rule did over the whole file."""

    rule: Rule
    matched: int = 0
    tokens_set: int = 0
    first_unmatched_row: int | None = None
    seams: int = 0  # tokens a text rule's selection cut
    first_seam: tuple[int, int, int] | None = None  # (row, column, id)


@dataclass
class AssignReport:
    """What a run computed (and wrote, unless a dry run)."""

    path: Path
    output: Path | None
    written: bool
    structure: Structure
    rows: int = 0
    seq_len: int = 0
    articles: int = 0
    rules: list[RuleReport] = field(default_factory=list)
    before: np.ndarray = field(default_factory=lambda: np.zeros(N_TYPES, dtype=np.int64))
    after: np.ndarray = field(default_factory=lambda: np.zeros(N_TYPES, dtype=np.int64))
    # The file's own token_type_ids by type (None when it has none): with --from-existing the
    # same as `before`, else what --overwrite replaces.
    existing: np.ndarray | None = None
    preview_ids: np.ndarray | None = None
    preview_types: np.ndarray | None = None  # the first rows, from row 0

    @property
    def tokens(self) -> int:
        return self.rows * self.seq_len

    def add_block(self, result: BlockResult, first_row: int) -> None:
        """Add one block's counts; keep each rule's first row without a match."""
        self.articles += result.articles
        self.before += result.before
        self.after += result.after
        for rule_report, matched, tokens_set, unmatched, seams, seam in zip(
            self.rules,
            result.matched,
            result.tokens_set,
            result.first_unmatched_row,
            result.seams,
            result.first_seam,
            strict=True,
        ):
            rule_report.matched += matched
            rule_report.tokens_set += tokens_set
            if unmatched is not None and rule_report.first_unmatched_row is None:
                rule_report.first_unmatched_row = first_row + unmatched
            rule_report.seams += seams
            if seam is not None and rule_report.first_seam is None:
                rule_report.first_seam = (first_row + seam[0], seam[1], seam[2])

    def as_dict(self) -> dict[str, object]:
        structure = self.structure
        return {
            "path": str(self.path),
            "output": str(self.output or self.path),
            "written": self.written,
            "rows": self.rows,
            "seq_len": self.seq_len,
            "tokens": self.tokens,
            "articles": self.articles,
            "from_existing": structure.from_existing,
            "sep": list(structure.sep),
            "pad": structure.pad,
            "default": None if structure.from_existing else TOKEN_TYPE_NAMES[structure.default],
            "rules": [
                {
                    "rule": report.rule.describe(),
                    "where": report.rule.where,
                    "articles_matched": report.matched,
                    "articles_not_matched": self.articles - report.matched,
                    "tokens_set": report.tokens_set,
                    "first_unmatched_row": report.first_unmatched_row,
                    **(
                        {"seams": report.seams, "first_seam_row": _row(report.first_seam)}
                        if report.rule.uses_text
                        else {}
                    ),
                }
                for report in self.rules
            ],
            "token_types": type_shares(self.after),
            "token_types_existing": None if self.existing is None else type_shares(self.existing),
            # With --from-existing the rules start from the existing types, not a structure.
            "token_types_structure": None if structure.from_existing else type_shares(self.before),
        }


def _row(seam: tuple[int, int, int] | None) -> int | None:
    return None if seam is None else seam[0]


def assign_types(
    path: str | os.PathLike,
    structure: Structure,
    rules: Sequence[Rule],
    *,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    require_match: bool = False,
    require_exact: bool = False,
    dry_run: bool = False,
    preview_rows: int = 0,
    provenance: Provenance | None = None,
    progress: Callable[[int], None] | None = None,
    allow_external: bool = False,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
    tokenizer: LoadedTokenizer | None = None,
) -> AssignReport:
    """Compute token_type_ids for every row of `path` and write them (in place, or to `output`).

    In place, the file is replaced only when the whole computation succeeds; an error (including
    --require-match and --require-exact) or an interruption leaves it as it was, and a second
    writer is refused for the whole run. `output` may be neither `path` nor any of `inputs`
    (description -> path: the rules file, the tokenizer). Text rules decode the articles with
    `tokenizer`.
    """
    path = Path(path)
    report = AssignReport(
        path=path,
        output=None if output is None else Path(output),
        written=False,
        structure=structure,
        rules=[RuleReport(rule) for rule in rules],
    )
    texts = _texts(rules, tokenizer)
    checks = _Checks(require_match, require_exact)
    if dry_run:
        count_existing = _survey(path, structure, overwrite, dry_run, report, allow_external)
        # The report fills in as the blocks are computed, so a dry run still goes through them.
        for _ in _blocks(
            path, structure, rules, report, checks, preview_rows, progress, texts,
            count_existing, allow_external,
        ):  # fmt: skip
            pass
        return report
    with rewrite_target(path, output, inputs or {}):
        count_existing = _survey(path, structure, overwrite, dry_run, report, allow_external)
        # The report fills in as the blocks are computed.
        blocks = _blocks(
            path, structure, rules, report, checks, preview_rows, progress, texts,
            count_existing, allow_external,
        )  # fmt: skip
        write_dataset_atomically(
            path,
            TOKEN_TYPE_IDS,
            blocks,
            output=output,
            overwrite=True,  # refused above unless allowed, with a message naming --from-existing too
            provenance=provenance,
            allow_external=allow_external,
            inputs=inputs,
        )
    report.written = True
    return report


def _survey(
    path: Path,
    structure: Structure,
    overwrite: bool,
    dry_run: bool,
    report: AssignReport,
    allow_external: bool,
) -> bool:
    """Check the shard can be typed as asked; fill in its size. Return whether the file's own
    types are to be counted for the report (they are replaced)."""
    with open_shard(path, allow_external=allow_external) as shard, read_errors(path):
        input_ids = require_rows_dataset(shard, INPUT_IDS)
        report.rows, report.seq_len = input_ids.shape
        if report.seq_len == 0:
            raise ShardError(
                f"{path}: '{INPUT_IDS}' has rows of length 0; there is nothing to type"
            )
        has_types = TOKEN_TYPE_IDS in shard
        count_existing = False
        if structure.from_existing:
            if not has_types:
                raise ShardError(
                    f"{path}: no dataset '{TOKEN_TYPE_IDS}' to start from; drop --from-existing"
                )
            existing = require_rows_dataset(shard, TOKEN_TYPE_IDS)
            if existing.shape != input_ids.shape:
                raise ShardError(
                    f"{path}: '{TOKEN_TYPE_IDS}' has shape {existing.shape} but '{INPUT_IDS}' has"
                    f" {input_ids.shape}; rebuild the types without --from-existing"
                )
        elif has_types and not overwrite and not dry_run:
            raise DatasetExistsError(
                f"{path}: dataset '{TOKEN_TYPE_IDS}' already exists; pass --overwrite to replace it"
                " or --from-existing to start from it"
            )
        elif has_types:
            # The report shows what is replaced; types unlike input_ids cannot be counted by row
            # and are replaced all the same.
            existing = shard[TOKEN_TYPE_IDS]
            count_existing = (
                getattr(existing, "shape", None) == input_ids.shape and existing.dtype.kind in "iu"
            )
    return count_existing


def _texts(rules: Sequence[Rule], tokenizer: LoadedTokenizer | None) -> TokenTexts | None:
    if not any(rule.uses_text for rule in rules):
        return None
    if tokenizer is None:
        raise RuleError("text patterns are matched on the decoded articles; pass --tokenizer")
    return TokenTexts.for_tokenizer(tokenizer)


@dataclass(frozen=True)
class _Checks:
    require_match: bool
    require_exact: bool


def _blocks(
    path: Path,
    structure: Structure,
    rules: Sequence[Rule],
    report: AssignReport,
    checks: _Checks,
    preview_rows: int,
    progress: Callable[[int], None] | None,
    texts: TokenTexts | None,
    count_existing: bool = False,
    allow_external: bool = False,
) -> Iterator[np.ndarray]:
    with open_shard(path, allow_external=allow_external) as shard:
        with read_errors(path):
            datasets = [require_rows_dataset(shard, INPUT_IDS)]
            if structure.from_existing or count_existing:
                datasets.append(require_rows_dataset(shard, TOKEN_TYPE_IDS))
                report.existing = np.zeros(N_TYPES, dtype=np.int64)
        previews: list[tuple[np.ndarray, np.ndarray]] = []
        shown = 0
        for first_row, block in iter_row_chunks(datasets):
            existing = None
            if structure.from_existing:
                existing = _check_existing(path, block[1], first_row)
            elif count_existing:
                report.existing += type_counts(block[1])[:N_TYPES]
            try:
                result = apply_rules(
                    block[0], structure, rules, existing, texts=texts, first_row=first_row
                )
            except RuleError as exc:  # an id text rules cannot decode, named by its row
                raise RuleError(f"{path}: {exc}") from exc
            report.add_block(result, first_row)
            if structure.from_existing:
                report.existing += result.before
            if checks.require_match:
                _require_match(path, report)
            if checks.require_exact:
                _require_exact(path, report, texts)
            if shown < preview_rows:
                take = min(preview_rows - shown, len(result.types))
                previews.append((block[0][:take].copy(), result.types[:take].copy()))
                shown += take
            if progress is not None:
                progress(len(result.types))
            yield result.types
        if previews:
            report.preview_ids = np.concatenate([p[0] for p in previews])
            report.preview_types = np.concatenate([p[1] for p in previews])


def _require_match(path: Path, report: AssignReport) -> None:
    """--require-match: an until/through/between rule that missed an article stops the run."""
    for rule_report in report.rules:
        rule, row = rule_report.rule, rule_report.first_unmatched_row
        if row is not None and rule.kind in PATTERN_KINDS:
            raise RuleError(
                f"{path}: row {row}: rule {rule.describe()!r} ({rule.where}) finds nothing in an"
                " article; nothing was written (drop --require-match to allow this)"
            )


def _require_exact(path: Path, report: AssignReport, texts: TokenTexts | None) -> None:
    """--require-exact: a text rule whose selection cuts a token stops the run."""
    for rule_report in report.rules:
        seam = rule_report.first_seam
        if seam is None:
            continue
        row, column, token = seam
        spelled = "" if texts is None else f" {texts.text_of(token)!r}"
        raise RuleError(
            f"{path}: row {row}: rule {rule_report.rule.describe()!r} ({rule_report.rule.where})"
            f" cuts token {token}{spelled} at column {column}: the text starts or ends inside it;"
            " nothing was written (move the pattern's edge to a token boundary, see --explain,"
            " or drop --require-exact)"
        )


def _check_existing(path: Path, types: np.ndarray, first_row: int) -> np.ndarray:
    """A block of the file's types as int8; a value outside 0..3 is an error naming its cell."""
    small = as_small_types(types)
    if small.size and small.min() < 0:
        row, column = divmod(int(np.argmax(small.reshape(-1) < 0)), small.shape[1])
        raise ShardError(
            f"{path}: '{TOKEN_TYPE_IDS}' row {first_row + row} column {column} holds"
            f" {types[row, column]}, not a type 0..3; fix it or assign types without --from-existing"
        )
    return small


# --- --explain -----------------------------------------------------------------------------------

# Rows --explain reads at a time while it looks for the first articles.
_EXPLAIN_ROWS = 64
OPEN_MARK, CLOSE_MARK = "⟦", "⟧"


@dataclass
class ArticleMatch:
    """Where an explained rule matched in one article, by column of its row."""

    row: int
    start: int  # first column of the article's body
    stop: int  # one past its last
    ids: np.ndarray  # input_ids of columns start..stop-1
    types: np.ndarray  # the types the run gives them
    marks: list[tuple[int, int]]  # column ranges [a, b) the rule matched
    seams: list[int]  # columns of tokens the selection cuts
    matched: bool

    def as_dict(self, tokenizer: LoadedTokenizer | None) -> dict[str, object]:
        data: dict[str, object] = {
            "row": self.row,
            "columns": [self.start, self.stop],
            "matched": self.matched,
            "marks": [list(mark) for mark in self.marks],
            "seam_columns": self.seams,
            "input_ids": self.ids.tolist(),
            "token_type_ids": self.types.tolist(),
        }
        if tokenizer is not None:
            data["tokens"] = tokenizer.decode_each(self.ids.tolist())
        return data


def explain(
    path: str | os.PathLike,
    structure: Structure,
    rules: Sequence[Rule],
    rule: Rule,
    *,
    apply: bool,
    articles: int = 3,
    tokenizer: LoadedTokenizer | None = None,
) -> list[ArticleMatch]:
    """Where `rule` matches in the first `articles` articles of `path`; writes nothing.

    The types shown are those of the structure and `rules`, then of `rule` itself when `apply`
    (it was given a type).
    """
    path = Path(path)
    all_rules = [*rules, rule] if apply else list(rules)
    texts = _texts([*all_rules, rule], tokenizer)
    found: list[ArticleMatch] = []
    with open_shard(path) as shard:
        input_ids = require_rows_dataset(shard, INPUT_IDS)
        datasets = [input_ids]
        if structure.from_existing:
            if TOKEN_TYPE_IDS not in shard:
                raise ShardError(
                    f"{path}: no dataset '{TOKEN_TYPE_IDS}' to start from; drop --from-existing"
                )
            datasets.append(require_rows_dataset(shard, TOKEN_TYPE_IDS))
        for first_row, block in iter_row_chunks(datasets, _EXPLAIN_ROWS):
            existing = None
            if structure.from_existing:
                existing = _check_existing(path, block[1], first_row)
            try:
                types = apply_rules(
                    block[0], structure, all_rules, existing, texts=texts, first_row=first_row
                ).types
                where = explain_rule(block[0], structure, rule, existing, texts=texts)
            except RuleError as exc:
                raise RuleError(f"{path}: {exc}") from exc
            found += _article_matches(block[0], types, where, first_row, articles - len(found))
            if len(found) >= articles:
                break
    return found


def _article_matches(ids, types, where, first_row: int, wanted: int) -> list[ArticleMatch]:
    """The first `wanted` articles of a block (a loop per article shown, a handful)."""
    seq_len = ids.shape[1]
    if not where.body.size or wanted <= 0:
        return []
    first = np.flatnonzero(np.append(True, where.article[1:] != where.article[:-1]))
    lows, highs = where.marked
    out = []
    for number, begin in enumerate(first[:wanted].tolist()):
        end = int(first[number + 1]) if number + 1 < first.size else where.body.size
        row, start = divmod(int(where.body[begin]), seq_len)
        stop = int(where.body[end - 1]) % seq_len + 1
        inside = (lows >= begin) & (lows < end) & (highs > lows)
        marks = [
            (int(where.body[lo]) % seq_len, int(where.body[hi - 1]) % seq_len + 1)
            for lo, hi in zip(lows[inside].tolist(), highs[inside].tolist(), strict=True)
        ]
        seams = where.seams[(where.seams >= begin) & (where.seams < end)]
        out.append(
            ArticleMatch(
                row=first_row + row,
                start=start,
                stop=stop,
                ids=ids[row, start:stop].copy(),
                types=types[row, start:stop].copy(),
                marks=marks,
                seams=[int(where.body[t]) % seq_len for t in seams.tolist()],
                matched=bool(where.matched[where.article[begin]]),
            )
        )
    return out


def format_explanation(
    match: ArticleMatch, *, tokenizer: LoadedTokenizer | None, color: bool
) -> str:
    """A header line, then the article's tokens by type with each match between ⟦ and ⟧."""
    from tokentype_cli.report.rows import render_segments, row_segments

    if not match.matched:
        found = "no match"
    else:
        spans = ", ".join(f"{a}..{b - 1}" for a, b in match.marks) or "nothing"
        found = f"matched columns {spans}"
    seams = ", ".join(str(c) for c in match.seams)
    header = (
        f"row {match.row}, columns {match.start}..{match.stop - 1}: {found};"
        f" {len(match.seams)} seam{'' if len(match.seams) == 1 else 's'}"
        + (f" (columns {seams})" if seams else "")
    )
    segments = row_segments(match.ids, match.types, tokenizer=tokenizer, collapse_padding=None)
    for a, b in match.marks:
        lo, hi = a - match.start, b - 1 - match.start
        segments[lo] = replace(segments[lo], text=OPEN_MARK + segments[lo].text)
        segments[hi] = replace(segments[hi], text=segments[hi].text + CLOSE_MARK)
    spaced = tokenizer is None or tokenizer.word_level
    return header + "\n" + render_segments(segments, color=color, joiner=" " if spaced else "")
