"""`validate` on any paths: a dataset folder gets the folder checks, anything else the per-shard
checks; one report per file, and the lengths compared across them."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from tokentype_cli.schema.read import find_shards
from tokentype_cli.validate.findings import (
    ERROR,
    BlockObserver,
    FileReport,
    ValidateOptions,
    is_dataset_folder,
    settle,
)
from tokentype_cli.validate.folder import check_dataset
from tokentype_cli.validate.shard import validate_file


def validate_paths(
    paths: Iterable[str | os.PathLike],
    options: ValidateOptions = ValidateOptions(),
    progress: Callable[[int], None] | None = None,
    on_block: BlockObserver | None = None,
) -> list[FileReport]:
    """Validate every file (folders expand to their *.h5 / *.hdf5), one report per file; a
    dataset folder (one with metadata.yaml) gets its own report first (`dataset.check`)."""
    reports: list[FileReport] = []
    seen: set[Path] = set()
    for given in paths:
        given = Path(given)
        if is_dataset_folder(given):
            reports.extend(check_dataset(given, options, progress))
            seen.update(report.path.resolve() for report in reports)
            continue
        files = find_shards([given])
        if given.is_dir() and not files:
            report = FileReport(given)
            report.add("no-shards", ERROR, f"{given}: folder holds no *.h5 or *.hdf5 files")
            reports.append(report)
            continue
        for path in files:
            # A file named again (itself and through its folder) would count its findings twice.
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            reports.append(validate_file(path, options, progress, on_block))
    _mixed_lengths(reports, options)
    return reports


def _mixed_lengths(reports: list[FileReport], options: ValidateOptions) -> None:
    """One finding, on the first odd file, naming every length seen and the odd files.

    The odd files are those unlike --max-seq-length, else unlike the most common length (the
    first file's among equally common ones): blaming every file unlike the first would blame
    the majority whenever the first file is the odd one.
    """
    sized = [r for r in reports if r.seq_len is not None]
    counts = Counter(r.seq_len for r in sized)
    if len(counts) < 2:
        return
    expected = options.max_seq_length
    if expected is None:
        expected = max(counts, key=lambda length: counts[length])  # first seen among ties
    odd = [r for r in sized if r.seq_len != expected]
    if not odd:
        return
    tied = sum(count == counts[expected] for count in counts.values()) > 1
    seen = []
    for length, count in sorted(counts.items(), key=lambda i: (i[0] != expected, -i[1])):
        text = f"{length} ({count} file{'' if count == 1 else 's'}"
        # The majority's files go unnamed (there may be thousands) unless no length has one.
        if length != expected or tied:
            names = [str(r.path) for r in sized if r.seq_len == length]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            text += f": {shown}"
        seen.append(text + ")")
    first = odd[0]
    first.add(
        "seq-length-mixed",
        ERROR,
        f"{first.path}: sequence lengths differ between files; lengths seen: {', '.join(seen)}",
        count=len(odd),
    )
    settle(first, options.strict, options.ignore)
