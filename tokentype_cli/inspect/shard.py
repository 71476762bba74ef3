"""`inspect`: summarise a shard (datasets, token types, loss shares) and select rows to show.

The row formatter (`format_row`, `row_segments`, `render_segments`) lives in `report.rows`, shared
by every report; it is imported here too, where `assign-types --dry-run` and older code find it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, final

import h5py
import numpy as np

from tokentype_cli.errors import OptionError, ShardError
from tokentype_cli.loss import LossTally, as_small_types, target_weights, type_counts, type_shares
from tokentype_cli.schema.names import (
    INPUT_IDS,
    PROVENANCE_OPTIONS_ATTR,
    TOKEN_TYPE_NAMES,
    TokenType,
)
from tokentype_cli.schema.read import (
    MAX_ATTRIBUTE_BYTES,
    find_shards,
    first_line,
    iter_row_chunks,
    open_shard,
    require_rows_dataset,
)
from tokentype_cli.schema.read import readable as _readable
from tokentype_cli.schema.read import types_dataset as _types_dataset
from tokentype_cli.tokenizer_loader import LoadedTokenizer

# --- summary -------------------------------------------------------------------------------------


# Final, so that `"files" in info` tells a folder's totals from one file's dataset info.
@final
class DatasetInfo(TypedDict):
    """One dataset of one file, as `--json` shows it."""

    shape: list[int] | None
    dtype: str
    compression: str | None
    compression_opts: object
    shuffle: bool
    chunks: list[int] | None
    maxshape: list[int | None] | None
    attrs: dict[str, object]


@final
class DatasetTotal(TypedDict):
    """One dataset name over the files of a folder."""

    files: int
    rows: int


@dataclass
class ShardSummary:
    """What `inspect` reports for one file, or for several (totals plus `files`).

    Totals carry the paths as given in `inputs`, and `path` only when that was one folder.
    """

    path: Path | None
    rows: int = 0
    seq_len: int | None = None
    # DatasetInfo for one file, DatasetTotal for several.
    datasets: Mapping[str, DatasetInfo | DatasetTotal] = field(default_factory=dict)
    # Tokens of each type 0..3, then of values outside 0..3; None when there are no types.
    type_counts: np.ndarray | None = None
    loss: LossTally | None = None
    files: list[ShardSummary] | None = None
    inputs: list[Path] | None = None

    @property
    def tokens(self) -> int:
        if self.files is not None:
            return sum(f.tokens for f in self.files)
        return self.rows * (self.seq_len or 0)

    @property
    def typed_tokens(self) -> int:
        return 0 if self.type_counts is None else int(self.type_counts.sum())

    def count(self, token_type: TokenType) -> int | None:
        return None if self.type_counts is None else int(self.type_counts[token_type])

    def share(self, token_type: TokenType) -> float | None:
        count = self.count(token_type)
        if count is None:
            return None
        return count / self.typed_tokens if self.typed_tokens else 0.0

    @property
    def articles(self) -> int | None:
        """Articles end with a separator token; None without types."""
        return self.count(TokenType.SEPARATOR)

    @property
    def invalid_types(self) -> int:
        return 0 if self.type_counts is None else int(self.type_counts[len(TokenType)])

    def as_dict(self) -> dict[str, object]:
        """The `--json` shape: path, rows, seq_len, datasets, token_types (and loss, files)."""
        data: dict[str, object] = {}
        if self.path is not None:
            data["path"] = str(self.path)
        if self.inputs is not None:
            data["inputs"] = [str(p) for p in self.inputs]
        data |= {
            "rows": self.rows,
            "seq_len": self.seq_len,
            "tokens": self.tokens,
            "datasets": self.datasets,
            "token_types": None if self.type_counts is None else type_shares(self.type_counts),
            "articles": self.articles,
            "padding_share": self.share(TokenType.PADDING),
        }
        if self.invalid_types:
            data["invalid_types"] = self.invalid_types
        if self.loss is not None:
            typed = self.type_counts is not None
            data["loss"] = {
                "prompt_loss_weight": self.loss.prompt_loss_weight,
                "normalization": self.loss.normalization,
                # Without types the trainer learns every target alike; a share by type is moot.
                "share": self.loss.share() if typed else None,
                "rows_without_loss": self.loss.rows_without_loss,
            }
        if self.files is not None:
            data["files"] = [f.as_dict() for f in self.files]
        return data


def shard_files(*paths: str | os.PathLike) -> list[Path]:
    """Files as given and folders' *.h5 / *.hdf5 files, each once; a folder without any is an
    error."""
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        found = find_shards([path])
        if not found:
            raise ShardError(
                f"{path}: folder holds no *.h5 or *.hdf5 files; pass a shard or a folder of shards"
            )
        for file in found:
            # Named again (itself and through its folder), a file would be counted twice.
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    return files


def dataset_info(dataset: h5py.Dataset) -> DatasetInfo:
    """Shape, dtype, storage settings and attributes of one dataset, JSON-ready."""
    return {
        "shape": list(dataset.shape) if dataset.shape is not None else None,
        "dtype": dataset.dtype.str if dataset.dtype.names is None else str(dataset.dtype),
        "compression": dataset.compression,
        "compression_opts": _plain(dataset.compression_opts),
        "shuffle": bool(dataset.shuffle),
        "chunks": None if dataset.chunks is None else list(dataset.chunks),
        "maxshape": None if dataset.maxshape is None else list(dataset.maxshape),
        "attrs": {key: _attribute(dataset.attrs, key) for key in sorted(dataset.attrs)},
    }


def _attribute(attrs: h5py.AttributeManager, key: str) -> object:
    """An attribute JSON-ready; the provenance options (stored as JSON text) as an object, so
    --json never holds JSON inside a string."""
    plain = attribute_value(attrs, key)
    if key == PROVENANCE_OPTIONS_ATTR and isinstance(plain, str):
        try:
            return json.loads(plain)
        except ValueError:
            return plain
    return plain


def attribute_value(attrs: h5py.AttributeManager, key: str) -> object:
    """One attribute, JSON-ready; a large one summarised without being read.

    A 40 MB attribute made `inspect --json` use 1.46 GB and print 189 MB.
    """
    try:
        attribute = attrs.get_id(key)
        # HDF5 errors on the size of an attribute without a value (h5py.Empty).
        size = attribute.get_storage_size() if attribute.shape is not None else 0
        if size > MAX_ATTRIBUTE_BYTES:
            return {
                "summary": "large attribute, not shown",
                "shape": list(attribute.shape),
                "dtype": str(attribute.dtype),
                "bytes": size,
            }
        return _plain(attrs[key])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        # An HDF5 type numpy cannot hold (bitfields, some references) is not worth a failure.
        return f"<attribute not readable: {first_line(exc)}>"


def summarize_file(
    path: Path,
    loss: tuple[float, str] | None,
    progress: Callable[[int], None] | None,
    allow_external: bool = False,
) -> ShardSummary:
    with _readable(path), open_shard(path, allow_external=allow_external) as shard:
        ids = require_rows_dataset(shard, INPUT_IDS)
        summary = ShardSummary(path, rows=ids.shape[0], seq_len=ids.shape[1])
        summary.datasets = {
            name: dataset_info(shard[name])
            for name in sorted(shard.keys())
            if isinstance(shard[name], h5py.Dataset)
        }
        types = _types_dataset(shard, ids)
        if loss is not None:
            summary.loss = LossTally(*loss)
        if types is None:
            if summary.loss is not None:
                summary.loss.add(None, shape=ids.shape)
            return summary
        counts = np.zeros(len(TokenType) + 1, dtype=np.int64)
        # Only the types are read: rows and tokens come from the shape.
        for first_row, (block,) in iter_row_chunks([types]):
            if not block.size:
                continue
            small = as_small_types(block)
            counts += type_counts(small)
            if summary.loss is not None:
                summary.loss.add(small, first_row=first_row)
            if progress is not None:
                progress(block.size)
        summary.type_counts = counts
        return summary


def _plain(value: object) -> object:
    """HDF5 attribute values as JSON-ready Python values."""
    if isinstance(value, h5py.Empty):
        return None  # an attribute with a type but no value (HDF5's null dataspace)
    if isinstance(value, h5py.RegionReference):
        return "<HDF5 region reference>"
    if isinstance(value, h5py.Reference):
        return "<HDF5 object reference>"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- row selection -------------------------------------------------------------------------------


def parse_rows(spec: str, total: int) -> list[range]:
    """Rows named by SPEC: `0`, `-1`, `3:6`, `:5`, `10:`, or a comma list of those.

    Ranges, clipped to the file: `0:100000000` is one range object, not a list of every row
    (which took 2.65 GB).
    """
    if total == 0:
        raise OptionError(f"--rows {spec}: the file has no rows to show")
    selected: list[range] = []
    everything = range(total)
    for part in spec.split(","):
        part = part.strip()
        try:
            if ":" in part:
                bounds = [int(b) if b.strip() else None for b in part.split(":")]
                if len(bounds) != 2:
                    raise ValueError(part)
                chosen = everything[slice(*bounds)]
                if not chosen:
                    # Like a row index out of range: printing nothing would look like success.
                    raise OptionError(
                        f"--rows {spec}: {part} selects no rows of the {total} (0..{total - 1})"
                    )
                selected.append(chosen)
            else:
                index = int(part)
                if not -total <= index < total:
                    raise OptionError(
                        f"--rows {spec}: row {index} is outside the {total} rows (0..{total - 1})"
                    )
                selected.append(range(everything[index], everything[index] + 1))
        except ValueError as exc:
            raise OptionError(
                f"--rows {spec!r}: use a row (0, -1), a range (3:6) or a comma list of those"
            ) from exc
    return selected


def read_rows(
    path: str | os.PathLike, spec: str, allow_external: bool = False
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Yield (row, input_ids, token_type_ids or None) for the rows SPEC names, reading only those."""
    with _readable(Path(path)), open_shard(path, allow_external=allow_external) as shard:
        ids = require_rows_dataset(shard, INPUT_IDS)
        types = _types_dataset(shard, ids)
        datasets = [ids] if types is None else [ids, types]
        # Each range is read as slices; a long one streams in bounded blocks.
        for part in parse_rows(spec, ids.shape[0]):
            start, stop = part.start, part.stop
            for first_row, blocks in iter_row_chunks(datasets, start=start, stop=stop):
                for offset in range(len(blocks[0])):
                    yield (
                        first_row + offset,
                        blocks[0][offset],
                        None if types is None else blocks[1][offset],
                    )


