"""`validate`: check shards against the schema and the training semantics, streaming row chunks.

Every check is vectorised per block of rows; counts are exact and each finding names the first
offending (row, column) in row-major order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np

from tokentype_cli.errors import InputError, ShardError
from tokentype_cli.loss import as_small_types
from tokentype_cli.schema.names import (
    CATEGORY_IDS,
    COMPLETION,
    INPUT_IDS,
    MAX_SEQ_LENGTH,
    PADDING,
    PROMPT,
    PROVENANCE_OPTIONS_ATTR,
    ROW_DATASETS,
    SEPARATOR,
    TOKEN_TYPE_IDS,
    TOKEN_TYPE_NAMES,
    TokenType,
)
from tokentype_cli.schema.read import (
    chunk_shape_problem,
    first_line,
    iter_row_chunks,
    missing_virtual_sources,
    open_shard,
    outside_references,
    read_step_rows,
    reads_outside,
    unwritten_chunks,
    unwritten_message,
)
from tokentype_cli.schema.storage import COMPRESSION, DTYPE
from tokentype_cli.validate.findings import (
    ERROR,
    FIXES,
    WARNING,
    BlockObserver,
    FileReport,
    ValidateOptions,
    settle,
)

# Packings whose rows hold whole articles: a row must end in its last article's separator or in
# padding, so an article running to the end of the row lost its EOS.
_WHOLE_ARTICLE_PACKINGS = ("greedy::", "single::")
# Plain ints for the hot paths: comparing a block with an IntEnum member makes numpy look up
# attributes of the member, which is slower and a place where a signal can get lost.
_PROMPT, _COMPLETION = int(TokenType.PROMPT), int(TokenType.COMPLETION)


def validate_file(
    path: str | os.PathLike,
    options: ValidateOptions = ValidateOptions(),
    progress: Callable[[int], None] | None = None,
    on_block: BlockObserver | None = None,
) -> FileReport:
    """All checks on one file; never raises for a problem in the file, it becomes a finding."""
    report = FileReport(Path(path))
    try:
        # Data kept outside the file is reported here as findings, not refused at opening.
        shard = open_shard(path, check_links=False)
    except ShardError as exc:
        report.add("cannot-open", ERROR, str(exc))
        return report
    try:
        with shard:
            _check_file(shard, report, options, progress, on_block)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        # h5py surfaces damaged metadata as any of these, from any attribute access.
        report.add("unreadable", ERROR, f"{path}: cannot be read ({first_line(exc)})")
    if options.max_truncated_share is not None:
        _check_ledger(report, options.max_truncated_share, options.ledger)
    settle(report, options.strict, options.ignore)
    return report


def _check_ledger(report: FileReport, limit: float, ledger: Path | None) -> None:
    """--max-truncated-share: the share of the ledger's lines cut (or dropped) for length."""
    from tokentype_cli.report.ledger import ledger_beside, read_ledger

    path = report.path
    ledger = ledger or ledger_beside(path)
    if ledger is None:
        report.add(
            "no-ledger",
            ERROR,
            f"{path}: --max-truncated-share needs the tokenize ledger; none beside the shard"
            f" ({path.stem}.ledger.jsonl)",
        )
        return
    try:
        tally = read_ledger(ledger)
    except InputError as exc:
        report.add("no-ledger", ERROR, f"{path}: {exc}")
        return
    if tally.cut_share > limit:
        report.add(
            "truncated-share",
            ERROR,
            f"{path}: {tally.cut_share:.2%} of the {tally.tokenized:,} input lines in {ledger} were cut"
            f" or dropped for length ({tally.cut_for_length:,} lines, {tally.tokens_cut:,} tokens;"
            f" first: {tally.first_cut_where}), more than --max-truncated-share {limit:g}",
            tally.cut_for_length,
            tally.first_cut_row,
        )


