"""Pack articles (ranges of a batch's token stream) into fixed-length rows, as the reference does.

Packers see one batch at a time: a flat token stream with types, and the articles in it as
(start, length) ranges. They return the rows finished in that batch and keep at most one open row.
Per-article bookkeeping is a loop over integers; tokens are only ever moved by numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokentype_cli.schema.names import TokenType
from tokentype_cli.schema.storage import DTYPE
from tokentype_cli.tokenize.options import PACKING_CHOICES


@dataclass
class Placement:
    """Where a batch's articles went. Arrays are per article; rows are candidate rows (before
    prompt-only rows are dropped), counted from the first row the packer ever opened."""

    row: np.ndarray  # first candidate row, -1 when dropped
    offset: np.ndarray  # offset in that row
    kept: np.ndarray  # tokens placed
    cut_left: np.ndarray
    cut_right: np.ndarray
    dropped: np.ndarray  # tokens dropped because the article was too long


@dataclass
class PackResult:
    ids: np.ndarray  # (rows, L) finished rows
    types: np.ndarray
    placement: Placement


def _scatter(
    out_ids: np.ndarray,
    out_types: np.ndarray,
    ids: np.ndarray,
    types: np.ndarray,
    dest: np.ndarray,
    src: np.ndarray,
    lengths: np.ndarray,
) -> None:
    """Copy ids[src_k : src_k + len_k] to out.flat[dest_k : ...] for every k, without a loop."""
    total = int(lengths.sum())
    if not total:
        return
    starts_out = np.cumsum(lengths) - lengths
    within = np.arange(total, dtype=np.int64) - np.repeat(starts_out, lengths)
    source = np.repeat(src, lengths) + within
    target = np.repeat(dest, lengths) + within
    out_ids.reshape(-1)[target] = ids[source]
    out_types.reshape(-1)[target] = types[source]


class Packer:
    """One of the reference's packing configurations, fed batch by batch."""

    def __init__(self, config: str, seq_len: int, pad_id: int) -> None:
        style, _, overflow = config.partition("::")
        if config not in PACKING_CHOICES:
            raise ValueError(f"unknown packing {config!r}; use one of {', '.join(PACKING_CHOICES)}")
        self.style = style
        self.overflow = overflow or None
        self.seq_len = seq_len
        self.pad_id = pad_id
        self.rows_done = 0  # candidate rows finished so far
        self.open_ids = np.empty(0, dtype=DTYPE)
        self.open_types = np.empty(0, dtype=DTYPE)

    def _blank(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((rows, self.seq_len), self.pad_id, dtype=DTYPE)
        types = np.full((rows, self.seq_len), int(TokenType.PADDING), dtype=DTYPE)
        return ids, types

    def add(
        self, ids: np.ndarray, types: np.ndarray, starts: np.ndarray, lengths: np.ndarray
    ) -> PackResult:
        """Pack the non-empty articles ids[starts[k] : starts[k] + lengths[k]]."""
        if self.style == "full":
            return self._full(ids, types, starts, lengths)
        return self._fit(ids, types, starts, lengths)

    def finish(self) -> PackResult:
        """Pad and return the open row, if any."""
        fill = len(self.open_ids)
        out_ids, out_types = self._blank(1 if fill else 0)
        if fill:
            out_ids[0, :fill] = self.open_ids
            out_types[0, :fill] = self.open_types
        self.rows_done += len(out_ids)
        self.open_ids = self.open_ids[:0]
        self.open_types = self.open_types[:0]
        empty = np.empty(0, dtype=np.int64)
        return PackResult(out_ids, out_types, Placement(*([empty] * 6)))

    def _full(self, ids, types, starts, lengths) -> PackResult:
        # The reference fills rows with the stream and splits articles anywhere, so only the
        # concatenation matters; a row that is exactly full stays open until more tokens come.
        length = self.seq_len
        fill = len(self.open_ids)
        stream_ids = np.concatenate([self.open_ids, ids])
        stream_types = np.concatenate([self.open_types, types])
        n = len(stream_ids)
        done = n // length
        if done and n % length == 0:
            done -= 1  # keep the last full row open, as the reference does
        cut = done * length
        first = self.rows_done
        positions = fill + starts.astype(np.int64)
        placement = Placement(
            row=first + positions // length,
            offset=positions % length,
            kept=lengths.astype(np.int64),
            cut_left=np.zeros(len(starts), np.int64),
            cut_right=np.zeros(len(starts), np.int64),
            dropped=np.zeros(len(starts), np.int64),
        )
        self.open_ids = stream_ids[cut:].copy()
        self.open_types = stream_types[cut:].copy()
        self.rows_done += done
        return PackResult(
            stream_ids[:cut].reshape(done, length),
            stream_types[:cut].reshape(done, length),
            placement,
        )

    def _fit(self, ids, types, starts, lengths) -> PackResult:
        length = self.seq_len
        count = len(starts)
        src = starts.astype(np.int64).copy()
        kept = lengths.astype(np.int64).copy()
        cut_left = np.zeros(count, np.int64)
        cut_right = np.zeros(count, np.int64)
        dropped = np.zeros(count, np.int64)
        too_long = kept > length
        if too_long.any():
            over = kept - length
            if self.overflow == "drop":
                dropped[too_long] = kept[too_long]
                kept[too_long] = 0
            elif self.overflow == "truncate_left":
                cut_left[too_long] = over[too_long]
                src[too_long] += over[too_long]
                kept[too_long] = length
            else:
                cut_right[too_long] = over[too_long]
                kept[too_long] = length
        row = np.full(count, -1, np.int64)
        offset = np.zeros(count, np.int64)
        open_fill = fill = len(self.open_ids)
        if self.style == "single":
            placed = kept > 0
            rows_closed = int(placed.sum())
            row[placed] = np.arange(rows_closed)
            last_open = False
        else:
            # Next-fit: inherently sequential, but only integers move here.
            current = 0
            row_list = row.tolist()
            offset_list = offset.tolist()
            original = lengths.tolist()
            kept_list = kept.tolist()
            for k in range(count):
                n = original[k]
                if fill + n <= length:
                    row_list[k], offset_list[k] = current, fill
                    fill += n
                    continue
                if fill:
                    current += 1
                    fill = 0
                if kept_list[k]:
                    row_list[k], offset_list[k] = current, 0
                    fill = kept_list[k]
            row = np.asarray(row_list, np.int64)
            offset = np.asarray(offset_list, np.int64)
            rows_closed = current
            last_open = True
        total_rows = rows_closed + (1 if last_open else 0)
        out_ids, out_types = self._blank(total_rows)
        if open_fill:
            out_ids[0, :open_fill] = self.open_ids
            out_types[0, :open_fill] = self.open_types
        placed = row >= 0
        _scatter(
            out_ids,
            out_types,
            ids,
            types,
            row[placed] * length + offset[placed],
            src[placed],
            kept[placed],
        )
        first = self.rows_done
        if last_open:
            self.open_ids = out_ids[rows_closed, :fill].copy()
            self.open_types = out_types[rows_closed, :fill].copy()
        self.rows_done += rows_closed
        row = np.where(placed, row + first, -1)
        kept = np.where(placed, kept, 0)
        return PackResult(
            out_ids[:rows_closed],
            out_types[:rows_closed],
            Placement(row, offset, kept, cut_left, cut_right, dropped),
        )