# --- text output ---------------------------------------------------------------------------------


def format_row_header(
    row: int,
    total_rows: int,
    types: np.ndarray | None,
    prompt_loss_weight: float | None = None,
) -> str:
    """`row 3 of 10: 2 prompt, 4 completion, 1 separator` (plus learned targets with a weight)."""
    text = f"row {row} of {total_rows}"
    if types is None:
        return f"{text}: no token_type_ids"
    counts = type_counts(types)
    parts = [f"{counts[t]} {TOKEN_TYPE_NAMES[t]}" for t in TokenType if counts[t]]
    if counts[len(TokenType)]:
        parts.append(f"{counts[len(TokenType)]} invalid")
    text = f"{text}: {', '.join(parts) or 'empty'}"
    if prompt_loss_weight is not None:
        weights = target_weights(np.asarray(types).reshape(1, -1), prompt_loss_weight)
        text += (
            f"; loss on {int(np.count_nonzero(weights))} of {weights.size} targets"
            f" at prompt_loss_weight {prompt_loss_weight:g}"
        )
    return text


def summary_lines(s: ShardSummary) -> list[str]:
    seq_len = "mixed" if s.seq_len is None else f"{s.seq_len:,}"
    named = s.path if s.inputs is None else ", ".join(map(str, s.inputs))
    head = f"{named}" + (f"  ({len(s.files)} files)" if s.files is not None else "")
    lines = [head, f"  rows {s.rows:,}  seq_len {seq_len}  tokens {s.tokens:,}"]
    lines.append("  datasets")
    width = max((len(name) for name in s.datasets), default=0)
    for name, info in s.datasets.items():
        if "files" in info:
            lines.append(f"    {name:<{width}}  in {info['files']} files, {info['rows']:,} rows")
            continue
        storage = info["compression"] or "uncompressed"
        if info["compression_opts"] is not None:
            storage += f" {info['compression_opts']}"
        if info["shuffle"]:
            storage += " +shuffle"
        lines.append(
            f"    {name:<{width}}  shape {_shape(info['shape'])}  {info['dtype']}  {storage}"
            f"  chunks {_shape(info['chunks'])}  maxshape {_shape(info['maxshape'])}"
        )
        for key, value in info["attrs"].items():
            if isinstance(value, dict):  # the provenance options, as stored
                value = json.dumps(value, sort_keys=True)
            lines.append(f"    {'':<{width}}  {key} = {value}")
    if s.type_counts is None:
        lines.append("  token types: none (no token_type_ids: the trainer learns every token)")
    else:
        lines.append("  token types")
        for t in TokenType:
            lines.append(
                f"    {int(t)} {TOKEN_TYPE_NAMES[t]:<10}  {s.count(t):>14,}  {s.share(t):7.2%}"
            )
        if s.invalid_types:
            lines.append(f"    outside 0..3    {s.invalid_types:>14,}  (run tokentype validate)")
        lines.append(f"  articles (separators) {s.articles:,}")
        lines.append(f"  padding share {s.share(TokenType.PADDING):.2%}")
    if s.loss is not None:
        lines.append(
            f"  loss at prompt_loss_weight {s.loss.prompt_loss_weight:g},"
            f" {_NORMALIZATION_TEXT[s.loss.normalization]}"
        )
        if s.type_counts is not None:
            share = s.loss.share()
            lines.append(
                "    share " + "  ".join(f"{name} {value:.2%}" for name, value in share.items())
            )
        else:
            lines.append("    every target weighs 1 (no token_type_ids)")
        lines.append(f"    rows without loss {s.loss.rows_without_loss:,}")
    return lines


_NORMALIZATION_TEXT = {
    "token": "token level (every target alike)",
    "row": "row level (each row's weights sum to 1)",
}


def _shape(value: Sequence[int | None] | None) -> str:
    if value is None:
        return "-"
    return "(" + ", ".join("None" if v is None else str(v) for v in value) + ")"


def row_count(path: str | os.PathLike, allow_external: bool = False) -> int:
    """Rows of a shard's input_ids."""
    with _readable(Path(path)), open_shard(path, allow_external=allow_external) as shard:
        return require_rows_dataset(shard, INPUT_IDS).shape[0]


def row_as_dict(
    row: int, ids: np.ndarray, types: np.ndarray | None, tokenizer: LoadedTokenizer | None
) -> dict[str, object]:
    """One row for `--rows --json`: its index, ids, types and (with a tokenizer) decoded tokens."""
    data: dict[str, object] = {
        "row": row,
        "input_ids": np.asarray(ids).tolist(),
        "token_type_ids": None if types is None else np.asarray(types).tolist(),
    }
    if tokenizer is not None:
        data["tokens"] = tokenizer.decode_each(np.asarray(ids).tolist())
    return data
