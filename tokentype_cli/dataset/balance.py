"""Balance row counts across a split's files: within one row, moving rows, never dropping any.

The reference's rule: with R rows in F files, every file gets R // F rows and the first R % F
files one more; rows beyond a file's share are taken from its end, file by file in order, and
appended to the files short of theirs, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokentype_cli.schema.rows import copy_rows_in_place, truncate_rows_in_place


@dataclass(frozen=True)
class Move:
    """Rows source[start:start+count] go to the end of file `target`, from its row `at`."""

    source: int
    start: int
    count: int
    target: int
    at: int


def plan_balance(rows: Sequence[int]) -> tuple[list[int], list[Move]]:
    """Each file's row count after balancing, and the moves that get there."""
    files = len(rows)
    if not files:
        return [], []
    share, extra = divmod(sum(rows), files)
    targets = [share + (1 if k < extra else 0) for k in range(files)]
    surplus = [(k, targets[k], rows[k] - targets[k]) for k in range(files) if rows[k] > targets[k]]
    moves: list[Move] = []
    donor = 0
    for k in range(files):
        needed = targets[k] - rows[k]
        at = rows[k]
        while needed > 0:
            source, start, available = surplus[donor]
            count = min(needed, available)
            moves.append(Move(source, start, count, k, at))
            needed -= count
            at += count
            if count == available:
                donor += 1
            else:
                surplus[donor] = (source, start + count, available - count)
    return targets, moves


def apply_balance(paths: Sequence[Path], rows: Sequence[int]) -> list[int]:
    """Balance the files in place; return their row counts after."""
    targets, moves = plan_balance(rows)
    for move in moves:
        copy_rows_in_place(
            paths[move.source], move.start, move.start + move.count, paths[move.target]
        )
    for path, before, after in zip(paths, rows, targets, strict=True):
        if after < before:
            truncate_rows_in_place(path, after)
    return targets


def moved_row(moves: Sequence[Move], source: int, row: int) -> tuple[int, int]:
    """Where row `row` of file `source` is after the moves: (file, row)."""
    for move in moves:
        if move.source == source and move.start <= row < move.start + move.count:
            return move.target, move.at + row - move.start
    return source, row
