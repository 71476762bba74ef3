"""add-types: attach a token_type_ids array from a .npy, JSONL or HDF5 source to a shard."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import h5py
import numpy as np

from tokentype_cli import interrupts
from tokentype_cli.errors import DatasetExistsError, SourceError
from tokentype_cli.loss import type_counts
from tokentype_cli.schema.names import INPUT_IDS, MAX_TOKEN_TYPE, TOKEN_TYPE_IDS, Provenance
from tokentype_cli.schema.read import iter_row_chunks, open_shard, read_errors, require_rows_dataset
from tokentype_cli.schema.storage import step_rows
from tokentype_cli.schema.temporary import temporary_folder
from tokentype_cli.schema.write import (
    rewrite_target,
    write_dataset_atomically,
)

STDIN = "-"
# Parsed JSONL types are kept on disk in this dtype until they are written.
TYPES_DTYPE = np.dtype("<i1")


@dataclass(frozen=True)
class AddTypesResult:
    """What add-types wrote."""

    path: Path
    rows: int
    seq_len: int
    counts: dict[int, int]


def add_types(
    file: str | os.PathLike,
    source: str,
    *,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    provenance: Provenance | None = None,
    stdin: IO[str] | None = None,
    allow_external: bool = False,
) -> AddTypesResult:
    """Check the whole `source` against FILE's input_ids, then write it as token_type_ids.

    Nothing is written unless every value passes; FILE is replaced atomically (or left untouched
    when `output` is given, which may be neither FILE nor the source). An in-place run holds
    FILE's write lock from the start, so a second writer is refused before it does any work.
    """
    file = Path(file)
    inputs = {"the types source": None if source == STDIN else _split_source(source)[0]}
    with rewrite_target(file, output, inputs) as target:
        with open_shard(file, allow_external=allow_external) as shard, read_errors(file):
            rows, seq_len = require_rows_dataset(shard, INPUT_IDS).shape
            if TOKEN_TYPE_IDS in shard and not overwrite:
                raise DatasetExistsError(
                    f"{file}: dataset '{TOKEN_TYPE_IDS}' already exists; pass --overwrite to"
                    " replace it"
                )
        # A JSONL source is spooled where the result goes: FILE's folder may be read-only with -o.
        with _open_source(source, (rows, seq_len), file, target, stdin, allow_external) as blocks:
            counts = _check_blocks(blocks(), source)
            target = write_dataset_atomically(
                file,
                TOKEN_TYPE_IDS,
                (block for _, block in blocks()),
                output=output,
                overwrite=overwrite,
                provenance=provenance,
                allow_external=allow_external,
                inputs=inputs,
            )
    return AddTypesResult(path=target, rows=rows, seq_len=seq_len, counts=counts)


def _bad_type(where: str, row: int, column: int, value: object) -> SourceError:
    return SourceError(
        f"{where}: row {row}, column {column} has type {value}; token types are"
        " 0 prompt, 1 completion, 2 padding, 3 separator"
    )


BlockSource = Callable[[], Iterator[tuple[int, np.ndarray]]]


def _check_blocks(blocks: Iterator[tuple[int, np.ndarray]], source: str) -> dict[int, int]:
    """Check every value is a token type (0..3); return how many of each there are."""
    counts = np.zeros(MAX_TOKEN_TYPE + 1, dtype=np.int64)
    for first_row, block in blocks:
        bad = (block < 0) | (block > MAX_TOKEN_TYPE)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise _bad_type(source, first_row + row, column, block[row, column])
        counts += type_counts(block)[: MAX_TOKEN_TYPE + 1]
    return {kind: int(count) for kind, count in enumerate(counts)}


@contextlib.contextmanager
def _open_source(
    source: str,
    shape: tuple[int, int],
    file: Path,
    spool: Path,
    stdin: IO[str] | None,
    allow_external: bool = False,
) -> Iterator[BlockSource]:
    """Yield a function that streams the source as (first_row, int block) pairs, any number of times.

    A JSONL source is spooled in a temporary folder beside `spool` (the file written).
    """
    if source == STDIN:
        with _jsonl_to_npy(stdin, "<stdin>", shape, file, spool) as array:
            yield _array_blocks(array)
        return
    path, dataset_name = _split_source(source)
    if not path.exists():
        raise SourceError(
            f"{source}: no such file; give a .npy, .jsonl or HDF5 file, or - for stdin"
        )
    if path.is_dir():
        raise SourceError(f"{source}: is a folder; give a .npy, .jsonl or HDF5 file")
    if path.suffix == ".npy":
        array = _open_npy(path)
        _check_array(array, shape, source, file)
        yield _array_blocks(array)
    elif path.suffix in (".jsonl", ".json", ".ndjson"):
        try:
            lines = open(path, encoding="utf-8")  # noqa: SIM115 (closed by the with below)
        except OSError as exc:
            raise SourceError(
                f"{path}: cannot be read ({exc.strerror or exc}); check the file and its permissions"
            ) from exc
        with lines, _jsonl_to_npy(lines, str(path), shape, file, spool) as array:
            yield _array_blocks(array)
    elif h5py.is_hdf5(path):
        with open_shard(path, allow_external=allow_external) as shard:
            name = dataset_name or TOKEN_TYPE_IDS
            with read_errors(path):
                if name not in shard or not isinstance(shard[name], h5py.Dataset):
                    raise SourceError(
                        f"{path}: no dataset '{name}'; name one with {path}:DATASET"
                        f" (it holds {', '.join(sorted(shard.keys())) or 'nothing'})"
                    )
                dataset = shard[name]
                _check_array(dataset, shape, f"{path}:{name}", file)
                # Never-written storage would read as fill values.
                dataset = require_rows_dataset(shard, name)
            yield lambda: ((row, block) for row, (block,) in iter_row_chunks([dataset]))
    else:
        raise SourceError(
            f"{source}: unknown source format; use a .npy array, a .jsonl of lists, an HDF5 file"
            " (PATH or PATH:DATASET) or - for JSONL on stdin"
        )


def _split_source(source: str) -> tuple[Path, str | None]:
    """`PATH:DATASET` names a dataset in an HDF5 file; a path that exists as given wins."""
    if Path(source).exists() or ":" not in source:
        return Path(source), None
    path, _, dataset = source.rpartition(":")
    return Path(path), dataset or None


@dataclass(frozen=True)
class _NpyRows:
    """A 2-D .npy file read a block of rows at a time with plain reads.

    A memory map would do the same with less code, but every page it touches counts in the
    process's resident memory, which then grows with the source instead of staying flat. Other
    shapes are only looked at (the shape check refuses them).
    """

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    fortran_order: bool = False

    def __getitem__(self, rows: slice) -> np.ndarray:
        first, stop, _ = rows.indices(self.shape[0])
        width = self.shape[1]
        height = max(0, stop - first)
        size = self.dtype.itemsize
        if not self.fortran_order:
            block = np.fromfile(
                self.path,
                self.dtype,
                count=height * width,
                offset=self.offset + first * width * size,
            )
        else:
            # Column-major: each column of the block is one contiguous run of the file.
            block = np.empty((height, width), dtype=self.dtype)
            with open(self.path, "rb") as handle:
                for column in range(width):
                    handle.seek(self.offset + (column * self.shape[0] + first) * size)
                    block[:, column] = np.frombuffer(handle.read(height * size), self.dtype)
        if block.size != height * width:
            raise SourceError(f"{self.path}: file ends early; the .npy array is truncated")
        return block.reshape(-1, width)


def _open_npy(path: Path) -> _NpyRows:
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(handle)
            offset = handle.tell()
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: not a readable .npy array ({exc})") from exc
    if dtype.hasobject:
        raise SourceError(f"{path}: holds Python objects; save an integer array")
    expected = offset + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise SourceError(
            f"{path}: file ends early ({size:,} of {expected:,} bytes); the .npy array is"
            " truncated: save it again"
        )
    return _NpyRows(path, tuple(shape), dtype, offset, bool(fortran_order))


def _check_array(array, shape: tuple[int, int], source: str, file: Path) -> None:
    if tuple(array.shape) != shape:
        raise SourceError(
            f"{source}: shape {tuple(array.shape)} differs from {INPUT_IDS} {shape} in {file};"
            " give one type per token"
        )
    if array.dtype.kind not in "iu":
        raise SourceError(
            f"{source}: dtype {array.dtype} is not an integer type; give integer types"
        )


def _array_blocks(array) -> BlockSource:
    rows, seq_len = array.shape
    step = step_rows(seq_len)

    def blocks() -> Iterator[tuple[int, np.ndarray]]:
        for first in range(0, rows, step):
            interrupts.check()
            yield first, np.asarray(array[first : first + step])

    return blocks


@contextlib.contextmanager
def _jsonl_to_npy(
    lines: IO[str] | None, name: str, shape: tuple[int, int], file: Path, spool: Path
) -> Iterator[_NpyRows]:
    """Parse one JSON list of ints per line into a temporary .npy in `spool`, so memory stays flat."""
    if lines is None:
        raise SourceError(f"{name}: no standard input to read types from")
    rows, seq_len = shape
    try:
        spooled = temporary_folder(spool)
        folder = spooled.__enter__()
    except OSError as exc:
        raise SourceError(
            f"{name}: cannot spool the types beside {spool} ({exc.strerror or exc}); check that"
            " the folder exists and is writable"
        ) from exc
    with contextlib.ExitStack() as stack:
        stack.push(spooled)
        path = folder / "types.npy"
        with open(path, "wb") as out:
            header = {"descr": np.lib.format.dtype_to_descr(TYPES_DTYPE), "fortran_order": False}
            np.lib.format.write_array_header_2_0(out, {**header, "shape": shape})
            row = 0
            for number, line in enumerate(_decoded(lines, name), start=1):
                interrupts.check()
                if not line.strip():
                    continue
                if row >= rows:
                    raise SourceError(
                        f"{name}:{number}: more than the {rows} rows of {INPUT_IDS} in {file};"
                        " give one line per row"
                    )
                values = _parse_jsonl_row(line, f"{name}:{number}", row, seq_len)
                out.write(values.astype(TYPES_DTYPE).tobytes())
                row += 1
        if row != rows:
            raise SourceError(
                f"{name}: {row} rows but {INPUT_IDS} in {file} has {rows}; give one line per row"
            )
        yield _open_npy(path)


def _decoded(lines: IO[str], name: str) -> Iterator[str]:
    try:
        yield from lines
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{name}: not UTF-8 text ({exc.reason}); give JSON lists of ints"
        ) from exc


def _parse_jsonl_row(line: str, where: str, row: int, seq_len: int) -> np.ndarray:
    try:
        values = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SourceError(
            f"{where}: not valid JSON ({exc.msg}); each line is a list of ints"
        ) from exc
    except RecursionError as exc:
        raise SourceError(
            f"{where}: JSON nested too deeply; each line is a flat list of ints"
        ) from exc
    if not isinstance(values, list):
        raise SourceError(
            f"{where}: a JSON {type(values).__name__}; each line must be a list of ints"
        )
    if len(values) != seq_len:
        raise SourceError(f"{where}: {len(values)} types but rows hold {seq_len} tokens")
    try:
        array = np.asarray(values)
    except (ValueError, OverflowError) as exc:
        raise SourceError(f"{where}: not a flat list of integer types ({exc})") from exc
    # numpy reads JSON true/false as 1/0 and ints beyond 64 bits as objects: look at the values.
    if array.dtype.kind not in "iu" or array.ndim != 1 or "true" in line or "false" in line:
        column = next((i for i, v in enumerate(values) if type(v) is not int), None)
        if column is not None:
            raise SourceError(
                f"{where}: column {column} is {values[column]!r}, not an integer type"
            )
        column = next(i for i, v in enumerate(values) if not 0 <= v <= MAX_TOKEN_TYPE)
        raise _bad_type(where, row, column, values[column])
    bad = (array < 0) | (array > MAX_TOKEN_TYPE)
    if bad.any():
        column = int(np.argmax(bad))
        raise _bad_type(where, row, column, array[column])
    return array
