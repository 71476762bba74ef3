"""Per-row statistics of a shard for the HTML report, gathered block by block in one pass.

Each histogram is an exact count per value (0..seq_len), so files and splits merge by adding;
the report bins them only when it draws them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tokentype_cli.loss import N_TYPES, LossTally, as_small_types, type_counts, weight_table
from tokentype_cli.schema.names import TOKEN_TYPE_NAMES, TokenType

HISTOGRAMS = {
    "learned": "learned tokens per row",
    "padding": "padding tokens per row",
    "articles": "articles per row",
    "article_length": "article length (tokens, within a row)",
}


@dataclass
class Profile:
    """What is learned in one file (or, merged, in a split or a whole dataset)."""

    path: Path
    prompt_loss_weight: float
    rows: int = 0
    tokens: int = 0
    seq_len: int | None = None
    files: int = 1
    typed: bool = True
    counts: np.ndarray = field(default_factory=lambda: np.zeros(N_TYPES + 1, np.int64))
    loss: LossTally = field(init=False)
    histograms: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.loss = LossTally(self.prompt_loss_weight)

    def add(self, first_row: int, ids: np.ndarray, types: np.ndarray | None) -> None:
        """Add one block of rows."""
        rows, seq_len = ids.shape
        self.seq_len = seq_len if self.seq_len in (None, seq_len) else self.seq_len
        self.rows += rows
        self.tokens += ids.size
        if types is None:
            # Without types the trainer learns every target of every row.
            self.typed = False
            self.loss.add(None, shape=ids.shape, first_row=first_row)
            self._count("learned", np.full(rows, max(0, seq_len - 1)), seq_len)
            return
        small = as_small_types(types)
        self.counts += type_counts(small)
        self.loss.add(small, first_row=first_row)
        learns = weight_table(self.prompt_loss_weight) > 0
        targets = small[:, 1:]
        learned = np.zeros(rows, np.int64)
        for token_type in np.flatnonzero(learns):
            learned += np.count_nonzero(targets == token_type, axis=1)
        separators = small == TokenType.SEPARATOR
        self._count("learned", learned, seq_len)
        self._count("padding", np.count_nonzero(small == TokenType.PADDING, axis=1), seq_len)
        self._count("articles", np.count_nonzero(separators, axis=1), seq_len)
        # An article runs from the row's start or the previous separator to its separator.
        row, column = np.nonzero(separators)
        previous = np.full(column.shape, -1)
        same_row = np.zeros(column.shape, bool)
        same_row[1:] = row[1:] == row[:-1]
        previous[1:][same_row[1:]] = column[:-1][same_row[1:]]
        self._count("article_length", column - previous, seq_len)

    def _count(self, name: str, values: np.ndarray, seq_len: int) -> None:
        counts = np.bincount(values, minlength=seq_len + 1)
        self.histograms[name] = _add(self.histograms.get(name), counts)

    def merge(self, other: Profile) -> None:
        """Add another profile (a file into its split, a split into the dataset)."""
        if self.rows and other.rows and self.seq_len != other.seq_len:
            self.seq_len = None
        elif not self.rows:
            self.seq_len = other.seq_len
        self.rows += other.rows
        self.tokens += other.tokens
        self.files += other.files
        self.typed = self.typed and other.typed
        self.counts += other.counts
        self.loss.merge(other.loss)
        for name, counts in other.histograms.items():
            self.histograms[name] = _add(self.histograms.get(name), counts)

    @property
    def typed_tokens(self) -> int:
        return int(self.counts.sum())

    def share(self, token_type: int) -> float:
        return int(self.counts[token_type]) / self.typed_tokens if self.typed_tokens else 0.0

    @property
    def articles(self) -> int:
        return int(self.counts[TokenType.SEPARATOR])

    def token_types(self) -> dict[str, dict[str, float]] | None:
        """`{name: {count, share}}`, as `inspect --json` gives them."""
        if not self.typed:
            return None
        return {
            TOKEN_TYPE_NAMES[t]: {"count": int(self.counts[t]), "share": self.share(t)}
            for t in TokenType
        }


def empty_like(profile: Profile, path: Path) -> Profile:
    """A profile with no rows and no files yet, to merge others into."""
    return Profile(path, profile.prompt_loss_weight, files=0)


def _add(total: np.ndarray | None, counts: np.ndarray) -> np.ndarray:
    if total is None:
        return counts.astype(np.int64)
    if len(total) < len(counts):
        total = np.pad(total, (0, len(counts) - len(total)))
    total[: len(counts)] += counts
    return total
