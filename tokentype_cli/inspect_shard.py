"""`inspect`: summarise a shard (datasets, token types, loss shares) and render rows by token type.

The row formatter (`format_row`, `row_segments`, `render_segments`) is a library API shared with
`assign-types --dry-run`: it returns text and never prints.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from tokentype_cli.errors import OptionError, ShardError
from tokentype_cli.loss import LossTally, as_small_types, target_weights, type_counts
from tokentype_cli.schema import (
    INPUT_IDS,
    MAX_ATTRIBUTE_BYTES,
    PADDING,
    TOKEN_TYPE_IDS,
    TOKEN_TYPE_NAMES,
    TokenType,
    find_shards,
    first_line,
    iter_row_chunks,
    open_shard,
    read_errors,
    require_rows_dataset,
)
from tokentype_cli.tokenizer_loader import LoadedTokenizer

# Padding runs at least this long are shown as one "… N × pad" segment.
COLLAPSE_PADDING = 8

# ANSI styles per token type; unknown types (outside 0..3) show in red.
_STYLES = {
    TokenType.PROMPT: "34",  # blue: context, scaled by prompt_loss_weight
    TokenType.COMPLETION: "32",  # green: learned
    TokenType.PADDING: "90",  # grey: never learned
    TokenType.SEPARATOR: "1;35",  # bold magenta: end of article, learned
}
_UNKNOWN_STYLE = "1;31"
_RESET = "\x1b[0m"
# Control characters would break the layout of a row; show them escaped.
_ESCAPES = {i: f"\\x{i:02x}" for i in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}


@dataclass(frozen=True)
class Segment:
    """A run of one row to display: one token, or a collapsed run of identical padding tokens."""

    text: str  # what to show: decoded token (and/or id), or "… N × pad" for a collapsed run
    token_type: int | None  # the type of the tokens (None when the shard has no types)
    column: int  # column of the first token covered
    count: int = 1  # tokens covered; > 1 only for a collapsed padding run
    token_id: int | None = None


def type_label(token_type: int | None) -> str:
    """`prompt`, `completion`, `padding`, `separator`, or `type N` for a value outside 0..3."""
    if token_type is None:
        return "untyped"
    try:
        return TOKEN_TYPE_NAMES[TokenType(int(token_type))]
    except ValueError:
        return f"type {int(token_type)}"


def row_segments(
    input_ids: Sequence[int] | np.ndarray,
    token_type_ids: Sequence[int] | np.ndarray | None = None,
    *,
    tokenizer: LoadedTokenizer | None = None,
    show_ids: bool = False,
    collapse_padding: int | None = COLLAPSE_PADDING,
) -> list[Segment]:
    """Split one row into display segments, one per token, collapsing long padding runs.

    Tokens show as decoded text with `tokenizer`, as ids without one, and as `text(id)` with
    `show_ids`. A run of at least `collapse_padding` padding tokens with the same id becomes one
    segment "… N × pad" (`None` never collapses).
    """
    ids = np.asarray(input_ids).reshape(-1)
    types = None if token_type_ids is None else np.asarray(token_type_ids).reshape(-1)
    if types is not None and types.shape != ids.shape:
        raise ValueError(f"row has {ids.size} input_ids but {types.size} token_type_ids")
    runs = _padding_runs(ids, types, collapse_padding)
    keep = np.ones(ids.size, dtype=bool)
    for start, length in runs:
        keep[start + 1 : start + length] = False
    # Decode only what is shown: a 2048-token row of mostly padding decodes a handful of tokens.
    shown = np.flatnonzero(keep)
    texts = _token_texts(ids[shown], tokenizer, show_ids)
    lengths = dict(runs)
    segments = []
    for column, text in zip(shown.tolist(), texts, strict=True):
        token_type = None if types is None else int(types[column])
        count = lengths.get(column, 1)
        if count > 1:
            text = f"… {count} × {text}"
        segments.append(Segment(text, token_type, column, count, int(ids[column])))
    return segments


def render_segments(segments: Sequence[Segment], *, color: bool = False, joiner: str = " ") -> str:
    """Join segments into one line: ANSI-coloured by type, or with `[type]` markers at each change.

    Colour is the caller's decision (a terminal and NO_COLOR unset); without colour a marker such
    as `[completion]` opens every run of one type so the types stay visible in logs and pipes.
    """
    parts: list[str] = []
    previous: object = object()
    for segment in segments:
        text = segment.text
        if color and segment.token_type is not None:
            style = _STYLES.get(_as_type(segment.token_type), _UNKNOWN_STYLE)
            text = f"\x1b[{style}m{text}{_RESET}"
        elif not color and segment.token_type is not None and segment.token_type != previous:
            text = f"[{type_label(segment.token_type)}] {text}"
        previous = segment.token_type
        parts.append(text)
    return joiner.join(parts)


def format_row(
    input_ids: Sequence[int] | np.ndarray,
    token_type_ids: Sequence[int] | np.ndarray | None = None,
    *,
    tokenizer: LoadedTokenizer | None = None,
    show_ids: bool = False,
    color: bool = False,
    collapse_padding: int | None = COLLAPSE_PADDING,
) -> str:
    """One row as a line of text: tokens by type, coloured or with `[type]` markers.

    Example (codon vocabulary, no colour)::

        >>> format_row([9, 5, 6, 10, 7, 8, 2], [0, 0, 0, 1, 1, 1, 3], tokenizer=codons)
        '[prompt] GAA GGC GCC [completion] ATG ATC GAC [separator] SEP'

    Sub-word tokenizers join pieces without spaces (the pieces carry their own); ids, word-level
    vocabularies and `show_ids` join with a space.
    """
    segments = row_segments(
        input_ids,
        token_type_ids,
        tokenizer=tokenizer,
        show_ids=show_ids,
        collapse_padding=collapse_padding,
    )
    spaced = tokenizer is None or tokenizer.word_level or show_ids
    return render_segments(segments, color=color, joiner=" " if spaced else "")


def color_legend(*, color: bool) -> str:
    """The four type names, each in its colour (or plain when not coloured)."""
    names = []
    for token_type in TokenType:
        label = f"{int(token_type)} {TOKEN_TYPE_NAMES[token_type]}"
        names.append(f"\x1b[{_STYLES[token_type]}m{label}{_RESET}" if color else label)
    return "  ".join(names)


def _as_type(value: int) -> TokenType | None:
    try:
        return TokenType(int(value))
    except ValueError:
        return None


def _padding_runs(
    ids: np.ndarray, types: np.ndarray | None, minimum: int | None
) -> list[tuple[int, int]]:
    """(start, length) of each run of >= `minimum` padding tokens sharing one id."""
    if types is None or minimum is None or ids.size == 0:
        return []
    pad = types == PADDING  # a plain int: see schema.PROMPT
    # A run starts where padding begins or the padding id changes.
    boundary = np.empty(ids.size, dtype=bool)
    boundary[0] = True
    boundary[1:] = (~pad[:-1]) | (ids[1:] != ids[:-1])
    starts = np.flatnonzero(pad & boundary)
    if starts.size == 0:
        return []
    # A run ends before the next boundary or non-padding token.
    stops = np.flatnonzero(~pad | boundary)
    ends = np.append(stops, ids.size)[np.searchsorted(stops, starts, side="right")]
    lengths = ends - starts
    long = lengths >= max(2, minimum)
    return list(zip(starts[long].tolist(), lengths[long].tolist(), strict=True))


def _token_texts(ids: np.ndarray, tokenizer: LoadedTokenizer | None, show_ids: bool) -> list[str]:
    if tokenizer is None:
        return [str(i) for i in ids.tolist()]
    texts = [text.translate(_ESCAPES) for text in tokenizer.decode_each(ids.tolist())]
    if show_ids:
        return [f"{text}({i})" for text, i in zip(texts, ids.tolist(), strict=True)]
    return texts


# --- summary -------------------------------------------------------------------------------------


@dataclass
class ShardSummary:
    """What `inspect` reports for one file, or for a folder (totals plus `files`)."""

    path: Path
    rows: int = 0
    seq_len: int | None = None
    datasets: dict[str, dict[str, object]] = field(default_factory=dict)
    # Tokens of each type 0..3, then of values outside 0..3; None when there are no types.
    type_counts: np.ndarray | None = None
    loss: LossTally | None = None
    files: list[ShardSummary] | None = None

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
        data: dict[str, object] = {
            "path": str(self.path),
            "rows": self.rows,
            "seq_len": self.seq_len,
            "tokens": self.tokens,
            "datasets": self.datasets,
            "token_types": None
            if self.type_counts is None
            else {
                TOKEN_TYPE_NAMES[t]: {"count": self.count(t), "share": self.share(t)}
                for t in TokenType
            },
            "articles": self.articles,
            "padding_share": self.share(TokenType.PADDING),
        }
        if self.invalid_types:
            data["invalid_types"] = self.invalid_types
        if self.loss is not None:
            typed = self.type_counts is not None
            data["loss"] = {
                "prompt_loss_weight": self.loss.prompt_loss_weight,
                # Without types the trainer learns every target alike; a share by type is moot.
                "share": self.loss.share() if typed else None,
                "rows_without_loss": self.loss.rows_without_loss,
            }
        if self.files is not None:
            data["files"] = [f.as_dict() for f in self.files]
        return data


def summarize(
    path: str | os.PathLike,
    prompt_loss_weight: float | None = None,
    progress: Callable[[int], None] | None = None,
    allow_external: bool = False,
) -> ShardSummary:
    """Summarise a shard, or a folder of shards (totals plus each file), streaming the types."""
    path = Path(path)
    if not path.is_dir():
        return _summarize_file(path, prompt_loss_weight, progress, allow_external)
    summaries = [
        _summarize_file(file, prompt_loss_weight, progress, allow_external)
        for file in shard_files(path)
    ]
    total = ShardSummary(path, files=summaries)
    total.rows = sum(s.rows for s in summaries)
    lengths = {s.seq_len for s in summaries}
    total.seq_len = lengths.pop() if len(lengths) == 1 else None
    for s in summaries:
        for name, info in s.datasets.items():
            entry = total.datasets.setdefault(name, {"files": 0, "rows": 0})
            entry["files"] += 1
            entry["rows"] += info["shape"][0] if info["shape"] else 0
    if all(s.type_counts is not None for s in summaries):
        total.type_counts = sum(s.type_counts for s in summaries)
    if prompt_loss_weight is not None:
        total.loss = LossTally(prompt_loss_weight)
        for s in summaries:
            total.loss.merge(s.loss)
    return total


def shard_files(path: str | os.PathLike) -> list[Path]:
    """The file itself, or a folder's *.h5 / *.hdf5 files; a folder without any is an error."""
    files = find_shards([path])
    if not files:
        raise ShardError(
            f"{path}: folder holds no *.h5 or *.hdf5 files; pass a shard or a folder of shards"
        )
    return files


