"""The trainer's loss weighting, vectorised over blocks of rows.

The targets of a row are `input_ids[1:]` with types `token_type_ids[1:]`; a target weighs 0 for
padding, `prompt_loss_weight` for prompt and 1 for completion and separator. Without types (or
without `--use_token_type_ids`) every target weighs 1. How the weighted losses are averaged
decides how much each type counts (`NORMALIZATIONS`):

- token (the default): one mean over every target of the batch, `sum(loss * w) / sum(w)`. This
  is Megatron-LM's `loss_mask` mean and a Hugging Face mean over the unmasked labels: a row
  with a long answer weighs more than a row with a short one.
- row: each row's weights are divided by their sum first, so every row carrying loss counts
  alike however many targets it learns (and a row carrying none divides by 0), for trainers
  that average per sequence.

Every reader of token_type_ids blocks (inspect, validate, the rule engine, tokenize's metrics)
counts and narrows them with `type_counts` and `as_small_types` from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tokentype_cli.report.options import NORMALIZATIONS
from tokentype_cli.schema.names import COMPLETION, PROMPT, SEPARATOR, TOKEN_TYPE_NAMES, TokenType

N_TYPES = len(TokenType)
# How LossTally averages: over all targets (Megatron-LM, Hugging Face) or per row first.


def weight_table(prompt_loss_weight: float) -> np.ndarray:
    """Loss weight of a target by its type: index with a type id (0..3)."""
    table = np.zeros(N_TYPES, dtype=np.float64)
    table[PROMPT] = prompt_loss_weight
    table[COMPLETION] = 1.0
    table[SEPARATOR] = 1.0
    return table


def target_weights(
    token_type_ids: np.ndarray | None,
    prompt_loss_weight: float,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Per-target weights, shape (rows, seq_len - 1), unnormalised.

    Without types every target weighs 1 (pass the block's `shape`). Types outside 0..3 weigh 0;
    `validate` reports them.
    """
    if token_type_ids is None:
        if shape is None:
            raise ValueError("target_weights needs token_type_ids or the block's shape")
        rows, seq_len = shape
        return np.ones((rows, max(0, seq_len - 1)), dtype=np.float64)
    targets = np.asarray(token_type_ids)[:, 1:]
    table = np.append(weight_table(prompt_loss_weight), 0.0)
    # Out-of-range types index the trailing 0.
    index = np.where((targets >= 0) & (targets < N_TYPES), targets, N_TYPES)
    return table[index]


