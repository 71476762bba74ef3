"""The per-line ledger of a tokenize run: where each input line's tokens went, or why not."""

from __future__ import annotations

import json

import numpy as np

from tokentype_cli.schema.names import TokenType
from tokentype_cli.tokenize.articles import Articles
from tokentype_cli.tokenize.pack import Placement
from tokentype_cli.tokenize.read import Batch


class Ledger:
    """One JSON line per input line: where its tokens went, or why they did not.

    Every record has the same keys (see the tokenize command's help); a line's record waits until
    the rows it reaches are resolved, since prompt-only rows are dropped only when they close.
    """

    def __init__(self, handle, seq_len: int, full: bool) -> None:
        self.handle = handle
        self.seq_len = seq_len
        self.full = full
        # Candidate row (from final_base on) -> written row, -1 when dropped. Rows that no
        # pending line refers to are forgotten, so memory does not grow with the input.
        self.final_row: list[int] = []
        self.final_base = 0
        self.pending: list[tuple[dict, list[list[int]]]] = []

    def rows_resolved(self, keep: np.ndarray, written_before: int) -> None:
        numbers = np.where(keep, written_before + np.cumsum(keep) - 1, -1)
        self.final_row.extend(numbers.tolist())

    def add_batch(
        self,
        batch: Batch,
        articles: Articles,
        placement: Placement,
        chat: dict[int, tuple[int, int]] | None = None,
    ) -> None:
        """`chat`: per batch line holding a conversation, (seams, open turns)."""
        per_line: dict[int, list[list[int]]] = {}
        columns = (
            placement.row,
            placement.offset,
            placement.kept,
            placement.cut_left,
            placement.cut_right,
            placement.dropped,
        )
        for line, *fate in zip(articles.line.tolist(), *(c.tolist() for c in columns), strict=True):
            per_line.setdefault(line, []).append(fate)
        line_tokens = articles.line_tokens.tolist()
        token_line = np.repeat(articles.line, articles.length)
        learned = token_line[articles.types == TokenType.COMPLETION]
        completion = np.bincount(learned, minlength=batch.line_count).tolist()
        chat = chat or {}
        for index in range(batch.line_count):
            segments: list[list[int]] = []
            cut_left = cut_right = too_long = 0
            for row, offset, kept, left, right, dropped in per_line.get(index, ()):
                cut_left += left
                cut_right += right
                too_long += dropped
                segments.extend(self._segments(row, offset, kept))
            rejected = batch.rejected.get(index)
            # status, reason, rows and dropped_prompt_only_row wait for the rows to resolve.
            status = reason = None
            if rejected:
                status, reason = "rejected", rejected[0]
            elif index in batch.blank:
                status, reason = "dropped", "blank"
            record: dict[str, object] = {
                "input": batch.line_source[index],
                "line": batch.line_number[index],
                "status": status,
                "reason": reason,
                "tokens": line_tokens[index],
                "rows": [],
                "cut_left": cut_left,
                "cut_right": cut_right,
                "dropped_too_long": too_long,
                "dropped_prompt_only_row": 0,
                "pairs_skipped_prompt_only": batch.skipped_pairs.get(index, 0),
                "completion_tokens": completion[index],
                "seams": chat.get(index, (0, 0))[0],
                "open_turns": chat.get(index, (0, 0))[1],
            }
            self.pending.append((record, segments))
        self.flush()

    def _segments(self, row: int, offset: int, kept: int) -> list[list[int]]:
        if row < 0 or not kept:
            return []
        if not self.full:
            return [[row, offset, kept]]
        out = []
        while kept:
            count = min(kept, self.seq_len - offset)
            out.append([row, offset, count])
            kept -= count
            row, offset = row + 1, 0
        return out

    def flush(self, final: bool = False) -> None:
        resolved = self.final_base + len(self.final_row)
        done = 0
        for record, segments in self.pending:
            if not final and any(seg[0] >= resolved for seg in segments):
                break
            done += 1
            self._finish(record, segments)
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        del self.pending[:done]
        needed = min(
            (seg[0] for _, segments in self.pending for seg in segments[:1]), default=resolved
        )
        if needed > self.final_base:
            del self.final_row[: needed - self.final_base]
            self.final_base = needed

    def _finish(self, record: dict, segments: list[list[int]]) -> None:
        rows = []
        lost = 0
        for row, offset, count in segments:
            final = self.final_row[row - self.final_base]
            if final < 0:
                lost += count
            else:
                rows.append([final, offset, count])
        record["rows"] = rows
        record["dropped_prompt_only_row"] = lost
        if record["status"] is not None:  # rejected or blank: known when the line was read
            return
        placed = sum(r[2] for r in rows)
        tokens = record["tokens"]
        if tokens == 0:
            record["status"] = "dropped"
            record["reason"] = "prompt_only" if record["pairs_skipped_prompt_only"] else "empty"
        elif placed == 0:
            record["status"] = "dropped"
            record["reason"] = "too_long" if record["dropped_too_long"] else "prompt_only_row"
        elif placed == tokens:
            record["status"] = "packed"
        elif lost:
            record["status"] = "partly_dropped"
        else:
            record["status"] = "truncated"
