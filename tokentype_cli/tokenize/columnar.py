"""Parquet and Arrow inputs: rows read a record batch at a time with pyarrow, each turned into the
record a JSON line holding the same content would give, so every rule downstream is the JSONL one.

Files: `.parquet`; Arrow IPC, file or stream format (`.arrow`, `.feather`; `datasets.save_to_disk`
writes the stream format); folders of them in name order (the Hub's `data/train-00000-of-00004
.parquet`), and `save_to_disk` folders (their `state.json` names the files). Rows are numbered
from 0 within each file, as pyarrow, pandas and `datasets` index them, so `file:row` can be looked
up directly.

A row becomes a dict of its columns; a struct is a dict, a list a list. Arrow has no absent key:
a struct field or column a record lacks is null, so nulls are left out of dicts, which makes a
message without "weight" (null in a column of messages where some have one) the message a JSON line
without it gives. Other types become what JSON would hold (dates as ISO text, decimals as floats).

pyarrow is imported only here, and only when such an input is read: CLI start-up stays light, and
without the `tokentype[parquet]` extra only these inputs fail, with one line naming it.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from tokentype_cli.errors import InputError

SUFFIXES = {".parquet": "parquet", ".arrow": "arrow", ".feather": "arrow"}
# Rows converted to Python at a time: about this many bytes of Arrow data, so memory follows the
# batch, not the file, whatever a row's size.
_SLICE_BYTES = 4 << 20
_MAX_SLICE_ROWS = 8192
# A Hub shard name: SPLIT-00000-of-00004.parquet.
_HUB_SHARD = re.compile(r"^(?P<split>.+?)-\d+-of-\d+\.(parquet|arrow)$")
_ARROW_FILE_MAGIC = b"ARROW1"


def _pyarrow(source: str):
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError as exc:
        raise InputError(
            f"{source}: reading Parquet and Arrow needs pyarrow ({exc}); install the extra:"
            " pip install 'tokentype[parquet]'"
        ) from exc
    return pyarrow


def columnar_format(path: str) -> str | None:
    """parquet or arrow for a file of those by its extension, else None."""
    return SUFFIXES.get(Path(path).suffix.lower())


def folder_files(folder: Path) -> list[str] | None:
    """The Parquet or Arrow files a folder stands for, in order; None when it holds none.

    A `save_to_disk` folder: the files its state.json lists. Otherwise the folder's *.parquet,
    *.arrow and *.feather files sorted by name, or those of its data/ (a Hub dataset's clone).
    Folders holding several splits (a DatasetDict, Hub shards of train and test) are refused:
    mixing a test split into training data is the mistake to stop."""
    splits_file = folder / "dataset_dict.json"
    if splits_file.is_file():
        splits = _json(splits_file).get("splits") or sorted(
            p.name for p in folder.iterdir() if p.is_dir()
        )
        raise InputError(
            f"{folder}: a datasets DatasetDict folder with the splits {', '.join(splits)};"
            f" pass one split's folder, e.g. {folder / str(splits[0])}"
        )
    state = folder / "state.json"
    if state.is_file():
        files = _json(state).get("_data_files")
        if isinstance(files, list) and files:
            names = [item.get("filename") for item in files if isinstance(item, dict)]
            return [str(folder / name) for name in names if isinstance(name, str)]
    found = sorted(
        (child for child in folder.iterdir() if columnar_format(str(child)) and child.is_file()),
        key=lambda p: p.name,
    )
    if not found and (folder / "data").is_dir():
        return folder_files(folder / "data")
    if not found:
        return None
    splits = sorted({m["split"] for p in found if (m := _HUB_SHARD.match(p.name))})
    if len(splits) > 1:
        first = next(p for p in found if _HUB_SHARD.match(p.name))
        raise InputError(
            f"{first.parent}: holds the splits {', '.join(splits)} (Hub-style shard names); pass"
            f" one split's files, e.g. {first.parent}/{splits[-1]}-*{first.suffix}"
        )
    return [str(p) for p in found]


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc}); check the dataset folder") from exc
    return data if isinstance(data, dict) else {}


class _Reader:
    """One Parquet or Arrow file: its column names, row count and record batches."""

    def __init__(self, path: str, source: str) -> None:
        self.path, self.source = path, source
        pa = _pyarrow(source)
        self.kind = columnar_format(path) or "parquet"
        try:
            if self.kind == "parquet":
                # Pages streamed through a small buffer, not a whole column chunk read (and
                # pre-buffered) at once: memory follows the record batch, not the row group.
                self._parquet = pa.parquet.ParquetFile(
                    path, memory_map=False, buffer_size=1 << 20, pre_buffer=False
                )
                self.schema = self._parquet.schema_arrow
                metadata = self._parquet.metadata
                self.rows = metadata.num_rows
                # Uncompressed: about what the rows take as Arrow data in memory.
                self.size = sum(
                    metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)
                )
                per_row = max(1, self.size // max(1, self.rows))
                self._batch_rows = int(min(_MAX_SLICE_ROWS, max(16, _SLICE_BYTES // per_row)))
            else:
                with open(path, "rb") as handle:
                    self._file_format = handle.read(len(_ARROW_FILE_MAGIC)) == _ARROW_FILE_MAGIC
                self._handle = pa.OSFile(path)  # read, not mapped: memory follows the batch
                if self._file_format:
                    self._ipc = pa.ipc.open_file(self._handle)
                else:
                    self._ipc = pa.ipc.open_stream(self._handle)
                self.schema = self._ipc.schema
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: BaseException) -> InputError:
        """A read that failed: the system's error, or (pyarrow's own errors, an OSError without
        an errno among them) a file that is not what its name says or is damaged."""
        if isinstance(exc, OSError) and exc.errno is not None:
            return InputError(
                f"{self.source}: cannot read ({exc.strerror or _first(exc)}); check the file"
            )
        what = "Parquet" if self.kind == "parquet" else "Arrow IPC"
        return InputError(
            f"{self.source}: not a readable {what} file ({_first(exc)}); check the file (a"
            " download may be truncated)"
        )

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def batches(self) -> Iterator:
        """Record batches of bounded size, in order."""
        pa = _pyarrow(self.source)
        try:
            if self.kind == "parquet":
                # One row group at a time: over a whole file, iter_batches reads ahead and held
                # 1.1 GiB of a 1 GiB file with 100 MB row groups; per row group, 180 MiB.
                source = (
                    batch
                    for group in range(self._parquet.metadata.num_row_groups)
                    for batch in self._parquet.iter_batches(
                        batch_size=self._batch_rows, row_groups=[group]
                    )
                )
            elif self._file_format:
                source = (self._ipc.get_batch(i) for i in range(self._ipc.num_record_batches))
            else:
                source = iter(self._ipc)
            for batch in source:
                yield from _slices(batch)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise self._failure(exc) from exc

    def close(self) -> None:
        if self.kind == "parquet":
            self._parquet.close()
        else:
            self._handle.close()


def _slices(batch) -> Iterator:
    """A record batch in zero-copy slices of about _SLICE_BYTES: a file written as one huge
    batch still becomes Python objects a few MiB at a time."""
    rows = batch.num_rows
    if not rows:
        return
    per_row = max(1, batch.nbytes // rows)
    step = int(min(_MAX_SLICE_ROWS, max(16, _SLICE_BYTES // per_row)))
    for start in range(0, rows, step):
        yield batch.slice(start, step)


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_reader(path: str, source: str | None = None) -> _Reader:
    return _Reader(path, source or path)


def check_columns(
    path: str, source: str, needs: Callable[[list[str]], tuple[str, str] | None]
) -> None:
    """Open the file (its footer or first message) and fail, naming the columns it has, when
    `needs(columns)` says what is missing (and the fix)."""
    reader = open_reader(path, source)
    try:
        missing = needs(reader.columns)
    finally:
        reader.close()
    if missing:
        what, fix = missing
        have = ", ".join(reader.columns) or "none"
        raise InputError(f"{source}: {what} (the file has the columns {have}); {fix}")


# --- rows as records ---------------------------------------------------------------------------


def _plain(value: object) -> object:
    """A value of a type JSON does not have, as the JSON a converter would have written."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return {str(k): _plain(v) for k, v in value if v is not None}  # a map column
        return [_plain(item) for item in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _needs_plain(data_type) -> bool:
    """Whether a column's Python values need _plain: anything but strings, numbers, booleans,
    nulls and lists of them."""
    import pyarrow.types as t

    if (
        t.is_string(data_type)
        or t.is_large_string(data_type)
        or t.is_integer(data_type)
        or t.is_floating(data_type)
        or t.is_boolean(data_type)
        or t.is_null(data_type)
    ):
        return False
    if t.is_dictionary(data_type):
        return _needs_plain(data_type.value_type)
    if t.is_list(data_type) or t.is_large_list(data_type) or t.is_fixed_size_list(data_type):
        return _needs_plain(data_type.value_type)
    return not getattr(t, "is_string_view", lambda _: False)(data_type)


def records(batch) -> list[dict]:
    """The rows of a record batch as JSON-shaped dicts (see the module docstring)."""
    names = batch.schema.names
    columns = []
    for column, field in zip(batch.columns, batch.schema, strict=True):
        values = column.to_pylist()
        if _needs_plain(field.type):
            values = [None if v is None else _plain(v) for v in values]
        columns.append(values)
    if not columns:
        return [{} for _ in range(batch.num_rows)]
    return [
        {name: value for name, value in zip(names, row, strict=True) if value is not None}
        for row in zip(*columns, strict=True)
    ]


# One encoder for every row: json.dumps builds a new one per call when ensure_ascii is off.
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def _dumps(record: dict) -> bytes:
    return (_ENCODE(record) + "\n").encode("utf-8")


def dumps(record: dict) -> bytes:
    """The record's JSON line, as rejects and buckets hold it."""
    return _dumps(record)


def _bounds(array) -> np.ndarray | None:
    """Per element, a bound B with len(JSON of the element) <= 6 B + 2, from the Arrow buffers
    alone (None for a type not handled here). A string's bytes count once and every value, key
    and separator a few bytes: JSON escapes at most 6 bytes per byte of text."""
    import pyarrow.types as t

    kind = array.type
    if t.is_dictionary(kind):
        return _bounds(array.dictionary_decode())
    large = t.is_large_string(kind) or t.is_large_binary(kind)
    if large or t.is_string(kind) or t.is_binary(kind):
        if not len(array) or array.buffers()[1] is None:
            return np.full(len(array), 8, np.int64)
        # From the offsets buffer, not pyarrow.compute (a tenth of a second to import). A null
        # slot may span bytes; counting them only loosens the bound.
        offsets = np.frombuffer(array.buffers()[1], np.int64 if large else np.int32)
        window = offsets[array.offset : array.offset + len(array) + 1].astype(np.int64)
        return np.diff(window) + 8
    if t.is_list(kind) or t.is_large_list(kind) or t.is_map(kind):
        child = _bounds(array.values)
        if child is None:
            return None
        offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        total = np.concatenate([[0], np.cumsum(child)])
        return total[offsets[1:]] - total[offsets[:-1]] + 8
    if t.is_struct(kind):
        out = np.full(len(array), 8, np.int64)
        for field, values in zip(kind, array.flatten(), strict=True):
            child = _bounds(values)
            if child is None:
                return None
            out += child + len(field.name.encode("utf-8")) + 8
        return out
    if _plain_scalar(kind):
        return np.full(len(array), 40, np.int64)
    return None


def _plain_scalar(kind) -> bool:
    """Numbers, booleans, nulls, dates and times: a few dozen characters of JSON at most."""
    import pyarrow.types as t

    return (
        t.is_integer(kind)
        or t.is_floating(kind)
        or t.is_boolean(kind)
        or t.is_null(kind)
        or t.is_temporal(kind)
        or t.is_decimal(kind)
    )


def rows(path: str, source: str, max_bytes: int | None = None):
    """(row number, JSON line bytes, record, size) for each row of the file, from row 0.

    With `max_bytes`, a row's JSON line is made only where it may be longer than that (its
    bound says so, or its type has no bound): elsewhere it is b"" and `size` is the bound,
    enough to cut batches by. Making every line costs more than reading the row."""
    reader = open_reader(path, source)
    number = 0
    try:
        for batch in reader.batches():
            found = records(batch)
            bounds = None
            if max_bytes is not None:
                bounds = _row_bounds(batch)
            if bounds is None:
                for record in found:
                    line = _dumps(record)
                    yield number, line, record, len(line)
                    number += 1
                continue
            for record, bound in zip(found, bounds.tolist(), strict=True):
                if 6 * bound + 64 > max_bytes:
                    line = _dumps(record)
                    yield number, line, record, len(line)
                else:
                    yield number, b"", record, bound
                number += 1
    finally:
        reader.close()
    if number == 0:
        raise InputError(f"{source}: no rows; check the file or leave it out")


def _row_bounds(batch) -> np.ndarray | None:
    out = np.full(batch.num_rows, 8, np.int64)
    for field, column in zip(batch.schema, batch.columns, strict=True):
        bound = _bounds(column)
        if bound is None:
            return None
        out += bound + len(field.name.encode("utf-8")) + 8
    return out


def scan(path: str, source: str, digest) -> tuple[int, int]:
    """(rows, bytes of Arrow data) of the file, its bytes fed to `digest`: a dataset build's
    count and fingerprint without turning a row into Python (Parquet's footer has the counts).
    """
    reader = open_reader(path, source)
    try:
        if reader.kind == "parquet":
            rows, size = reader.rows, reader.size
        else:
            rows = size = 0
            for batch in reader.batches():
                rows += batch.num_rows
                size += batch.nbytes
    finally:
        reader.close()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc}); check the file") from exc
    if rows == 0:
        raise InputError(f"{source}: no rows; check the file or leave it out")
    return rows, size


def json_blocks(path: str, source: str) -> Iterator[tuple[bytes, np.ndarray]]:
    """The rows as JSON lines a record batch at a time, as read.line_blocks gives text lines:
    (bytes of whole lines, the end offset of each)."""
    reader = open_reader(path, source)
    count = 0
    try:
        for batch in reader.batches():
            lines = [_dumps(record) for record in records(batch)]
            if not lines:
                continue
            count += len(lines)
            ends = np.cumsum(np.fromiter(map(len, lines), np.int64, len(lines)))
            yield b"".join(lines), ends
    finally:
        reader.close()
    if count == 0:
        raise InputError(f"{source}: no rows; check the file or leave it out")
