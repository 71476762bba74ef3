"""`diff`: what two builds teach differently, with rows matched by content.

One streamed pass over each build hashes every row (64 bits of its `input_ids`, 64 of its types),
so memory grows with the row-hash index, not with the rows: 17 bytes a row on each side (the two
hashes and a flag), and for a moment up to about 60 more a row while rows that moved are matched
(sorting their hashes). Rows are matched as multisets of their id hashes: a reshuffled or
rebalanced build still compares, and duplicate rows pair up one to one. Within matched rows the
types are compared token by token; rows at the same position of same-named, same-shaped files are
compared during the first pass, the others in a second pass that reads only the chunks holding
them (their B types wait in memory, or in a temporary file when large).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from tokentype_cli.errors import OptionError, ShardError
from tokentype_cli.loss import N_TYPES, as_small_types, type_counts, weight_table
from tokentype_cli.report.options import IGNORABLE
from tokentype_cli.report.rows import format_row
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_NAMES, TokenType
from tokentype_cli.schema.read import (
    find_shards,
    iter_row_chunks,
    open_shard,
    read_step_rows,
    readable,
    require_rows_dataset,
    types_dataset,
)
from tokentype_cli.tokenizer_loader import LoadedTokenizer

# Types in the from->to matrix: 0..3, then any value outside 0..3.
MATRIX_NAMES = [*(TOKEN_TYPE_NAMES[t] for t in TokenType), "invalid"]
_INVALID = N_TYPES
# A row's types hash when the file has no token_type_ids (the trainer learns every token).
_UNTYPED = np.uint64(0)
# Pass 2 keeps the types of moved, changed rows in memory up to this size, on disk beyond it.
_IN_MEMORY_BYTES = 64 << 20


# --- row hashing ---------------------------------------------------------------------------------

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SHIFT1 = np.uint64(30)
_SHIFT2 = np.uint64(31)
# Hashing about this many words at a time keeps the 64-bit temporaries in the CPU cache.
_HASH_WORDS = 1 << 15


@lru_cache(maxsize=32)
def _column_keys(words: int, seed: int) -> np.ndarray:
    """A fixed random 64-bit key per word position: the hash depends on where each token sits."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(np.uint64).max, words, dtype=np.uint64, endpoint=True)


