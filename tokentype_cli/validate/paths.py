"""`validate` on any paths: a dataset folder gets the folder checks, anything else the per-shard
checks; one report per file, and the lengths compared across them."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from tokentype_cli.dataset.layout import TOKENIZER_DIR
from tokentype_cli.errors import TokenizerError
from tokentype_cli.schema.read import find_shards
from tokentype_cli.tokenizer_loader import load_tokenizer, model_positions
from tokentype_cli.validate.findings import (
    ERROR,
    WARNING,
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
    loose: set[Path] = set()  # shards given outside a dataset folder
    for given in paths:
        given = Path(given)
        if is_dataset_folder(given):
            folder_options = with_folder_tokenizer(given, options)
            found = check_dataset(given, folder_options, progress)
            _beyond_model(found, folder_options, given / TOKENIZER_DIR / "config.json")
            reports.extend(found)
            seen.update(report.path.resolve() for report in reports)
            continue
        files = find_shards([given])
        if given.is_dir() and not files:
            report = FileReport(given)
            report.add("no-shards", ERROR, f"{given}: folder holds no *.h5 or *.hdf5 files")
            reports.append(report)
            continue
        loose.update(path.resolve() for path in files)
        for path in files:
            # A file named again (itself and through its folder) would count its findings twice.
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            reports.append(validate_file(path, options, progress, on_block))
    if options.tokenizer is not None:
        shards = [report for report in reports if report.path.resolve() in loose]
        _beyond_model(shards, options, options.tokenizer.path.parent / "config.json")
    _mixed_lengths(reports, options)
    return reports


def with_folder_tokenizer(folder: Path, options: ValidateOptions) -> ValidateOptions:
    """A dataset folder is checked against its own tokenizer/ unless --tokenizer names one."""
    own = folder / TOKENIZER_DIR
    if options.tokenizer is not None or not (own / "tokenizer.json").is_file():
        return options
    try:
        return replace(options, tokenizer=load_tokenizer(own))
    except TokenizerError:
        return options  # the folder checks say what is wrong with the folder


def _beyond_model(reports: list[FileReport], options: ValidateOptions, config: Path) -> None:
    """A warning when rows are longer than the model has positions (config.json's n_positions or
    max_position_embeddings): the trainer fails on them, or silently truncates."""
    found = model_positions(config)
    if found is None:
        return
    positions, key = found
    if options.max_seq_length is not None and options.max_seq_length > positions:
        target = reports[0] if reports else None
        length = options.max_seq_length
        what = f"--max-seq-length {length:,} is"
    else:
        target = next((r for r in reports if r.seq_len and r.seq_len > positions), None)
        length = (target.seq_len or 0) if target is not None else 0
        what = f"rows of {length:,} tokens are"
    if target is None:
        return
    target.add(
        "seq-length-beyond-model",
        WARNING,
        f"{target.path}: {what} longer than the model's {positions:,} positions ({config}: {key})",
    )
    settle(target, options.strict, options.ignore)


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