def _check_file(
    shard: h5py.File,
    report: FileReport,
    options: ValidateOptions,
    progress: Callable[[int], None] | None,
    on_block: BlockObserver | None = None,
) -> None:
    path = report.path
    if not options.allow_external:
        for reference in outside_references(shard):
            report.add(
                "outside-data",
                ERROR,
                f"{path}: '{reference.name}' is {reference.what}; validate checks only the file it"
                " is given (--allow-external follows it)",
            )
    for name, target in _broken_soft_links(shard):
        report.add(
            "unreadable",
            ERROR,
            f"{path}: '{name}' is a soft link to '{target}', which leads to no object (dangling"
            " or a loop)",
        )
    if INPUT_IDS not in shard:
        have = ", ".join(sorted(shard.keys())) or "nothing"
        report.add("missing-input-ids", ERROR, f"{path}: no dataset '{INPUT_IDS}' (holds {have})")
        return
    usable = {
        name: _readable_here(shard, name, report, options) and _check_structure(shard, name, report)
        for name in ROW_DATASETS
        if name in shard
    }
    if not usable[INPUT_IDS]:
        return
    ids = shard[INPUT_IDS]
    rows, seq_len = ids.shape
    report.rows, report.seq_len = rows, seq_len
    types = None
    if TOKEN_TYPE_IDS not in shard:
        if options.require_types:
            report.add(
                "missing-types",
                ERROR,
                f"{path}: no '{TOKEN_TYPE_IDS}' but --require-types: training with"
                " --use_token_type_ids on it fails (case 3)",
            )
        else:
            report.add(
                "missing-types",
                WARNING,
                f"{path}: no '{TOKEN_TYPE_IDS}': the trainer learns every token (cases 1 and 2)",
            )
    elif usable[TOKEN_TYPE_IDS]:
        types = shard[TOKEN_TYPE_IDS]
    for name in (TOKEN_TYPE_IDS, CATEGORY_IDS):
        if usable.get(name) and shard[name].shape != ids.shape:
            report.add(
                "shape-mismatch",
                ERROR,
                f"{path}: '{name}' has shape {shard[name].shape} but '{INPUT_IDS}' has {ids.shape}",
                dataset=name,
            )
            if name == TOKEN_TYPE_IDS:
                types = None
    if options.max_seq_length is not None and seq_len != options.max_seq_length:
        report.add(
            "seq-length",
            ERROR,
            f"{path}: '{INPUT_IDS}' has sequence length {seq_len}, not --max-seq-length"
            f" {options.max_seq_length}",
        )
    if rows == 0:
        report.add("zero-rows", ERROR, f"{path}: '{INPUT_IDS}' has no rows")
        return
    if seq_len == 0:
        report.add("seq-length", ERROR, f"{path}: '{INPUT_IDS}' rows have length 0")
        return
    checker = _ContentChecker(
        path, seq_len, options, has_types=types is not None, recorded=_recorded_options(ids)
    )
    datasets = [ids] if types is None else [ids, types]
    for first_row, blocks in _blocks(datasets, report):
        checker.check(first_row, blocks[0], blocks[1] if types is not None else None)
        if on_block is not None:
            on_block(path, first_row, blocks[0], blocks[1] if types is not None else None)
        if progress is not None:
            progress(blocks[0].size)
    checker.report(report)


def _broken_soft_links(shard: h5py.File) -> list[tuple[str, str]]:
    """(name, target) of each soft link that does not resolve. inspect, add-types and
    assign-types refuse such a file as damaged (they open every object), so validate must too."""
    broken: list[tuple[str, str]] = []

    def visit(name: str, link: object) -> None:
        if isinstance(link, h5py.SoftLink):
            try:
                shard[name]
            except (KeyError, OSError, RuntimeError):
                broken.append((name, link.path))

    shard.visititems_links(visit)
    return broken


def _recorded_options(dataset: h5py.Dataset) -> dict[str, object]:
    """The options tokenize recorded in a dataset's provenance ({} when absent or unreadable)."""
    text = dataset.attrs.get(PROVENANCE_OPTIONS_ATTR)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    # Provenance is a few hundred bytes; anything far larger is not tokentype's own.
    if not isinstance(text, str) or len(text) > 1 << 16:
        return {}
    try:
        options = json.loads(text)
    except ValueError:
        return {}
    return options if isinstance(options, dict) else {}


def _readable_here(
    shard: h5py.File, name: str, report: FileReport, options: ValidateOptions
) -> bool:
    """Whether a row dataset's values can be read: its own, or outside the file but allowed and
    present (a virtual dataset's missing source reads as fill values, which would pass)."""
    if reads_outside(shard, name) and not options.allow_external:
        return False  # reported as outside-data
    dataset = shard[name]
    if isinstance(dataset, h5py.Dataset) and dataset.is_virtual:
        missing = missing_virtual_sources(dataset)
        if missing:
            report.add(
                "virtual-source-missing",
                ERROR,
                f"{report.path}: virtual dataset '{name}' reads {missing[0]}, which does not"
                " exist: its rows would read as fill values",
            )
            return False
    return True


