"""Read back a `tokenize --ledger` file: how many input lines were packed, cut, dropped or rejected.

The ledger is one JSON object per input line (see `tokenize --help`); a shard's ledger is found
beside it as `SHARD.ledger.jsonl` (the shard's name without or with its suffix).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tokentype_cli.errors import InputError
from tokentype_cli.schema.read import first_line

STATUSES = ("packed", "truncated", "partly_dropped", "dropped", "rejected", "test")
# A dataset build's ledger gives "test" to the lines of its test splits, kept as text untokenized:
# not in the share of lines cut, which is of the lines tokenized.
UNTOKENIZED = ("test",)
# Lines that lost tokens for being too long: cut to fit, or dropped whole (`single::drop`).
CUT_FOR_LENGTH = (("truncated", None), ("dropped", "too_long"))
# A rejected line's reason is its error message; the tallies keep the start of it.
_REASON_CHARACTERS = 80


@dataclass
class LedgerTally:
    """Lines of a ledger by status and reason, and where the first line cut for length went."""

    path: Path
    lines: int = 0
    by_status: Counter = field(default_factory=Counter)
    # (status, reason) -> lines; the reason is None where the ledger gives none.
    by_reason: Counter = field(default_factory=Counter)
    tokens_cut: int = 0
    first_cut_line: int | None = None  # the ledger's `line` of the first line cut for length
    first_cut_row: int | None = None  # the shard row where that line's tokens start
    # Where that line came from, for messages: "line N", or "FILE:ROW" for a Parquet/Arrow row
    # (the ledger names those by `row`, from 0, and a row number alone finds nothing).
    first_cut_where: str | None = None

    @property
    def cut_for_length(self) -> int:
        return sum(self.by_reason[key] for key in CUT_FOR_LENGTH)

    @property
    def tokenized(self) -> int:
        """The lines that went to the tokenizer (all but a dataset's test splits)."""
        return self.lines - sum(self.by_status[status] for status in UNTOKENIZED)

    @property
    def cut_share(self) -> float:
        return self.cut_for_length / self.tokenized if self.tokenized else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "lines": self.lines,
            "status": {status: self.by_status[status] for status in STATUSES},
            "reasons": [
                {"status": status, "reason": reason, "lines": count}
                for (status, reason), count in self.by_reason.most_common()
                if status != "packed"
            ],
            "cut_for_length": self.cut_for_length,
            "cut_share": self.cut_share,
        }


def ledger_beside(shard: str | os.PathLike) -> Path | None:
    """`x.ledger.jsonl` or `x.h5.ledger.jsonl` beside shard `x.h5`, when one exists."""
    shard = Path(shard)
    for candidate in (
        shard.with_name(f"{shard.stem}.ledger.jsonl"),
        shard.with_name(f"{shard.name}.ledger.jsonl"),
    ):
        if candidate.is_file():
            return candidate
    return None


def read_ledger(path: str | os.PathLike) -> LedgerTally:
    """Tally a ledger file line by line (memory does not grow with its length)."""
    path = Path(path)
    tally = LedgerTally(path)
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    _count(tally, path, number, line)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the ledger ({first_line(exc)})") from exc
    return tally


def _count(tally: LedgerTally, path: Path, number: int, line: str) -> None:
    try:
        record = json.loads(line)
        status = record["status"]
        reason = record.get("reason")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(
            f"{path}:{number}: not a tokenize ledger line ({type(exc).__name__}: {exc});"
            " pass the file `tokentype tokenize --ledger` wrote"
        ) from exc
    if status not in STATUSES:
        raise InputError(
            f"{path}:{number}: unknown status {status!r}; expected one of {', '.join(STATUSES)}"
        )
    if isinstance(reason, str) and len(reason) > _REASON_CHARACTERS:
        reason = reason[: _REASON_CHARACTERS - 1] + "…"
    tally.lines += 1
    tally.by_status[status] += 1
    tally.by_reason[(status, reason)] += 1
    cut = record.get("cut_left", 0) + record.get("cut_right", 0)
    tally.tokens_cut += cut + record.get("dropped_too_long", 0)
    if (status, reason) in CUT_FOR_LENGTH and tally.first_cut_where is None:
        if "row" in record and "line" not in record:
            tally.first_cut_where = f"{record.get('input', path)}:{record['row']}"
        else:
            tally.first_cut_line = record.get("line", number)
            tally.first_cut_where = f"line {tally.first_cut_line}"
        rows = record.get("rows") or []
        tally.first_cut_row = rows[0][0] if rows else None