def hash_words(words: np.ndarray, seed: int) -> np.ndarray:
    """64-bit hash of each row of a (rows, n) uint64 array.

    Each word is xored with its column's key and put through splitmix64's finaliser, and a row's
    hash is the wrapping sum of its mixed words: every step is a whole-array numpy operation, about
    as fast as reading the data, where hashlib per row is a Python call per row.
    """
    rows, width = words.shape
    keys = _column_keys(width, seed)
    out = np.empty(rows, dtype=np.uint64)
    step = max(1, _HASH_WORDS // max(1, width))
    mixed = np.empty((min(rows, step), width), dtype=np.uint64)
    shifted = np.empty_like(mixed)
    for start in range(0, rows, step):
        part = words[start : start + step]
        x, t = mixed[: len(part)], shifted[: len(part)]
        np.bitwise_xor(part, keys, out=x)
        np.right_shift(x, _SHIFT1, out=t)
        np.bitwise_xor(x, t, out=x)
        np.multiply(x, _MIX1, out=x)
        np.right_shift(x, _SHIFT2, out=t)
        np.bitwise_xor(x, t, out=x)
        np.multiply(x, _MIX2, out=x)
        x.sum(axis=1, dtype=np.uint64, out=out[start : start + len(part)])
    return out


def _as_words(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A (rows, seq_len) block as (rows, n) uint64 words of `dtype` values (zero-filled tail)."""
    per_word = 8 // dtype.itemsize
    rows, seq_len = block.shape
    if block.dtype == dtype and seq_len % per_word == 0 and block.flags.c_contiguous:
        return block.view(np.uint64)
    width = -(-seq_len // per_word) * per_word
    padded = np.zeros((rows, width), dtype=dtype)
    padded[:, :seq_len] = block
    return padded.view(np.uint64)


def hash_ids(ids: np.ndarray) -> np.ndarray:
    """64-bit hash of each row's input_ids (as int32: the same ids hash alike in any int dtype)."""
    hashes = hash_words(_as_words(ids, np.dtype("<i4")), seed=1)
    # The row length is part of the hash: rows zero-filled to whole words would otherwise collide.
    return hashes ^ np.uint64(ids.shape[1] * 0x9E3779B97F4A7C15 % (1 << 64))


def hash_types(small_types: np.ndarray) -> np.ndarray:
    """64-bit hash of each row's types, given as `as_small_types` int8 (never 0, the untyped mark)."""
    hashes = hash_words(_as_words(small_types, np.dtype("i1")), seed=2)
    return hashes | np.uint64(1)


# --- one build -----------------------------------------------------------------------------------


@dataclass
class BuildFile:
    """One shard of a build, named by its path relative to the build's folder."""

    name: str
    path: Path
    rows: int
    seq_len: int
    typed: bool
    offset: int = 0  # index of its first row in the build's row-hash arrays


@dataclass
class Build:
    """What one side of the diff holds and teaches, plus its row-hash index."""

    path: Path
    files: list[BuildFile]
    prompt_loss_weight: float
    ids_hash: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    types_hash: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    # Rows left out of the comparison (rows of only padding, with --ignore padding).
    left_out: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(N_TYPES + 1, np.int64))
    target_counts: np.ndarray = field(default_factory=lambda: np.zeros(N_TYPES + 1, np.int64))
    untyped_targets: int = 0
    rows_without_loss: int = 0

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def tokens(self) -> int:
        return sum(f.rows * f.seq_len for f in self.files)

    @property
    def seq_len(self) -> int | None:
        lengths = {f.seq_len for f in self.files}
        return lengths.pop() if len(lengths) == 1 else None

    @property
    def typed(self) -> bool:
        return bool(self.files) and all(f.typed for f in self.files)

    @property
    def learned(self) -> float:
        """Sum of the targets' loss weights (before the trainer's per-row normalisation)."""
        table = np.append(weight_table(self.prompt_loss_weight), 0.0)
        return float(self.target_counts @ table) + self.untyped_targets

    def as_dict(self) -> dict[str, object]:
        typed_tokens = int(self.counts.sum())
        return {
            "path": str(self.path),
            "files": [f.name for f in self.files],
            "rows": self.rows,
            "seq_len": self.seq_len,
            "tokens": self.tokens,
            "token_types": None
            if not typed_tokens
            else {
                TOKEN_TYPE_NAMES[t]: {
                    "count": int(self.counts[t]),
                    "share": int(self.counts[t]) / typed_tokens,
                }
                for t in TokenType
            },
            "learned": self.learned,
            "rows_without_loss": self.rows_without_loss,
        }


def _open_build(path: Path, prompt_loss_weight: float) -> Build:
    files = []
    if not path.exists():
        raise ShardError(f"{path}: no such file or folder; check the path")
    shards = find_shards([path])
    if path.is_dir() and not shards:
        raise ShardError(f"{path}: folder holds no *.h5 or *.hdf5 files; pass a shard or a build")
    offset = 0
    for shard_path in shards:
        with readable(shard_path), open_shard(shard_path) as shard:
            ids = require_rows_dataset(shard, INPUT_IDS)
            typed = types_dataset(shard, ids) is not None
            rows, seq_len = ids.shape
        name = shard_path.relative_to(path).as_posix() if path.is_dir() else shard_path.name
        files.append(BuildFile(name, shard_path, rows, seq_len, typed, offset))
        offset += rows
    build = Build(path, files, prompt_loss_weight)
    build.ids_hash = np.zeros(offset, np.uint64)
    build.types_hash = np.zeros(offset, np.uint64)
    build.left_out = np.zeros(offset, bool)
    return build


def _scan_block(
    build: Build,
    file: BuildFile,
    first_row: int,
    ids: np.ndarray,
    types: np.ndarray | None,
    ignore_padding: bool,
) -> np.ndarray | None:
    """Hash one block into the build's index and add its type counts; return its small types."""
    at = slice(file.offset + first_row, file.offset + first_row + len(ids))
    small = None
    if types is None:
        build.types_hash[at] = _UNTYPED
        build.untyped_targets += len(ids) * max(0, ids.shape[1] - 1)
    else:
        small = as_small_types(types)
        build.types_hash[at] = hash_types(small)
        build.counts += type_counts(small)
        build.target_counts += type_counts(small[:, 1:])
        table = weight_table(build.prompt_loss_weight) > 0
        carries = np.zeros(small[:, 1:].shape, bool)
        for token_type in np.flatnonzero(table):
            carries |= small[:, 1:] == token_type
        build.rows_without_loss += int(np.count_nonzero(~carries.any(axis=1)))
        if ignore_padding:
            pad = small == TokenType.PADDING
            build.left_out[at] = pad.all(axis=1)
            # Padding hashes as -1 whatever its id: EOS-padded and PAD-padded rows match.
            ids = np.where(pad, -1, ids)
    if types is None and ids.shape[1] < 2:
        build.rows_without_loss += len(ids)
    build.ids_hash[at] = hash_ids(ids)
    return small


# --- the comparison ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffOptions:
    """What to compare: the loss weight for the learned totals, what to ignore, rows to show."""

    prompt_loss_weight: float = 0.0
    ignore: frozenset[str] = frozenset()
    show_rows: int = 0  # changed rows to return for display


@dataclass
class ShownRow:
    """A changed row to display: a matched pair (both sides) or a row found on one side only."""

    kind: str  # "types changed", "only in A", "only in B"
    a: tuple[str, int] | None  # (file name, row) in A
    b: tuple[str, int] | None
    input_ids: np.ndarray
    a_types: np.ndarray | None
    b_types: np.ndarray | None

    @property
    def changed(self) -> np.ndarray | None:
        if self.a_types is None or self.b_types is None:
            return None
        return self.a_types != self.b_types


@dataclass
class DiffResult:
    a: Build
    b: Build
    options: DiffOptions
    matched: int = 0
    moved: int = 0  # matched rows not at the same position of a same-named file
    only_in_a: int = 0
    only_in_b: int = 0
    left_out_a: int = 0
    left_out_b: int = 0
    types_changed_rows: int = 0  # matched rows typed in both builds, their types differing
    typed_on_one_side: int = 0  # matched rows with token_type_ids in one build only
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((N_TYPES + 1,) * 2, np.int64))
    same_order: bool = True
    positional: dict[str, int] | None = None
    files_only_in_a: list[str] = field(default_factory=list)
    files_only_in_b: list[str] = field(default_factory=list)
    shown: list[ShownRow] = field(default_factory=list)

    @property
    def tokens_changed(self) -> int:
        return int(self.matrix.sum() - np.trace(self.matrix))

    @property
    def differences(self) -> list[str]:
        """Why the builds teach differently; empty when they teach the same thing."""
        found = []
        a, b = self.a.seq_len, self.b.seq_len
        if a is not None and b is not None and a != b:
            found.append(f"seq_len {a} in A but {b} in B (no row can match)")
        if self.only_in_a:
            found.append(f"{_plural(self.only_in_a, 'row')} only in A")
        if self.only_in_b:
            found.append(f"{_plural(self.only_in_b, 'row')} only in B")
        if self.types_changed_rows:
            found.append(
                f"types changed in {_plural(self.types_changed_rows, 'matched row')}"
                f" ({_plural(self.tokens_changed, 'token')})"
            )
        if self.typed_on_one_side:
            found.append(
                f"token_type_ids in one build only for"
                f" {_plural(self.typed_on_one_side, 'matched row')} (without them the trainer"
                " learns every token)"
            )
        if not self.same_order and "order" not in self.options.ignore:
            found.append("rows in another order (--ignore order accepts that)")
        return found

    def as_dict(self) -> dict[str, object]:
        matrix = {
            source: {
                target: int(self.matrix[i, j])
                for j, target in enumerate(MATRIX_NAMES)
                if i != j and self.matrix[i, j]
            }
            for i, source in enumerate(MATRIX_NAMES)
        }
        return {
            "inputs": [str(self.a.path), str(self.b.path)],
            "a": self.a.as_dict(),
            "b": self.b.as_dict(),
            "prompt_loss_weight": self.options.prompt_loss_weight,
            "ignore": sorted(self.options.ignore),
            "same": not self.differences,
            "differences": self.differences,
            "learned_change": self.b.learned - self.a.learned,
            # Not "rows": that name is a row count in every output.
            "matching": {
                "matched": self.matched,
                "moved": self.moved,
                "only_in_a": self.only_in_a,
                "only_in_b": self.only_in_b,
                "left_out_a": self.left_out_a,
                "left_out_b": self.left_out_b,
                "types_changed": self.types_changed_rows,
                "typed_on_one_side": self.typed_on_one_side,
                "same_order": self.same_order,
            },
            "type_changes": {name: row for name, row in matrix.items() if row},
            "tokens_changed": self.tokens_changed,
            "by_position": self.positional,
            "files_only_in_a": self.files_only_in_a,
            "files_only_in_b": self.files_only_in_b,
            "shown": [
                {
                    "kind": row.kind,
                    "a": None if row.a is None else {"file": row.a[0], "row": row.a[1]},
                    "b": None if row.b is None else {"file": row.b[0], "row": row.b[1]},
                    "input_ids": row.input_ids.tolist(),
                    "a_token_type_ids": None if row.a_types is None else row.a_types.tolist(),
                    "b_token_type_ids": None if row.b_types is None else row.b_types.tolist(),
                }
                for row in self.shown
            ],
        }