def dataset_info(dataset: h5py.Dataset) -> dict[str, object]:
    """Shape, dtype, storage settings and attributes of one dataset, JSON-ready."""
    return {
        "shape": list(dataset.shape) if dataset.shape is not None else None,
        "dtype": dataset.dtype.str if dataset.dtype.names is None else str(dataset.dtype),
        "compression": dataset.compression,
        "compression_opts": _plain(dataset.compression_opts),
        "shuffle": bool(dataset.shuffle),
        "chunks": None if dataset.chunks is None else list(dataset.chunks),
        "maxshape": None if dataset.maxshape is None else list(dataset.maxshape),
        "attrs": {key: attribute_value(dataset.attrs, key) for key in sorted(dataset.attrs)},
    }


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


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Report damaged metadata (dangling links, broken object headers) as one line."""
    with read_errors(path):
        yield


def _summarize_file(
    path: Path,
    prompt_loss_weight: float | None,
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
        if prompt_loss_weight is not None:
            summary.loss = LossTally(prompt_loss_weight)
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


def _types_dataset(shard: h5py.File, ids: h5py.Dataset) -> h5py.Dataset | None:
    """The shard's token_type_ids (None without one); a shape unlike input_ids' is an error."""
    if TOKEN_TYPE_IDS not in shard:
        return None
    types = require_rows_dataset(shard, TOKEN_TYPE_IDS)
    if types.shape != ids.shape:
        raise ShardError(
            f"{shard.filename}: '{TOKEN_TYPE_IDS}' has shape {types.shape} but '{INPUT_IDS}' has"
            f" {ids.shape}; fix it with `tokentype add-types FILE TYPES --overwrite`"
        )
    return types


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


def format_summary(summary: ShardSummary) -> str:
    """The human-readable summary of a file, or of a folder followed by each of its files."""
    lines = _summary_lines(summary)
    for file in summary.files or []:
        lines.append("")
        lines.extend(_summary_lines(file))
    return "\n".join(lines) + "\n"


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


def _summary_lines(s: ShardSummary) -> list[str]:
    folder = s.files is not None
    seq_len = "mixed" if s.seq_len is None else f"{s.seq_len:,}"
    head = f"{s.path}" + (f"  ({len(s.files)} files)" if folder else "")
    lines = [head, f"  rows {s.rows:,}  seq_len {seq_len}  tokens {s.tokens:,}"]
    lines.append("  datasets")
    width = max((len(name) for name in s.datasets), default=0)
    for name, info in s.datasets.items():
        if folder:
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
        lines.append(f"  loss at prompt_loss_weight {s.loss.prompt_loss_weight:g}")
        if s.type_counts is not None:
            share = s.loss.share()
            lines.append(
                "    share " + "  ".join(f"{name} {value:.2%}" for name, value in share.items())
            )
        else:
            lines.append("    every target weighs 1 (no token_type_ids)")
        lines.append(f"    rows without loss {s.loss.rows_without_loss:,}")
    return lines


def _shape(value: object) -> str:
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
