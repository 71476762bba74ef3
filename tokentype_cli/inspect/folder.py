"""What `inspect DIR` shows first for a dataset folder: its splits, files, rows per file, tokens
by type per split, and metadata.yaml. Built from the per-file summaries `inspect` reads anyway,
so a dataset costs no extra pass over the shards (test splits are text: their lines are counted).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from tokentype_cli.dataset.layout import METADATA, SPLITS
from tokentype_cli.dataset.read import SplitFile, read_metadata, split_files
from tokentype_cli.inspect.shard import ShardSummary
from tokentype_cli.schema.names import TOKEN_TYPE_NAMES, TokenType

_LISTED = 12  # files whose rows the text lists one by one; more show as a range


@dataclass
class SplitSummary:
    """One split: its files with their rows (test: lines), and the tokens by type of its shards."""

    name: str
    files: list[tuple[Path, int]] = field(default_factory=list)
    seq_len: int | None = None
    # Tokens of each type 0..3 and outside; None when a file of the split has no types.
    type_counts: np.ndarray | None = None

    @property
    def text(self) -> bool:
        return self.name == "test"

    @property
    def rows(self) -> int:
        return sum(count for _, count in self.files)

    @property
    def tokens(self) -> int:
        return 0 if self.text else self.rows * (self.seq_len or 0)

    def token_types(self) -> dict[str, dict[str, float | int]] | None:
        if self.type_counts is None:
            return None
        total = int(self.type_counts.sum())
        return {
            TOKEN_TYPE_NAMES[t]: {
                "count": int(self.type_counts[t]),
                "share": int(self.type_counts[t]) / total if total else 0.0,
            }
            for t in TokenType
        }

    def as_dict(self) -> dict[str, object]:
        unit = "lines" if self.text else "rows"
        data: dict[str, object] = {
            "files": [{"path": str(path), unit: count} for path, count in self.files],
            unit: self.rows,
        }
        if not self.text:
            data.update(seq_len=self.seq_len, tokens=self.tokens, token_types=self.token_types())
        return data


@dataclass
class DatasetSummary(ShardSummary):
    """A dataset folder's summary: the folder's shard summary (totals and each file, as
    `inspect FOLDER` gives it) with the splits and metadata.yaml in front."""

    metadata: dict[str, object] = field(default_factory=dict)
    splits: dict[str, SplitSummary] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        data = super().as_dict()
        dataset = {
            "splits": {name: split.as_dict() for name, split in self.splits.items()},
            "metadata": _json_ready(self.metadata),
        }
        return {"path": data.pop("path"), "dataset": dataset, **data}


def dataset_summary(folder_summary: ShardSummary) -> DatasetSummary:
    """Turn `inspect`'s summary of a dataset folder into a DatasetSummary, files in split order."""
    assert folder_summary.path is not None, "a dataset folder's summary names the folder"
    folder = Path(folder_summary.path)
    metadata = read_metadata(folder)
    named = split_files(folder)
    # Only totals lack a path; each file's summary names its file.
    by_path = {s.path: s for s in folder_summary.files or [] if s.path is not None}
    order = [f.path for split in ("train", "dev") for f in named[split]]
    # Numbered files in numbering order (train_2 before train_10), any others after them.
    files = [by_path[p] for p in order if p in by_path]
    files += [s for p, s in by_path.items() if p not in set(order)]
    summary = DatasetSummary(
        **{f.name: getattr(folder_summary, f.name) for f in fields(ShardSummary)},
        metadata=metadata,
    )
    summary.files = files
    for split in SPLITS:
        summary.splits[split] = _split(split, named[split], by_path)
    return summary


def _split(name: str, named: list[SplitFile], by_path: dict[Path, ShardSummary]) -> SplitSummary:
    split = SplitSummary(name)
    if name == "test":
        split.files = [(f.path, _count_lines(f.path)) for f in named]
        return split
    shards = [by_path[f.path] for f in named if f.path in by_path]
    split.files = [(f.path, by_path[f.path].rows) for f in named if f.path in by_path]
    lengths = {s.seq_len for s in shards}
    split.seq_len = lengths.pop() if len(lengths) == 1 else None
    counts = [s.type_counts for s in shards if s.type_counts is not None]
    if shards and len(counts) == len(shards):
        split.type_counts = sum(counts, np.zeros(len(TokenType) + 1, dtype=np.int64))
    return split


def _count_lines(path: str | os.PathLike, block: int = 1 << 20) -> int:
    """Lines of a text file, the last one counted without its newline too; streamed."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def _json_ready(value: object) -> object:
    """YAML values as JSON: dates and other tags as text, nan and inf as text too."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# --- text ----------------------------------------------------------------------------------------


def dataset_lines(summary: ShardSummary) -> list[str]:
    """The dataset block `inspect` prints before the folder's per-file details; [] for others."""
    if not isinstance(summary, DatasetSummary):
        return []
    counts = ", ".join(
        f"{len(split.files)} {name}" for name, split in summary.splits.items() if split.files
    )
    lines = [f"{summary.path}  (dataset: {counts or 'no'} files)"]
    width = max(len(name) for name in summary.splits)
    for name, split in summary.splits.items():
        unit = "line" if split.text else "row"
        head = f"  {name:<{width}}  {_plural(len(split.files), 'file')}"
        if not split.files:
            lines.append(head)
            continue
        head += f"  {_plural(split.rows, unit)}"
        if not split.text:
            head += f"  {_plural(split.tokens, 'token')}"
        lines.append(f"{head}  {unit}s per file {_per_file([c for _, c in split.files])}")
        types = split.token_types()
        if split.text:
            continue
        if types is None:
            lines.append("    token types: none in some file (run tokentype validate)")
            continue
        lines.append(
            "    "
            + "  ".join(f"{kind} {v['count']:,} ({v['share']:.2%})" for kind, v in types.items())
        )
    lines.append(f"  {METADATA}")
    key_width = max((len(str(key)) for key in summary.metadata), default=0)
    for key, value in summary.metadata.items():
        lines.append(f"    {key!s:<{key_width}}  {_scalar(value)}")
    lines.append("")
    return lines


def _per_file(counts: list[int]) -> str:
    if len(counts) <= _LISTED:
        return ", ".join(f"{c:,}" for c in counts)
    return f"{min(counts):,}..{max(counts):,}"


def _scalar(value: object) -> str:
    """As metadata.yaml spells it: true, null, text unquoted."""
    if isinstance(value, str):
        return value
    return json.dumps(_json_ready(value))


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
