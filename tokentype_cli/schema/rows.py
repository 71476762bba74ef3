"""Rows moved between files a build owns (balancing), in place inside a build's temporary folder."""

from __future__ import annotations

import os

import h5py

from tokentype_cli.errors import ShardError
from tokentype_cli.schema.names import ROW_DATASETS
from tokentype_cli.schema.read import iter_row_chunks
from tokentype_cli.schema.write import RowAppender


def copy_rows_in_place(
    source: str | os.PathLike, start: int, stop: int, target: str | os.PathLike
) -> None:
    """Append rows start..stop-1 of every row dataset of `source` to the same datasets of `target`.

    In place and not atomic: only for files inside a build's own temporary folder, which appears
    as a whole or not at all. Streams a bounded block at a time.
    """
    with h5py.File(source, "r") as src, h5py.File(target, "r+") as dst:
        names = [name for name in ROW_DATASETS if name in src]
        if sorted(names) != sorted(name for name in ROW_DATASETS if name in dst):
            raise ShardError(f"{source} and {target} hold different datasets; cannot move rows")
        appenders = {name: RowAppender(dst[name], f"{target}: dataset '{name}'") for name in names}
        for _, blocks in iter_row_chunks([src[name] for name in names], start=start, stop=stop):
            for name, block in zip(names, blocks, strict=True):
                appenders[name].append(block)
        for appender in appenders.values():
            appender.flush()


def truncate_rows_in_place(path: str | os.PathLike, rows: int) -> None:
    """Keep the first `rows` rows of every row dataset of `path` (same caveat as above)."""
    with h5py.File(path, "r+") as shard:
        for name in ROW_DATASETS:
            if name in shard:
                shard[name].resize(rows, axis=0)