def _check_structure(shard: h5py.File, name: str, report: FileReport) -> bool:
    """Report structural problems of one row dataset; True when its content can be checked."""
    path = report.path
    dataset = shard[name]
    if not isinstance(dataset, h5py.Dataset):
        report.add("not-2d", ERROR, f"{path}: '{name}' is a group, not a dataset", dataset=name)
        return False
    if dataset.ndim != 2:
        report.add(
            "not-2d",
            ERROR,
            f"{path}: dataset '{name}' has shape {dataset.shape}; expected 2-D (rows, max_seq_length)",
            dataset=name,
        )
        return False
    usable = True
    if dataset.dtype.kind not in "iu":
        report.add(
            "non-integer-dtype",
            ERROR,
            f"{path}: dataset '{name}' has dtype {dataset.dtype}; expected integers (int32)",
            dataset=name,
        )
        usable = False
    elif dataset.dtype != DTYPE:
        report.add(
            "dtype-not-int32",
            WARNING,
            f"{path}: dataset '{name}' has dtype {dataset.dtype.str}; the schema is int32 ('<i4')",
            dataset=name,
        )
    if dataset.compression != COMPRESSION:
        report.add(
            "not-gzip",
            WARNING,
            f"{path}: dataset '{name}' is {dataset.compression or 'uncompressed'}, not gzip",
            dataset=name,
        )
    seq_len = dataset.shape[1]
    if dataset.maxshape != (None, seq_len):
        report.add(
            "maxshape",
            WARNING,
            f"{path}: dataset '{name}' has maxshape {dataset.maxshape}; expected (None, {seq_len})",
            dataset=name,
        )
    problem = chunk_shape_problem(dataset)
    if problem is not None:
        report.add("chunk-shape", WARNING, f"{path}: dataset '{name}': {problem}")
    if seq_len > MAX_SEQ_LENGTH:
        report.add(
            "seq-length",
            ERROR,
            f"{path}: dataset '{name}' has rows of {seq_len:,} tokens, more than the"
            f" {MAX_SEQ_LENGTH:,} tokentype reads",
        )
        return False
    unwritten = unwritten_chunks(dataset)
    if unwritten is not None:
        report.add("unwritten-chunks", ERROR, unwritten_message(path, name, dataset, *unwritten))
        return False
    return usable