def normalised_weights(
    token_type_ids: np.ndarray | None,
    prompt_loss_weight: float,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Per-target weights divided by each row's sum (rows carrying no loss stay all 0)."""
    weights = target_weights(token_type_ids, prompt_loss_weight, shape)
    sums = weights.sum(axis=1, keepdims=True)
    return np.divide(weights, sums, out=np.zeros_like(weights), where=sums > 0)


def learned_targets(
    input_ids: np.ndarray, token_type_ids: np.ndarray | None, prompt_loss_weight: float
) -> np.ndarray:
    """The token ids of one row the model learns to generate (targets with weight > 0).

    `learned_targets([9, 5, 6, 10, 7, 8, 2], [0, 0, 0, 1, 1, 1, 3], 0.0)` is `[10, 7, 8, 2]`.
    """
    ids = np.asarray(input_ids).reshape(1, -1)
    types = None if token_type_ids is None else np.asarray(token_type_ids).reshape(1, -1)
    weights = target_weights(types, prompt_loss_weight, ids.shape)
    return ids[0, 1:][weights[0] > 0]


def as_small_types(token_type_ids: np.ndarray) -> np.ndarray:
    """A block of types as int8, values outside 0..3 as -1: a quarter of the memory traffic for
    every later pass over it."""
    types = np.asarray(token_type_ids)
    # Viewed unsigned, negative values are huge: one comparison finds both kinds of bad value.
    unsigned = types.view(types.dtype.str.replace("i", "u"))
    if unsigned.size and unsigned.max() >= N_TYPES:
        return np.where(unsigned >= N_TYPES, -1, types).astype(np.int8)
    return types.astype(np.int8)


def type_counts(token_type_ids: np.ndarray) -> np.ndarray:
    """Tokens of each type 0..3 in a block, then of values outside 0..3 (length 5, int64)."""
    types = np.asarray(token_type_ids)
    counts = np.zeros(N_TYPES + 1, dtype=np.int64)
    # One comparison per type is 3-5x faster than np.bincount, which first copies the block
    # to intp (and needs non-negative values).
    for token_type in range(N_TYPES):
        counts[token_type] = np.count_nonzero(types == token_type)
    counts[N_TYPES] = types.size - counts[:N_TYPES].sum()
    return counts


def type_shares(counts: np.ndarray | Sequence[int]) -> dict[str, dict[str, int | float]]:
    """`{name: {"count", "share"}}` for types 0..3, the shape every --json output uses.

    Shares are of all the counted tokens (a fifth count, of values outside 0..3, is in the
    whole but has no name).
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    return {
        TOKEN_TYPE_NAMES[t]: {
            "count": int(counts[t]),
            "share": int(counts[t]) / total if total else 0.0,
        }
        for t in TokenType
    }


@dataclass
class LossTally:
    """Accumulates loss weight per target type and rows without loss over blocks of rows.

    `add(types_block)` per block (or `add(None, shape=...)` without types), then read `share()`
    (by `normalization`, see the module docstring) and `rows_without_loss`.
    """

    prompt_loss_weight: float
    normalization: str = "token"
    # Targets of each type over all rows: token-level shares are these times the weight table.
    targets: np.ndarray = field(default_factory=lambda: np.zeros(N_TYPES, dtype=np.int64))
    # Per type, the sum over rows of its targets' weights divided by the row's weight sum.
    normalised_weight: np.ndarray = field(
        default_factory=lambda: np.zeros(N_TYPES, dtype=np.float64)
    )
    rows_without_loss: int = 0
    first_row_without_loss: int | None = None
    rows: int = 0

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"loss normalization {self.normalization!r}: use one of {', '.join(NORMALIZATIONS)}"
            )

    def add(
        self,
        token_type_ids: np.ndarray | None,
        shape: tuple[int, int] | None = None,
        first_row: int | None = None,
    ) -> None:
        if token_type_ids is None:
            if shape is None:
                raise TypeError("LossTally.add(None) needs shape=(rows, seq_len)")
            # Every target weighs 1: only rows without targets carry no loss.
            rows, seq_len = shape
            no_loss = np.full(rows, seq_len < 2, dtype=bool)
        else:
            targets = np.asarray(token_type_ids)[:, 1:]
            rows = len(targets)
            no_loss = self._add_normalised(targets)
        count = int(np.count_nonzero(no_loss))
        if count and self.first_row_without_loss is None:
            self.first_row_without_loss = (self.rows if first_row is None else first_row) + int(
                np.argmax(no_loss)
            )
        self.rows_without_loss += count
        self.rows += rows

    def _table(self) -> np.ndarray:
        table = weight_table(self.prompt_loss_weight)
        # Both shares are ratios, so the scale is irrelevant: a table with 1 at most cannot
        # overflow, whatever the prompt weight.
        return table / table.max()

    def _add_normalised(self, targets: np.ndarray) -> np.ndarray:
        """Count each row's targets by type and add its normalised weights; return the rows whose
        weight sum is 0."""
        table = self._table()
        per_row = np.zeros((len(targets), N_TYPES), dtype=np.int64)
        for token_type in range(N_TYPES):
            per_row[:, token_type] = np.count_nonzero(targets == token_type, axis=1)
        self.targets += per_row.sum(axis=0)
        weighted = per_row * table
        sums = weighted.sum(axis=1)
        no_loss = sums == 0
        carrying = ~no_loss
        self.normalised_weight += (weighted[carrying] / sums[carrying, None]).sum(axis=0)
        return no_loss

    def merge(self, other: LossTally) -> None:
        """Add another tally's totals (e.g. one file's into a folder's)."""
        self.targets += other.targets
        self.normalised_weight += other.normalised_weight
        if self.first_row_without_loss is None and other.first_row_without_loss is not None:
            self.first_row_without_loss = self.rows + other.first_row_without_loss
        self.rows_without_loss += other.rows_without_loss
        self.rows += other.rows

    def share(self) -> dict[str, float]:
        """Share of the loss carried by each type under `normalization` (all 0 when nothing is
        learned)."""
        if self.normalization == "token":
            weight = self.targets * self._table()
        else:
            weight = self.normalised_weight
        total = float(weight.sum())
        return {
            TOKEN_TYPE_NAMES[t]: (float(weight[t]) / total if total else 0.0) for t in TokenType
        }
