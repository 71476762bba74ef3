"""Scan the inputs once (count lines, fingerprint their content), then route every line to its
split's bucket: a text file of the split's lines in input order, and beside it the input line
number of each, from which the split's order is recomputed when it is read.

Memory stays bounded by the block of line numbers being routed and, above _OPEN_SPLITS splits,
32 MB of routed lines held for appending; reading a split in its shuffled order holds two
integers per line of that one split. Open files stay bounded too: two per split up to
_OPEN_SPLITS splits, else one bucket at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tokentype_cli.dataset.plan import SplitPlan, destinations
from tokentype_cli.errors import InputError
from tokentype_cli.tokenize import columnar
from tokentype_cli.tokenize.options import COLUMNAR
from tokentype_cli.tokenize.read import (
    InputLine,
    check_inputs,
    expand_inputs,
    input_format,
    line_blocks,
)


@dataclass(frozen=True)
class InputSet:
    """The inputs of a build, in order, with what the plan needs to know about them."""

    paths: tuple[str, ...]  # readable paths (stdin spooled to a file)
    names: tuple[str, ...]  # what messages and the ledger call them
    fmt: str
    line_counts: tuple[int, ...]
    bytes_read: int
    digest: str  # sha256 over every line's bytes, in order: the content, not the paths

    @property
    def total_lines(self) -> int:
        return sum(self.line_counts)

    @property
    def first_number(self) -> int:
        """What the first line of an input is numbered: lines from 1, Parquet/Arrow rows from 0."""
        return 0 if self.fmt in COLUMNAR else 1


def blocks(path: str, name: str, fmt: str) -> Iterator[tuple[bytes, np.ndarray]]:
    """An input's lines a block at a time (read.line_blocks); a Parquet/Arrow file's rows as JSON
    lines, which is how they are routed, kept in buckets and tokenized."""
    if fmt in COLUMNAR:
        return columnar.json_blocks(path, name)
    return line_blocks(path, name)


_FORMAT_NAMES = {"jsonl": "JSONL", "txt": "TXT", "parquet": "Parquet", "arrow": "Arrow"}


def resolve_inputs(paths: list[str], given_format: str | None) -> tuple[list[str], str]:
    """Expand folders, check every input exists, and agree on one format."""
    expanded = expand_inputs(paths)
    check_inputs(expanded)
    formats = {path: input_format(path, given_format) for path in expanded}
    if len(set(formats.values())) > 1:
        first = {fmt: path for path, fmt in reversed(formats.items())}
        raise InputError(
            "the inputs mix formats ("
            + ", ".join(f"{path} is {_FORMAT_NAMES.get(fmt, fmt)}" for fmt, path in first.items())
            + "); a dataset is built from one format: pass --input-format or split the build"
        )
    return expanded, next(iter(formats.values()))


def spool_stdin(folder: Path) -> Path:
    """Copy stdin to a file: the build reads its input twice (count, then route)."""
    if sys.stdin is None:
        raise InputError("<stdin>: standard input is closed; pipe the input in or name a file")
    target = folder / "stdin.spool"
    with open(target, "wb") as handle:
        shutil.copyfileobj(sys.stdin.buffer, handle, 1 << 20)
    return target


def scan_inputs(paths: list[str], names: list[str], fmt: str) -> InputSet:
    """Count each input's lines (as the tokenizer will see them) and fingerprint the content.

    A Parquet/Arrow file's rows are counted from its metadata, and its bytes are its fingerprint;
    its size is that of its Arrow data (Parquet's uncompressed size), which is what the default
    number of train files follows, as it follows a JSONL file's size."""
    digest = hashlib.sha256()
    counts = []
    total_bytes = 0
    for path, name in zip(paths, names, strict=True):
        if fmt in COLUMNAR:
            count, size = columnar.scan(path, name, digest)
            total_bytes += size
            counts.append(count)
            continue
        count = 0
        for data, ends in blocks(path, name, fmt):
            digest.update(data)
            total_bytes += len(data)
            count += len(ends)
        counts.append(count)
    return InputSet(tuple(paths), tuple(names), fmt, tuple(counts), total_bytes, digest.hexdigest())


class Bucket:
    """One split's lines: `NAME.lines`, their bytes in input order; `NAME.index`, for each line its
    0-based input line number and byte length (int64 pairs)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.text_path = folder / f"{name}.lines"
        self.index_path = folder / f"{name}.index"

    def lines(
        self, inputs: InputSet, plan: SplitPlan, shuffle: bool, seed: int
    ) -> Iterator[InputLine]:
        """The split's lines in their split order, each named by its input and line."""
        index = np.fromfile(self.index_path, dtype=np.int64).reshape(-1, 2)
        if not len(index):
            return
        numbers, lengths = index[:, 0], index[:, 1]
        offsets = np.cumsum(lengths) - lengths
        _, positions = destinations(numbers, inputs.total_lines, plan.total, shuffle, seed)
        order = np.argsort(positions, kind="stable")
        starts = np.cumsum((0, *inputs.line_counts))
        which = np.searchsorted(starts, numbers, side="right") - 1
        line_in_input = numbers - starts[which] + inputs.first_number
        names = inputs.names
        with open(self.text_path, "rb") as handle:
            descriptor = handle.fileno()
            for k in order.tolist():
                # Unshuffled splits read front to back; shuffled ones jump about a file that is
                # one split's share of the input, which the page cache holds.
                raw = os.pread(descriptor, int(lengths[k]), int(offsets[k]))
                yield InputLine(names[which[k]], int(line_in_input[k]), raw)

    def size(self) -> int:
        """The bytes of the split's lines (0 once removed)."""
        try:
            return self.text_path.stat().st_size
        except FileNotFoundError:
            return 0

    def remove(self) -> None:
        self.text_path.unlink(missing_ok=True)
        self.index_path.unlink(missing_ok=True)


# Up to this many splits keep their two bucket files open while routing (256 descriptors, well
# inside the common `ulimit -n 1024`), so nothing routed waits in memory. More splits gather their
# lines and append them in rounds of _PENDING_BYTES, each bucket opened and closed in turn: 512
# splits with two files open each met that limit.
_OPEN_SPLITS = 128
_PENDING_BYTES = 32 << 20


class _Appender:
    """Appends routed lines (text, and index pairs) to the buckets of the splits routed here."""

    def __init__(self, buckets: dict[int, Bucket], wanted: list[int]) -> None:
        self.buckets = buckets
        self.pending: dict[int, tuple[list[bytes], list[bytes]]] = {}
        self.pending_bytes = 0
        self.open: dict[int, tuple[BinaryIO, BinaryIO]] = {}
        self._stack = contextlib.ExitStack()
        if len(wanted) <= _OPEN_SPLITS:
            for split in wanted:
                bucket = buckets[split]
                self.open[split] = (
                    self._stack.enter_context(bucket.text_path.open("ab")),
                    self._stack.enter_context(bucket.index_path.open("ab")),
                )

    def add(self, split: int, text: bytes, pairs: bytes) -> None:
        if self.open:
            text_file, index_file = self.open[split]
            text_file.write(text)
            index_file.write(pairs)
            return
        texts, indexes = self.pending.setdefault(split, ([], []))
        texts.append(text)
        indexes.append(pairs)
        self.pending_bytes += len(text) + len(pairs)
        if self.pending_bytes >= _PENDING_BYTES:
            self.flush()

    def flush(self) -> None:
        for split, (texts, indexes) in sorted(self.pending.items()):
            with open(self.buckets[split].text_path, "ab") as handle:
                handle.writelines(texts)
            with open(self.buckets[split].index_path, "ab") as handle:
                handle.writelines(indexes)
        self.pending.clear()
        self.pending_bytes = 0

    def close(self) -> None:
        """Close the open buckets; what waits in memory is dropped (flush() writes it)."""
        self._stack.close()


def route(
    inputs: InputSet,
    plan: SplitPlan,
    shuffle: bool,
    seed: int,
    wanted: set[int],
    folder: Path,
) -> dict[int, Bucket]:
    """Write the buckets of the `wanted` split indices; lines of other splits are skipped.

    A block of lines at a time with numpy: where each line goes, then its bytes gathered in
    split order and written as one slice per split.
    """
    buckets = {split.index: Bucket(folder, split.file_name("bucket")) for split in plan.splits}
    for split_index in sorted(wanted):
        for empty in (buckets[split_index].text_path, buckets[split_index].index_path):
            empty.write_bytes(b"")
    appender = _Appender(buckets, sorted(wanted))
    try:
        _route_lines(inputs, plan, shuffle, seed, np.asarray(sorted(wanted), np.int64), appender)
        appender.flush()
    finally:
        appender.close()
    return {index: buckets[index] for index in wanted}


def _route_lines(
    inputs: InputSet, plan: SplitPlan, shuffle: bool, seed: int, mine: np.ndarray,
    appender: _Appender,
) -> None:  # fmt: skip
    number = 0
    for path, name in zip(inputs.paths, inputs.names, strict=True):
        for data, ends in blocks(path, name, inputs.fmt):
            count = len(ends)
            numbers = np.arange(number, number + count, dtype=np.int64)
            number += count
            where, _ = destinations(numbers, inputs.total_lines, plan.total, shuffle, seed)
            starts = np.concatenate([[0], ends[:-1]])
            lengths = ends - starts
            keep = np.flatnonzero(np.isin(where, mine))
            if not len(keep):
                continue
            keep = keep[np.argsort(where[keep], kind="stable")]
            bounds = np.searchsorted(where[keep], mine, side="left").tolist()
            bounds.append(len(keep))
            # Joining memoryview slices copies each line once, in C; a numpy gather needs an
            # 8-byte index per byte of text.
            view = memoryview(data)
            line_starts, line_ends = starts[keep].tolist(), ends[keep].tolist()
            for position, split in enumerate(mine.tolist()):
                low, high = bounds[position], bounds[position + 1]
                if low == high:
                    continue
                pieces = zip(line_starts[low:high], line_ends[low:high], strict=True)
                text = b"".join([view[a:b] for a, b in pieces])
                chosen = keep[low:high]
                pairs = np.stack([numbers[chosen], lengths[chosen]], axis=1).tobytes()
                appender.add(split, text, pairs)
    if number != inputs.total_lines:
        raise InputError(
            f"{', '.join(inputs.names)}: the input changed while the build read it"
            f" ({inputs.total_lines:,} lines, then {number:,}); rebuild from a stable copy"
        )