def _blocks(
    datasets: list[h5py.Dataset], report: FileReport
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Row blocks of all datasets; an unreadable chunk becomes a finding and reading goes on.

    A block that fails is read again chunk by chunk, so one damaged chunk costs only its own
    rows: the rest of the block is still checked and the count names just the lost rows.
    """
    step = read_step_rows(datasets[0])
    # A damaged block is read again a chunk's rows at a time, but never more than a step.
    per_chunk = min(datasets[0].chunks[0], step) if datasets[0].chunks else step
    lost_rows, first_lost, why = 0, None, ""

    def readable(
        start: int, stop: int, rows_per_read: int
    ) -> Iterator[tuple[int, list[np.ndarray]]]:
        nonlocal lost_rows, first_lost, why
        while start < stop:
            try:
                for first_row, blocks in iter_row_chunks(datasets, rows_per_read, start, stop):
                    start = first_row + len(blocks[0])
                    yield first_row, blocks
            except ShardError as exc:
                end = min(stop, (start // rows_per_read + 1) * rows_per_read)
                if rows_per_read > per_chunk:
                    yield from readable(start, end, per_chunk)
                else:
                    if first_lost is None:
                        first_lost, why = start, str(exc)
                    lost_rows += end - start
                start = end

    yield from readable(0, datasets[0].shape[0], step)
    if lost_rows:
        report.add(
            "unreadable",
            ERROR,
            f"{why} ({lost_rows} rows unreadable in all)",
            count=lost_rows,
            row=first_lost,
        )


class _Hits:
    """Exact count and first (row, column) of one check over all blocks."""

    __slots__ = ("column", "count", "row", "value")

    def __init__(self) -> None:
        self.count = 0
        self.row: int | None = None
        self.column: int | None = None
        self.value: int | None = None

    def cells(
        self, mask: np.ndarray, first_row: int, values: np.ndarray | None = None, shift: int = 0
    ) -> None:
        """Count True cells of a 2-D mask; remember the first (row, column + shift)."""
        count = int(np.count_nonzero(mask))
        if not count:
            return
        if self.row is None:
            row, column = divmod(int(np.argmax(mask.reshape(-1))), mask.shape[1])
            self.row, self.column = first_row + row, column + shift
            if values is not None:
                self.value = int(values[row, column + shift])
        self.count += count

    def rows(self, mask: np.ndarray, first_row: int) -> None:
        """Count True entries of a per-row mask; remember the first row."""
        count = int(np.count_nonzero(mask))
        if not count:
            return
        if self.row is None:
            self.row = first_row + int(np.argmax(mask))
        self.count += count

    def at(self) -> str:
        where = (
            f"row {self.row}" if self.column is None else f"row {self.row}, column {self.column}"
        )
        return where if self.value is None else f"{self.value} at {where}"


class _ContentChecker:
    """The value checks, accumulated block by block."""

    def __init__(
        self,
        path: Path,
        seq_len: int,
        options: ValidateOptions,
        has_types: bool,
        recorded: dict[str, object] | None = None,
    ) -> None:
        self.path = path
        self.seq_len = seq_len
        self.options = options
        self.has_types = has_types
        self.vocab_size = options.effective_vocab_size
        tokenizer = options.tokenizer
        eos = None if tokenizer is None else tokenizer.eos_id
        pad = None if tokenizer is None else tokenizer.pad_id
        self.eos = eos
        recorded = recorded or {}
        packing = recorded.get("packing")
        # With whole articles per row, a row ending in prompt or completion lost its EOS. Pairs
        # split off by --packing-boundary without --attention-boundary prompt_completion_pair
        # end in an EOS typed completion, which only the tokenizer's EOS id tells apart.
        self.packing = (
            packing
            if isinstance(packing, str)
            and packing.startswith(_WHOLE_ARTICLE_PACKINGS)
            and (
                eos is not None
                or recorded.get("packing_boundary") != "prompt_completion_pair"
                or recorded.get("attention_boundary") == "prompt_completion_pair"
            )
            else None
        )
        self.allowed = {
            TokenType.SEPARATOR: [i for i in (eos,) if i is not None],
            TokenType.PADDING: [i for i in (pad, eos) if i is not None],
        }
        self.reference: dict[TokenType, int | None] = {
            TokenType.SEPARATOR: None,
            TokenType.PADDING: None,
        }
        self.distinct: dict[TokenType, set[int]] = {
            TokenType.SEPARATOR: set(),
            TokenType.PADDING: set(),
        }
        self.hits = {name: _Hits() for name in FIXES}
        self.longest_separator_run = 0
        self.tokens = 0
        self.padding = 0

    def check(self, first_row: int, ids: np.ndarray, types: np.ndarray | None) -> None:
        hits = self.hits
        self.tokens += ids.size
        low, high = ids.min(), ids.max()
        if ids.dtype.itemsize >= 4 and ids.dtype != np.int32:
            info = np.iinfo(np.int32)
            if high > info.max or low < info.min:
                beyond = (
                    (ids > info.max)
                    if ids.dtype.kind == "u"
                    else (ids > info.max) | (ids < info.min)
                )
                hits["id-beyond-int32"].cells(beyond, first_row, ids)
        if low < 0:
            hits["negative-token-id"].cells(ids < 0, first_row, ids)
        if self.vocab_size is not None and high >= self.vocab_size:
            hits["token-id-out-of-vocab"].cells(ids >= self.vocab_size, first_row, ids)
        if types is None:
            # Without types the trainer learns every target: only the row length can fall short.
            minimum = self.options.min_learned_per_row
            if minimum is not None and ids.shape[1] - 1 < minimum:
                hits["learned-per-row"].rows(np.ones(len(ids), bool), first_row)
            return
        small = as_small_types(types)
        if small.min() < 0:
            hits["type-out-of-range"].cells(small < 0, first_row, types)
        # Plain ints: see schema.PROMPT.
        pad = small == PADDING
        sep = small == SEPARATOR
        prompt = small == PROMPT
        completion = small == COMPLETION
        learned = completion | sep
        content = prompt | completion
        # Booleans: a > b is a & ~b.
        hits["padding-then-content"].cells(pad[:, :-1] > pad[:, 1:], first_row, shift=1)
        self._truncated(ids, small, content, pad, first_row)
        if self.eos is not None:
            completion = small == _COMPLETION
            hits["eos-in-completion"].cells(
                completion[:, :-1] & completion[:, 1:] & (ids[:, :-1] == self.eos), first_row
            )
        self._separator_runs(sep, first_row)
        hits["padding-only-row"].rows(pad.all(axis=1), first_row)
        hits["no-learned-token-row"].rows(~learned.any(axis=1), first_row)
        weight = self.options.loss_weight
        if weight is not None:
            carries = learned[:, 1:] | prompt[:, 1:] if weight > 0 else learned[:, 1:]
            # --min-learned-per-row alone judges at weight 0 without adding this check.
            if self.options.prompt_loss_weight is not None or (
                self.options.max_rows_without_loss is not None
            ):
                hits["no-loss-row"].rows(~carries.any(axis=1), first_row)
            if self.options.min_learned_per_row is not None:
                per_row = np.count_nonzero(carries, axis=1)
                hits["learned-per-row"].rows(per_row < self.options.min_learned_per_row, first_row)
        limit = self.options.max_padding_share
        if limit is not None:
            per_row = np.count_nonzero(pad, axis=1)
            self.padding += int(per_row.sum())
            # The row that points at the problem: the first one padded beyond the limit itself.
            hits["padding-share"].rows(per_row > limit * pad.shape[1], first_row)
        self._special_ids(TokenType.PADDING, pad, ids, first_row)
        self._special_ids(TokenType.SEPARATOR, sep, ids, first_row)

    def _truncated(
        self,
        ids: np.ndarray,
        small: np.ndarray,
        content: np.ndarray,
        pad: np.ndarray,
        first_row: int,
    ) -> None:
        """Articles whose last token is prompt or completion where padding (or, with whole
        articles per row, the row's end) follows: their EOS separator was cut off."""
        cut = content[:, :-1] & pad[:, 1:]
        if self.eos is not None:
            # An EOS typed completion ends a pair split off by --packing-boundary: not a cut.
            cut &= ids[:, :-1] != self.eos
        if self.packing is not None:
            last = small[:, -1:]
            at_end = (last == _PROMPT) | (last == _COMPLETION)
            if self.eos is not None:
                at_end &= ids[:, -1:] != self.eos
            # One mask in row-major order, so the first hit is the first cell either way.
            cut = np.concatenate([cut, at_end], axis=1)
        self.hits["truncated-eos"].cells(cut, first_row)

    def _separator_runs(self, sep: np.ndarray, first_row: int) -> None:
        """Rows with two separators in a row: an empty article between them. A row ending in
        a long run is padding typed 3, the classic mistake of types written by hand."""
        double = sep[:, :-1] & sep[:, 1:]
        if not double.any():
            return
        self.hits["separator-run"].rows(double.any(axis=1), first_row)
        counted = np.cumsum(sep, axis=1, dtype=np.int64)
        # At each cell, the separators since the last other token: the run it ends.
        since = np.maximum.accumulate(np.where(sep, 0, counted), axis=1)
        self.longest_separator_run = max(self.longest_separator_run, int((counted - since).max()))

    def _special_ids(
        self, kind: TokenType, mask: np.ndarray, ids: np.ndarray, first_row: int
    ) -> None:
        """Separators (or padding) must all share one id, and be a tokenizer's id for the role."""
        if not mask.any():
            return
        allowed = self.allowed[kind]
        if self.reference[kind] is None:
            # The file's id for the role: the first one seen that the tokenizer allows.
            candidates = mask
            if allowed:
                candidates = mask & np.isin(ids, allowed)
            flat = candidates.reshape(-1)
            position = int(np.argmax(flat))
            if flat[position]:
                self.reference[kind] = int(ids.reshape(-1)[position])
        reference = self.reference[kind]
        # Until one of the tokenizer's ids for the role shows up, every such token is wrong.
        wrong = mask if reference is None else mask & (ids != reference)
        if wrong.any():
            hits = self.hits["separator-id" if kind == TokenType.SEPARATOR else "padding-id"]
            hits.cells(wrong, first_row, ids)
            if len(self.distinct[kind]) < 8:
                self.distinct[kind].update(np.unique(ids[wrong])[:8].tolist())

    def report(self, report: FileReport) -> None:
        weight = self.options.loss_weight or 0.0
        self._thresholds(report)
        texts = {
            "negative-token-id": (ERROR, f"'{INPUT_IDS}' values below 0"),
            "token-id-out-of-vocab": (
                ERROR,
                f"'{INPUT_IDS}' values >= the vocabulary size {self.vocab_size}",
            ),
            "type-out-of-range": (ERROR, f"'{TOKEN_TYPE_IDS}' values outside 0..3"),
            "id-beyond-int32": (
                ERROR,
                f"'{INPUT_IDS}' values beyond int32 (a trainer reading int32 sees other ids)",
            ),
            "no-loss-row": (
                ERROR,
                f"rows in which no target carries loss at prompt_loss_weight {weight:g}"
                " (the trainer divides by a zero weight sum)",
            ),
            "padding-then-content": (WARNING, "padding tokens followed by a non-padding token"),
            "truncated-eos": (
                WARNING,
                "prompt/completion tokens directly followed by padding"
                + (
                    ""
                    if self.packing is None
                    else f" or ending a row, which --packing {self.packing} fills with whole"
                    " articles"
                )
                + " (the article's EOS was cut off, so the model never learns to stop there)",
            ),
            "eos-in-completion": (
                WARNING,
                f"end-of-sequence id {self.eos} typed completion with more completion after it (a"
                " literal EOS in the answer text teaches the model to stop mid-answer)",
            ),
            "separator-run": (
                WARNING,
                "rows with consecutive separators, each pair an empty article (longest run:"
                f" {self.longest_separator_run:,})",
            ),
            "padding-only-row": (WARNING, "rows of only padding"),
            "no-learned-token-row": (
                WARNING,
                "rows with no completion or separator token (nothing learned at"
                " prompt_loss_weight 0)",
            ),
        }
        if self.options.max_rows_without_loss is not None:
            # Up to the threshold the rows are reported, but do not fail the run.
            allowed = self.options.max_rows_without_loss
            over = self.hits["no-loss-row"].count > allowed
            texts["no-loss-row"] = (
                ERROR if over else WARNING,
                texts["no-loss-row"][1]
                + f" ({'more than' if over else 'within'} --max-rows-without-loss {allowed:,})",
            )
        for check, (severity, text) in texts.items():
            h = self.hits[check]
            if h.count:
                report.add(
                    check,
                    severity,
                    f"{self.path}: {text}: {h.count:,} (first: {h.at()})",
                    h.count,
                    h.row,
                    h.column,
                )
        path, hits = self.path, self.hits
        for kind, check in (
            (TokenType.SEPARATOR, "separator-id"),
            (TokenType.PADDING, "padding-id"),
        ):
            h = hits[check]
            if not h.count:
                continue
            name = TOKEN_TYPE_NAMES[kind]
            expected = " or ".join(map(str, self.allowed[kind]))
            reference = self.reference[kind]
            known = self.distinct[kind] if reference is None else self.distinct[kind] | {reference}
            seen = ", ".join(map(str, sorted(known)))
            role = "EOS id" if kind == TokenType.SEPARATOR else "pad/EOS id"
            if reference is None:
                text = (
                    f"{name} tokens that are not the tokenizer's {role} {expected}: {h.count:,}"
                    f" (ids seen: {seen}; first: {h.at()})"
                )
            elif expected:
                text = (
                    f"{name} tokens other than id {reference}, the first of the tokenizer's"
                    f" {role} {expected} seen: {h.count:,} (ids seen: {seen}; first: {h.at()})"
                )
            else:
                text = (
                    f"{name} tokens use more than one id ({seen}); {h.count:,} differ from the"
                    f" first, {reference} (first: {h.at()})"
                )
            report.add(check, WARNING, f"{path}: {text}", h.count, h.row, h.column)

    def _thresholds(self, report: FileReport) -> None:
        options, path = self.options, self.path
        h = self.hits["learned-per-row"]
        if h.count:
            report.add(
                "learned-per-row",
                ERROR,
                f"{path}: rows learning fewer than --min-learned-per-row"
                f" {options.min_learned_per_row:,} targets at prompt_loss_weight"
                f" {options.loss_weight:g}: {h.count:,} (first: {h.at()})",
                h.count,
                h.row,
            )
        limit = options.max_padding_share
        share = self.padding / self.tokens if self.tokens else 0.0
        if limit is not None and self.has_types and share > limit:
            h = self.hits["padding-share"]
            report.add(
                "padding-share",
                ERROR,
                f"{path}: padding is {share:.2%} of the tokens ({self.padding:,} of"
                f" {self.tokens:,}), more than --max-padding-share {limit:g}; {h.count:,} rows"
                f" are over it themselves (first: {h.at()})",
                self.padding,
                h.row,
            )
