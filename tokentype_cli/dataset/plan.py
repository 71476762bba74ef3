"""Which split each input line goes to, and where in it: the reference's split arithmetic and a
seeded shuffle that never holds the input.

Lines are numbered 0..n-1 across the inputs in the order given. Without a shuffle, line g goes to
split g mod N at position g // N, the reference's round robin. With one, a seeded pseudo-random
permutation p of 0..n-1 (a Feistel network with cycle walking) takes its place: line g goes to
split p(g) mod N at position p(g) // N. Every split gets floor(n/N) or ceil(n/N) lines, the
result is a pure function of (n, seed, N), and computing it needs no memory beyond the block of
line numbers at hand, however large the input.

Splits are numbered as the reference numbers them: train first, then test, then dev.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokentype_cli.dataset.layout import split_file_name
from tokentype_cli.errors import OptionError

GIB = 1 << 30
_ROUNDS = 6
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def default_train_files(input_bytes: int) -> int:
    """The reference's default: 32 train files under 10 GiB of input, 128 under 100 GiB, else 256."""
    size_gib = input_bytes / GIB
    if size_gib < 10:
        return 32
    if size_gib < 100:
        return 128
    return 256


@dataclass(frozen=True)
class Split:
    """One split of the plan: its kind (train, dev, test), 1-based number and count of its kind."""

    index: int  # 0-based position among all splits
    kind: str
    number: int
    of: int

    def file_name(self, extension: str = "hdf5") -> str:
        return split_file_name(self.kind, self.number, self.of, extension)


@dataclass(frozen=True)
class SplitPlan:
    train: int
    dev: int
    test: int

    @property
    def total(self) -> int:
        return self.train + self.dev + self.test

    @property
    def splits(self) -> list[Split]:
        kinds = [("train", self.train), ("test", self.test), ("dev", self.dev)]
        out: list[Split] = []
        for kind, count in kinds:
            out.extend(Split(len(out), kind, k, count) for k in range(1, count + 1))
        return out

    def of_kind(self, kind: str) -> list[Split]:
        return [split for split in self.splits if split.kind == kind]


def plan_splits(
    input_bytes: int,
    train_files: int | None = None,
    dev_files: int | None = None,
    test_files: int | None = None,
    dev_ratio: float | None = None,
    test_ratio: float | None = None,
    accept_zero: bool = False,
) -> SplitPlan:
    """Split counts by the reference's arithmetic; counts and ratios for one kind are exclusive.

    A ratio the arithmetic turns into no file at all (0.1 of 4 train files: the reference needs
    9 for one dev file) is an OptionError naming the counts that give one, unless `accept_zero`.
    """
    for kind, files, ratio in (("dev", dev_files, dev_ratio), ("test", test_files, test_ratio)):
        if files is not None and ratio is not None:
            raise OptionError(f"--{kind}-files and --{kind}-ratio exclude each other; give one")
        if ratio is not None and not 0 <= ratio < 1:
            raise OptionError(f"--{kind}-ratio must be in [0, 1), got {ratio}")
        if files is not None and files < 0:
            raise OptionError(f"--{kind}-files must be 0 or more, got {files}")
    train = default_train_files(input_bytes) if train_files is None else train_files
    if train < 1:
        raise OptionError(f"--train-files must be at least 1, got {train}")
    if (dev_ratio or 0) + (test_ratio or 0) >= 1:
        raise OptionError("--dev-ratio plus --test-ratio must be below 1; lower one of them")
    plan = _arithmetic(train, dev_files, test_files, dev_ratio, test_ratio)
    for kind, ratio in (("dev", dev_ratio), ("test", test_ratio)):
        if accept_zero or not ratio or getattr(plan, kind):
            continue
        # The fewest train files for which the same ratios give one file of this kind.
        needed = next(
            (
                more
                for more in range(train + 1, train * 1000 + 1000)
                if getattr(_arithmetic(more, dev_files, test_files, dev_ratio, test_ratio), kind)
            ),
            None,
        )
        more = f" --train-files {needed}, or" if needed is not None else ""
        # The files the ratio asks for beside these train files, at least one.
        asked = max(1, round(train * ratio / (1 - (dev_ratio or 0.0) - (test_ratio or 0.0))))
        raise OptionError(
            f"--{kind}-ratio {ratio:g} of {train} train files gives 0 {kind} files by the"
            f" reference's arithmetic; pass{more} --{kind}-files {asked} instead of the ratio, or"
            " --accept-zero-splits for the reference's silent 0"
        )
    return plan


def _arithmetic(
    train: int,
    dev_files: int | None,
    test_files: int | None,
    dev_ratio: float | None,
    test_ratio: float | None,
) -> SplitPlan:
    """The reference's arithmetic, for the kinds given as ratios."""
    total = int(train / (1 - (dev_ratio or 0.0) - (test_ratio or 0.0)))
    test = test_files if test_files is not None else int(total * (test_ratio or 0.0))
    if dev_files is not None:
        dev = dev_files
    elif dev_ratio:
        dev = max(0, total - test - train) if test_files is None else int(total * dev_ratio)
    else:
        dev = 0
    return SplitPlan(train, dev, test)


def check_enough_lines(
    plan: SplitPlan, lines: int, where: str, units: tuple[str, str] = ("line", "lines")
) -> None:
    """`units`: what an input record is called, and many (options.input_units)."""
    one, many = units
    if lines < plan.total:
        biggest = max(
            ("--train-files", plan.train), ("--dev-files", plan.dev), ("--test-files", plan.test),
            key=lambda item: item[1],
        )  # fmt: skip
        raise OptionError(
            f"{where}: {lines:,} {many} for {plan.total:,} splits ({plan.train} train,"
            f" {plan.dev} dev, {plan.test} test): every split needs a {one}; lower {biggest[0]}"
        )


# --- the seeded permutation -------------------------------------------------------------------


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fixed bijective scramble of uint64 words."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64, copy=True)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
        return z & _MASK64


class Permutation:
    """A seeded bijection of 0..n-1, evaluated on numpy blocks of indices."""

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError("a permutation needs at least one element")
        self.n = n
        bits = max(2, int(n - 1).bit_length())
        bits += bits % 2  # a balanced Feistel network on an even number of bits
        self.half_bits = bits // 2
        self.half_mask = np.uint64((1 << self.half_bits) - 1)
        keys = _mix(np.arange(_ROUNDS, dtype=np.uint64) + np.uint64(seed % (1 << 64)))
        self.keys = [np.uint64(k) for k in keys.tolist()]

    def _feistel(self, values: np.ndarray) -> np.ndarray:
        shift = np.uint64(self.half_bits)
        left = (values >> shift) & self.half_mask
        right = values & self.half_mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right ^ key) & self.half_mask)
        return (left << shift) | right

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        # Cycle walking: the network permutes 0..4^k-1; values that land at n or above are sent
        # through again until they fall inside, which keeps the map a bijection of 0..n-1. The
        # domain is under 4n, so a few passes finish every block.
        values = self._feistel(np.asarray(indices, dtype=np.uint64))
        outside = values >= np.uint64(self.n)
        while outside.any():
            values[outside] = self._feistel(values[outside])
            outside = values >= np.uint64(self.n)
        return values.astype(np.int64)


def destinations(
    line_numbers: np.ndarray, total_lines: int, splits: int, shuffle: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(split index, position in the split) of each 0-based input line number."""
    order = np.asarray(line_numbers, dtype=np.int64)
    if shuffle:
        order = Permutation(total_lines, seed)(order)
    return order % splits, order // splits