def diff_builds(
    a: str | os.PathLike,
    b: str | os.PathLike,
    options: DiffOptions = DiffOptions(),
    progress: Callable[[int], None] | None = None,
) -> DiffResult:
    """Compare two shards, or two folders of shards paired by relative name."""
    a, b = Path(a), Path(b)
    unknown = set(options.ignore) - set(IGNORABLE)
    if unknown:
        raise OptionError(
            f"--ignore {','.join(sorted(unknown))}: use {' or '.join(IGNORABLE)} (comma-separated)"
        )
    build_a = _open_build(a, options.prompt_loss_weight)
    build_b = _open_build(b, options.prompt_loss_weight)
    if a.is_dir() != b.is_dir():
        raise OptionError(
            f"{a} and {b}: compare two shards or two folders, not a"
            f" {'folder' if a.is_dir() else 'file'} with a {'folder' if b.is_dir() else 'file'}"
        )
    result = DiffResult(build_a, build_b, options)
    if a.is_dir():
        names_a = {f.name: f for f in build_a.files}
        names_b = {f.name: f for f in build_b.files}
        pairs: list[tuple[BuildFile | None, BuildFile | None]] = [
            (f, names_b.get(f.name)) for f in build_a.files
        ]
        pairs += [(None, f) for f in build_b.files if f.name not in names_a]
        result.files_only_in_a = [f.name for f in build_a.files if f.name not in names_b]
        result.files_only_in_b = [f.name for f in build_b.files if f.name not in names_a]
    else:
        pairs = [(build_a.files[0], build_b.files[0])]
    ignore_padding = "padding" in options.ignore
    aligned: list[tuple[BuildFile, BuildFile]] = []
    for file_a, file_b in pairs:
        if (
            file_a is not None
            and file_b is not None
            and (file_a.rows, file_a.seq_len) == (file_b.rows, file_b.seq_len)
        ):
            aligned.append((file_a, file_b))
            _scan_aligned(build_a, file_a, build_b, file_b, result, ignore_padding, progress)
            continue
        for build, file in ((build_a, file_a), (build_b, file_b)):
            if file is not None:
                _scan_alone(build, file, ignore_padding, progress)
    partners = [(fa, fb) for fa, fb in pairs if fa is not None and fb is not None]
    _match(result, aligned, partners)
    return result


