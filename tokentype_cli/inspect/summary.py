"""`inspect`'s summary of any paths: one shard, several, a folder of shards, or a dataset folder
(its splits, from `folder`), and the text form of each."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tokentype_cli.inspect.folder import dataset_lines, dataset_summary
from tokentype_cli.inspect.shard import (
    DatasetTotal,
    ShardSummary,
    shard_files,
    summarize_file,
    summary_lines,
)
from tokentype_cli.loss import LossTally
from tokentype_cli.schema.names import TokenType
from tokentype_cli.validate.findings import is_dataset_folder


def summarize(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    prompt_loss_weight: float | None = None,
    progress: Callable[[int], None] | None = None,
    normalization: str = "token",
    allow_external: bool = False,
) -> ShardSummary:
    """Summarise a shard, or a folder or several paths (totals plus each file), streaming the types.

    Loss shares (with a `prompt_loss_weight`) average as `normalization` says: "token" over
    every target, "row" per row first (see `loss`).
    """
    given = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    loss = None if prompt_loss_weight is None else (prompt_loss_weight, normalization)
    if len(given) == 1 and not given[0].is_dir():
        return summarize_file(given[0], loss, progress, allow_external)
    summaries = [
        summarize_file(file, loss, progress, allow_external) for file in shard_files(*given)
    ]
    total = ShardSummary(given[0] if len(given) == 1 else None, files=summaries, inputs=given)
    total.rows = sum(s.rows for s in summaries)
    lengths = {s.seq_len for s in summaries}
    total.seq_len = lengths.pop() if len(lengths) == 1 else None
    totals: dict[str, DatasetTotal] = {}
    for s in summaries:
        for name, info in s.datasets.items():
            assert "shape" in info, "a file's summary holds each dataset's own info"
            entry = totals.setdefault(name, {"files": 0, "rows": 0})
            entry["files"] += 1
            entry["rows"] += info["shape"][0] if info["shape"] else 0
    total.datasets = totals
    counts = [s.type_counts for s in summaries if s.type_counts is not None]
    if len(counts) == len(summaries):
        total.type_counts = sum(counts, np.zeros(len(TokenType) + 1, dtype=np.int64))
    if loss is not None:
        total.loss = LossTally(*loss)
        for s in summaries:
            assert s.loss is not None, "summarize_file tallies the loss when given `loss`"
            total.loss.merge(s.loss)
    if len(given) == 1 and is_dataset_folder(given[0]):
        return dataset_summary(total)
    return total


def format_summary(summary: ShardSummary) -> str:
    """The human-readable summary of a file, or of a folder followed by each of its files."""
    lines = [*dataset_lines(summary), *summary_lines(summary)]
    for file in summary.files or []:
        lines.append("")
        lines.extend(summary_lines(file))
    return "\n".join(lines) + "\n"