def _file_blocks(file: BuildFile, rows_per_step: int | None = None):
    """(first_row, ids, types or None) blocks of one file."""
    with readable(file.path), open_shard(file.path) as shard:
        ids = require_rows_dataset(shard, INPUT_IDS)
        types = types_dataset(shard, ids)
        datasets = [ids] if types is None else [ids, types]
        for first_row, blocks in iter_row_chunks(datasets, rows_per_step):
            yield first_row, blocks[0], None if types is None else blocks[1]


def _scan_alone(
    build: Build, file: BuildFile, ignore_padding: bool, progress: Callable[[int], None] | None
) -> None:
    for first_row, ids, types in _file_blocks(file):
        _scan_block(build, file, first_row, ids, types, ignore_padding)
        if progress is not None:
            progress(ids.size)


def _scan_aligned(
    build_a: Build,
    file_a: BuildFile,
    build_b: Build,
    file_b: BuildFile,
    result: DiffResult,
    ignore_padding: bool,
    progress: Callable[[int], None] | None,
) -> None:
    """Both files of a same-shaped pair in step: rows at one position are compared right away."""
    # One step for both, so their blocks cover the same rows.
    with readable(file_a.path), open_shard(file_a.path) as shard:
        rows_per_step = read_step_rows(require_rows_dataset(shard, INPUT_IDS))
    with contextlib.closing(_file_blocks(file_b, rows_per_step)) as blocks_b:
        for first_row, ids_a, types_a in _file_blocks(file_a, rows_per_step):
            _, ids_b, types_b = next(blocks_b)
            small_a = _scan_block(build_a, file_a, first_row, ids_a, types_a, ignore_padding)
            small_b = _scan_block(build_b, file_b, first_row, ids_b, types_b, ignore_padding)
            if progress is not None:
                progress(ids_a.size + ids_b.size)
            if small_a is None or small_b is None:
                continue
            at_a = slice(file_a.offset + first_row, file_a.offset + first_row + len(ids_a))
            at_b = slice(file_b.offset + first_row, file_b.offset + first_row + len(ids_b))
            # Rows that will pair with their partner at the same position (matching takes
            # aligned equal-id rows first) and whose types differ.
            rows = np.flatnonzero(
                (build_a.ids_hash[at_a] == build_b.ids_hash[at_b])
                & (build_a.types_hash[at_a] != build_b.types_hash[at_b])
                & ~build_a.left_out[at_a]
                & ~build_b.left_out[at_b]
            )
            if rows.size:
                _add_changes(result.matrix, small_a[rows], small_b[rows])


def _add_changes(matrix: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Add the from->to counts of the tokens whose type differs between two stacks of rows."""
    differ = a != b
    source = a[differ].astype(np.intp)
    target = b[differ].astype(np.intp)
    source[source < 0] = _INVALID
    target[target < 0] = _INVALID
    size = N_TYPES + 1
    matrix += np.bincount(source * size + target, minlength=size * size).reshape(size, size)


# --- matching ------------------------------------------------------------------------------------


def _pair(keys_a: np.ndarray, keys_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair equal keys one to one, as multisets: positions into `keys_a` and `keys_b`.

    A key held k times in A and m times in B gives min(k, m) pairs, each side's copies taken in
    their given order. Sorting each side and searching the other keeps the memory at a few
    8-byte arrays per key, with no Python loop per key.
    """
    if not len(keys_a) or not len(keys_b):
        return np.empty(0, np.intp), np.empty(0, np.intp)
    order_a = np.argsort(keys_a, kind="stable")
    sorted_a = keys_a[order_a]
    order_b = np.argsort(keys_b, kind="stable")
    sorted_b = keys_b[order_b]
    # The k-th copy of a key in A pairs with the k-th copy in B, if B has that many.
    rank = np.arange(len(sorted_a)) - np.searchsorted(sorted_a, sorted_a, side="left")
    partner = np.searchsorted(sorted_b, sorted_a, side="left") + rank
    del rank
    found = partner < np.searchsorted(sorted_b, sorted_a, side="right")
    return order_a[found], order_b[partner[found]]


def _match(
    result: DiffResult,
    aligned: list[tuple[BuildFile, BuildFile]],
    partners: list[tuple[BuildFile, BuildFile]],
) -> None:
    a, b = result.a, result.b
    result.left_out_a = int(np.count_nonzero(a.left_out))
    result.left_out_b = int(np.count_nonzero(b.left_out))
    free_a, free_b = ~a.left_out, ~b.left_out
    compared = same = ids_differ = types_differ = 0
    changed_aligned = one_sided = 0
    for file_a, file_b in aligned:
        # Files of a pair with one shape are the same rows on both sides: slices, not copies.
        at_a = slice(file_a.offset, file_a.offset + file_a.rows)
        at_b = slice(file_b.offset, file_b.offset + file_b.rows)
        equal_ids = a.ids_hash[at_a] == b.ids_hash[at_b]
        equal_types = a.types_hash[at_a] == b.types_hash[at_b]
        compared += file_a.rows
        same += int(np.count_nonzero(equal_ids & equal_types))
        ids_differ += int(np.count_nonzero(~equal_ids))
        types_differ += int(np.count_nonzero(equal_ids & ~equal_types))
        pair = equal_ids & free_a[at_a] & free_b[at_b]
        free_a[at_a] &= ~pair
        free_b[at_b] &= ~pair
        untyped = (a.types_hash[at_a] == _UNTYPED) != (b.types_hash[at_b] == _UNTYPED)
        one_sided += int(np.count_nonzero(pair & untyped))
        changed_aligned += int(np.count_nonzero(pair & ~equal_types & ~untyped))
        result.matched += int(np.count_nonzero(pair))
    if aligned:
        result.positional = {
            "rows": compared,
            "same": same,
            "ids_differ": ids_differ,
            "types_differ": types_differ,
        }
    # The rest pair up by content: ids and types first, so that of two copies of a row the one
    # whose types are unchanged pairs with its twin, then by ids alone.
    index_a, index_b = np.flatnonzero(free_a), np.flatnonzero(free_b)
    moved_a, moved_b = [], []
    for with_types in (True, False):
        keys_a, keys_b = a.ids_hash[index_a], b.ids_hash[index_b]
        if with_types:
            keys_a ^= a.types_hash[index_a] * _MIX1
            keys_b ^= b.types_hash[index_b] * _MIX1
        pos_a, pos_b = _pair(keys_a, keys_b)
        del keys_a, keys_b
        moved_a.append(index_a[pos_a])
        moved_b.append(index_b[pos_b])
        index_a = np.delete(index_a, pos_a)
        index_b = np.delete(index_b, pos_b)
    pairs_a, pairs_b = np.concatenate(moved_a), np.concatenate(moved_b)
    del moved_a, moved_b
    result.moved = int(np.count_nonzero(~_in_place(partners, pairs_a, pairs_b)))
    result.matched += len(pairs_a)
    result.only_in_a, result.only_in_b = len(index_a), len(index_b)
    untyped = (a.types_hash[pairs_a] == _UNTYPED) != (b.types_hash[pairs_b] == _UNTYPED)
    changed = (a.types_hash[pairs_a] != b.types_hash[pairs_b]) & ~untyped
    result.types_changed_rows = changed_aligned + int(np.count_nonzero(changed))
    result.typed_on_one_side = one_sided + int(np.count_nonzero(untyped))
    del untyped
    _compare_moved(result, pairs_a[changed], pairs_b[changed])
    free_a[pairs_a] = False
    free_b[pairs_b] = False
    # Rows only on one side are differences of their own; the order asks about the rest.
    matched_a, matched_b = ~(free_a | a.left_out), ~(free_b | b.left_out)
    del free_a, free_b
    result.same_order = np.array_equal(a.ids_hash[matched_a], b.ids_hash[matched_b])
    if result.options.show_rows:
        _pick_shown(result, aligned, pairs_a[changed], pairs_b[changed], index_a, index_b)


def _in_place(
    partners: list[tuple[BuildFile, BuildFile]], rows_a: np.ndarray, rows_b: np.ndarray
) -> np.ndarray:
    """Which pairs sit at the same row of files of the same name (of different shapes)."""
    found = np.zeros(len(rows_a), bool)
    for file_a, file_b in partners:
        local = rows_a - file_a.offset
        inside = (local >= 0) & (local < file_a.rows) & (local < file_b.rows)
        found |= inside & (rows_b == file_b.offset + local)
    return found


# --- pass 2: types of matched rows at different positions ----------------------------------------


def _locate(build: Build, rows: np.ndarray) -> Iterator[tuple[BuildFile, np.ndarray, np.ndarray]]:
    """(file, rows within it, positions in `rows`) for build-wide row indices, file by file."""
    offsets = np.array([f.offset for f in build.files])
    which = np.searchsorted(offsets, rows, side="right") - 1
    for number, file in enumerate(build.files):
        positions = np.flatnonzero(which == number)
        if positions.size:
            yield file, rows[positions] - file.offset, positions


def _read_types_rows(file: BuildFile, rows: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions in `rows`, their small types) chunk by chunk, reading only chunks holding some."""
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    with readable(file.path), open_shard(file.path) as shard:
        types = types_dataset(shard, require_rows_dataset(shard, INPUT_IDS))
        assert types is not None, "only rows typed in both builds are compared by their types"
        per_chunk = types.chunks[0] if types.chunks else 1024
        chunk = sorted_rows // per_chunk
        bounds = np.flatnonzero(np.diff(chunk)) + 1
        for part in np.split(np.arange(len(rows)), bounds):
            start = int(chunk[part[0]]) * per_chunk
            block = as_small_types(types[start : min(start + per_chunk, file.rows)])
            yield order[part], block[sorted_rows[part] - start]


def _compare_moved(result: DiffResult, rows_a: np.ndarray, rows_b: np.ndarray) -> None:
    """Count the type changes of matched rows that sit at different positions (pass 2).

    B's types of those rows are gathered first (in memory, or in a temporary file when large),
    then A's are read and compared; each side reads only the chunks holding such rows.
    """
    if not rows_a.size:
        return
    offsets_b = np.array([f.offset for f in result.b.files])
    lengths = np.array([f.seq_len for f in result.b.files])
    seq_len = lengths[np.searchsorted(offsets_b, rows_b, side="right") - 1]
    starts = np.concatenate([[0], np.cumsum(seq_len)[:-1]])
    total = int(seq_len.sum())
    with contextlib.ExitStack() as stack:
        if total <= _IN_MEMORY_BYTES:
            store = np.empty(total, np.int8)
        else:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="tokentype-diff-"))
            store = np.lib.format.open_memmap(
                Path(folder) / "types.npy", mode="w+", dtype=np.int8, shape=(total,)
            )
        for file, rows, positions in _locate(result.b, rows_b):
            for at, types in _read_types_rows(file, rows):
                store[starts[positions[at]][:, None] + np.arange(types.shape[1])] = types
        for file, rows, positions in _locate(result.a, rows_a):
            for at, types in _read_types_rows(file, rows):
                other = store[starts[positions[at]][:, None] + np.arange(types.shape[1])]
                _add_changes(result.matrix, types, other)
        del store


# --- rows to show --------------------------------------------------------------------------------


def _read_row(build: Build, row: int) -> tuple[str, int, np.ndarray, np.ndarray | None]:
    (file, rows, _), *_ = _locate(build, np.array([row]))
    with readable(file.path), open_shard(file.path) as shard:
        ids = require_rows_dataset(shard, INPUT_IDS)
        types = types_dataset(shard, ids)
        local = int(rows[0])
        return (
            file.name,
            local,
            np.asarray(ids[local]),
            None if types is None else np.asarray(types[local]),
        )


def _pick_shown(
    result: DiffResult,
    aligned: list[tuple[BuildFile, BuildFile]],
    moved_a: np.ndarray,
    moved_b: np.ndarray,
    only_a: np.ndarray,
    only_b: np.ndarray,
) -> None:
    """Up to `show_rows` changed rows: type changes first (in A's order), then one-sided rows."""
    a, b = result.a, result.b
    want = result.options.show_rows
    candidates_a, candidates_b = [moved_a], [moved_b]
    for file_a, file_b in aligned:
        rows_a = np.arange(file_a.offset, file_a.offset + file_a.rows)
        rows_b = rows_a - file_a.offset + file_b.offset
        pick = (
            (a.ids_hash[rows_a] == b.ids_hash[rows_b])
            & (a.types_hash[rows_a] != b.types_hash[rows_b])
            & ~a.left_out[rows_a]
            & ~b.left_out[rows_b]
        )
        candidates_a.append(rows_a[pick][:want])
        candidates_b.append(rows_b[pick][:want])
    pairs_a, pairs_b = np.concatenate(candidates_a), np.concatenate(candidates_b)
    order = np.argsort(pairs_a, kind="stable")[:want]
    for row_a, row_b in zip(pairs_a[order].tolist(), pairs_b[order].tolist(), strict=True):
        name_a, local_a, ids, types_a = _read_row(a, row_a)
        name_b, local_b, _, types_b = _read_row(b, row_b)
        result.shown.append(
            ShownRow("types changed", (name_a, local_a), (name_b, local_b), ids, types_a, types_b)
        )
    for kind, build, rows in (("only in A", a, only_a), ("only in B", b, only_b)):
        for row in rows[: max(0, want - len(result.shown))].tolist():
            name, local, ids, types = _read_row(build, row)
            where = (name, local)
            result.shown.append(
                ShownRow(
                    kind,
                    where if build is a else None,
                    where if build is b else None,
                    ids,
                    types if build is a else None,
                    types if build is b else None,
                )
            )


# --- text output ---------------------------------------------------------------------------------


def format_diff(result: DiffResult) -> str:
    """The human-readable comparison: both builds side by side, matching, type changes, verdict."""
    a, b = result.a, result.b
    lines = [_build_line("A", a), _build_line("B", b), ""]
    table: list[tuple[str, int | float, int | float]] = [
        ("rows", a.rows, b.rows),
        ("tokens", a.tokens, b.tokens),
    ]
    if a.typed or b.typed:
        table += [
            (f"  {TOKEN_TYPE_NAMES[t]}", int(a.counts[t]), int(b.counts[t])) for t in TokenType
        ]
        if a.counts[N_TYPES] or b.counts[N_TYPES]:
            table.append(("  outside 0..3", int(a.counts[N_TYPES]), int(b.counts[N_TYPES])))
    weight = f"{result.options.prompt_loss_weight:g}"
    table += [
        (f"learned at prompt_loss_weight {weight}", a.learned, b.learned),
        ("rows without loss", a.rows_without_loss, b.rows_without_loss),
    ]
    width = max(len(name) for name, _, _ in table)
    lines.append(f"{'':<{width}}  {'A':>14}  {'B':>14}  {'B - A':>12}")
    for name, value_a, value_b in table:
        lines.append(
            f"{name:<{width}}  {_number(value_a):>14}  {_number(value_b):>14}"
            f"  {_number(value_b - value_a, sign=True):>12}"
        )
    lines.append("")
    moved = f" ({result.moved:,} at another position)" if result.moved else ""
    lines.append(
        f"rows by content: {result.matched:,} matched{moved}, {result.only_in_a:,} only in A,"
        f" {result.only_in_b:,} only in B"
    )
    if result.left_out_a or result.left_out_b:
        lines.append(
            f"  left out (only padding): {result.left_out_a:,} in A, {result.left_out_b:,} in B"
        )
    if result.types_changed_rows:
        lines.append(
            f"types changed in {_plural(result.types_changed_rows, 'matched row')},"
            f" {_plural(result.tokens_changed, 'token')} (from \\ to):"
        )
        lines.extend(_matrix_lines(result.matrix))
    elif not result.typed_on_one_side:
        lines.append("types: the same in every matched row")
    if result.typed_on_one_side:
        lines.append(
            f"token_type_ids in one build only: {_plural(result.typed_on_one_side, 'matched row')}"
        )
    if result.positional is not None:
        p = result.positional
        lines.append(
            f"by position ({_plural(p['rows'], 'row')} of same-shaped files): {p['same']:,} same,"
            f" {p['ids_differ']:,} ids differ, {p['types_differ']:,} types differ"
        )
    for side, names in (("A", result.files_only_in_a), ("B", result.files_only_in_b)):
        if names:
            more = f" and {len(names) - _LISTED_FILES:,} more" if len(names) > _LISTED_FILES else ""
            lines.append(f"files only in {side}: " + ", ".join(names[:_LISTED_FILES]) + more)
    differences = result.differences
    if differences:
        lines.append("differ: " + "; ".join(differences))
    else:
        ignored = f" (ignoring {', '.join(sorted(result.options.ignore))})"
        lines.append(
            "same: both builds teach the same thing" + (ignored if result.options.ignore else "")
        )
    return "\n".join(lines) + "\n"


# The text report names this many files only in A (or B); --json lists them all.
_LISTED_FILES = 8


def _build_line(label: str, build: Build) -> str:
    files = f"  ({len(build.files)} files)" if build.path.is_dir() else ""
    seq_len = "mixed" if build.seq_len is None else f"{build.seq_len:,}"
    types = (
        ""
        if build.typed
        else "  (no token_type_ids in some files)"
        if any(f.typed for f in build.files)
        else "  (no token_type_ids)"
    )
    return f"{label}  {build.path}{files}  rows {build.rows:,}  seq_len {seq_len}{types}"


def _number(value: float, sign: bool = False) -> str:
    text = f"{value:+,}" if sign else f"{value:,}"
    if isinstance(value, float):
        text = f"{value:+,.6g}" if sign else f"{value:,.6g}"
        if value == int(value) and abs(value) < 1e15:
            text = f"{int(value):+,}" if sign else f"{int(value):,}"
    return "0" if sign and value == 0 else text


def _matrix_lines(matrix: np.ndarray) -> list[str]:
    used = [
        i for i in range(len(MATRIX_NAMES)) if i < N_TYPES or matrix[i].any() or matrix[:, i].any()
    ]
    width = max(len(MATRIX_NAMES[i]) for i in used) + 2
    lines = ["  " + " " * width + "".join(f"{MATRIX_NAMES[j]:>12}" for j in used)]
    for i in used:
        cells = "".join(
            f"{'·' if i == j or not matrix[i, j] else f'{int(matrix[i, j]):,}':>12}" for j in used
        )
        lines.append(f"  {MATRIX_NAMES[i]:<{width}}{cells}")
    return lines


def format_shown(
    result: DiffResult,
    *,
    tokenizer: LoadedTokenizer | None = None,
    color: bool = False,
) -> str:
    """The shown rows, A above B, the tokens whose type changed marked."""
    lines = []
    for row in result.shown:
        where = []
        if row.a is not None:
            where.append(f"A {row.a[0]} row {row.a[1]}")
        if row.b is not None:
            where.append(f"B {row.b[0]} row {row.b[1]}")
        changed = row.changed
        count = "" if changed is None else f" ({_plural(int(np.count_nonzero(changed)), 'token')})"
        lines.append(f"{row.kind}: {', '.join(where)}{count}")
        for label, types in (("A", row.a_types), ("B", row.b_types)):
            side = row.a if label == "A" else row.b
            if side is None:
                continue
            text = format_row(
                row.input_ids, types, tokenizer=tokenizer, color=color, changed=changed
            )
            lines.append(f"  {label}  {text}")
    return "".join(line + "\n" for line in lines)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
