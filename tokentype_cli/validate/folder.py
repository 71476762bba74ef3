"""Check a dataset folder against its metadata.yaml, its manifest and a training run's settings.

The folder's own findings (metadata, file names and counts, widths, batch sizes, balance, the
manifest, the training run) go to one report named after the folder. Each train and dev file
then gets `validate`'s per-shard checks in a report of its own, with metadata.yaml's vocab_size
as a limit on the ids. Only shapes are read for the folder checks; the per-shard checks stream.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tokentype_cli.dataset.layout import (
    LOG_SUFFIX,
    MANIFEST,
    METADATA,
    REQUIRED_METADATA,
    SPLIT_FILE,
    TEST_DIR,
    TOKENIZER_DIR,
    manifest_files,
    manifest_key,
    sha256_of,
    split_file_name,
)
from tokentype_cli.dataset.read import (
    TOKENIZER_LIMIT,
    SplitFile,
    read_bounded,
    read_metadata,
    split_files,
)
from tokentype_cli.errors import InputError
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_IDS
from tokentype_cli.schema.read import find_shards, first_line
from tokentype_cli.validate.findings import (
    ERROR,
    FIXES,
    WARNING,
    FileReport,
    ValidateOptions,
    settle,
)
from tokentype_cli.validate.shard import validate_file

COUNT_KEYS = {
    "train": "number_of_training_files",
    "dev": "number_of_dev_files",
    "test": "number_of_test_files",
}
BATCH_KEYS = {"train": "max_batch_size_train", "dev": "max_batch_size_dev"}
# The least each integer key may hold: a run needs a train file; dev and test may be absent.
MINIMUM = {
    "max_seq_length": 1,
    "vocab_size": 1,
    "number_of_training_files": 1,
    "number_of_dev_files": 0,
    "number_of_test_files": 0,
    "max_batch_size_train": 1,
    "max_batch_size_dev": 1,
}
# What str(type(config)) prints; the trainer compares the two strings exactly.
MODEL_TYPE = re.compile(r"^<class '[A-Za-z_][\w.]*'>$")
TRANSFORMERS_MODULE = re.compile(r"^<class 'transformers\.models\.(?P<module>\w+)\.")
_LISTED = 5  # names a message shows before "and N more"


def check_dataset(
    folder: str | os.PathLike,
    options: ValidateOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FileReport]:
    """The folder's report, then one per train and dev file; problems become findings."""
    folder = Path(folder)
    options = options or ValidateOptions()
    report = FileReport(folder)
    metadata = _check_metadata(folder, report, options)
    files = split_files(folder)
    _check_names(folder, files, metadata, report)
    shard_reports = _check_shards(folder, files, metadata, options, progress)
    # (file, rows) of each readable shard, by split: the widths and row counts come from the
    # per-shard pass, so the folder checks read no data of their own.
    rows: dict[str, list[tuple[Path, int]]] = {"train": [], "dev": []}
    widths: list[tuple[Path, int]] = []
    for shard in shard_reports:
        named = SPLIT_FILE.match(shard.path.name)  # as every shard's name did in split_files
        if shard.seq_len is not None and named is not None:
            rows[named["split"]].append((shard.path, shard.rows))
            widths.append((shard.path, shard.seq_len))
    _check_widths(folder, widths, metadata, report)
    _check_types(folder, shard_reports, metadata, report)
    _check_batches(folder, files, rows, metadata, report)
    _check_balance(folder, rows, report)
    _check_manifest(folder, report)
    _check_training(folder, files, rows, metadata, options, report)
    report.rows = sum(count for split in rows.values() for _, count in split)
    lengths = {width for _, width in widths}
    report.seq_len = lengths.pop() if len(lengths) == 1 else None
    settle(report, options.strict)
    return [report, *shard_reports]


# --- metadata.yaml -------------------------------------------------------------------------------


def _check_metadata(
    folder: Path, report: FileReport, options: ValidateOptions
) -> dict[str, object]:
    """The required values that have the right type and range; the rest become findings."""
    where = f"{folder}: {METADATA}"
    try:
        data = read_metadata(folder)
    except InputError as exc:
        message = str(exc).replace(str(folder / METADATA), METADATA, 1)
        report.add("metadata-invalid", ERROR, f"{folder}: {message}")
        return {}
    missing = [key for key in REQUIRED_METADATA if key not in data]
    if missing:
        report.add(
            "metadata-missing-key",
            ERROR,
            f"{where} lacks {_listed(missing)}: the trainer refuses the folder",
            count=len(missing),
        )
    usable: dict[str, object] = {}
    wrong: list[str] = []
    for key, types in REQUIRED_METADATA.items():
        if key not in data:
            continue
        value = data[key]
        # Exact types: YAML's `true` is a bool, which Python would also take for an int.
        if any(value is None if t is None else type(value) is t for t in types):
            usable[key] = value
        else:
            expected = " or ".join("null" if t is None else t.__name__ for t in types)
            wrong.append(f"{key} is {_yaml(value)} ({_type_name(value)}), not {expected}")
    if wrong:
        report.add("metadata-type", ERROR, f"{where}: {'; '.join(wrong)}", count=len(wrong))
    low: list[str] = []
    for key, minimum in MINIMUM.items():
        value = usable.get(key)
        if isinstance(value, int) and value < minimum:
            low.append(f"{key} is {value}, below {minimum}")
            del usable[key]
    if low:
        report.add("metadata-value", ERROR, f"{where}: {'; '.join(low)}", count=len(low))
    model_type = usable.get("tokenizer_model_type")  # a str when usable
    if isinstance(model_type, str) and not MODEL_TYPE.match(model_type):
        report.add(
            "metadata-model-type",
            ERROR,
            f"{where}: tokenizer_model_type {model_type!r} is not what str(type(config)) prints;"
            " the trainer compares the two exactly",
        )
    elif isinstance(model_type, str):
        _check_model_type(folder, model_type, report)
    if usable.get("token_type_ids") is False:
        report.add(
            "metadata-token-types",
            ERROR if options.require_types else WARNING,
            f"{where}: token_type_ids is false: the trainer refuses --use_token_type_ids on"
            " this folder",
        )
    return usable


def _check_model_type(folder: Path, model_type: str, report: FileReport) -> None:
    """tokenizer_model_type names the model of tokenizer/config.json (a warning: a few models
    live in a module named otherwise, such as openai-gpt in `openai`)."""
    module = TRANSFORMERS_MODULE.match(model_type)
    config = folder / TOKENIZER_DIR / "config.json"
    if module is None or not config.is_file():
        return
    try:
        declared = json.loads(read_bounded(config, 16 << 20, "model config")).get("model_type")
    except (InputError, UnicodeDecodeError, ValueError, AttributeError):
        return  # not ours to judge: the trainer reads the model's own config
    if not isinstance(declared, str):
        return
    name = declared.replace("-", "_")
    if name != module["module"] and not name.startswith(module["module"] + "_"):
        report.add(
            "metadata-model-type",
            WARNING,
            f"{folder}: {METADATA}: tokenizer_model_type names transformers.models."
            f"{module['module']} but {TOKENIZER_DIR}/config.json has model_type {declared!r}",
        )


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _yaml(value: object) -> str:
    """A value as metadata.yaml spells it (true, null, "2048"), not as Python does."""
    return json.dumps(value, default=str)


# --- files ---------------------------------------------------------------------------------------


def _check_names(
    folder: Path, files: dict[str, list[SplitFile]], metadata: dict[str, object], report: FileReport
) -> None:
    """Files 1..N of each split, N as metadata.yaml says, and no other shard or test file."""
    missing: list[str] = []  # the first few names; `absent` counts them all
    absent = 0
    extra: dict[Path, None] = {}  # ordered and without repeats
    for split, key in COUNT_KEYS.items():
        present = files[split]
        declared = metadata.get(key)  # an int when usable
        if not isinstance(declared, int):
            # metadata.yaml cannot say: go by the count most of the files' names carry.
            common = Counter(f.n for f in present).most_common(1)
            expected = common[0][0] if common else 0
        else:
            expected = declared
            if declared != len(present):
                report.add(
                    "file-count",
                    ERROR,
                    f"{folder}: {METADATA}: {key} is {declared} but the folder holds"
                    f" {len(present)} {split} files",
                )
        seen: set[int] = set()
        for f in present:
            if f.n != expected or f.k > expected or f.k in seen:
                extra[f.path] = None
            else:
                seen.add(f.k)
        extension = "jsonl" if split == "test" else "hdf5"
        if split == "test" and present:
            extension = Counter(f.path.suffix[1:] for f in present).most_common(1)[0][0]
        prefix = f"{TEST_DIR}/" if split == "test" else ""
        # Lazily: an edited count of 10**9 must not build a list of a billion names.
        names = (
            prefix + split_file_name(split, k, expected, extension)
            for k in range(1, expected + 1)
            if k not in seen
        )
        missing.extend(itertools.islice(names, _LISTED + 1 - len(missing)))
        absent += expected - len(seen)
    known = {f.path for split in files.values() for f in split}
    for path in find_shards([folder]):
        if path not in known:
            extra[path] = None
    tests = folder / TEST_DIR
    if tests.is_dir():
        for path in sorted(tests.rglob("*")):
            if path.is_file() and path not in known:
                extra[path] = None
    if absent:
        report.add(
            "missing-file",
            ERROR,
            f"{folder}: missing {_listed(missing, absent)} (a split's files are numbered 1..N"
            " with none skipped)",
            count=absent,
        )
    if extra:
        extra_names = [path.relative_to(folder).as_posix() for path in extra]
        report.add(
            "extra-file",
            ERROR,
            f"{folder}: {_listed(extra_names)} not part of the dataset (train_k_of_T.hdf5,"
            f" dev_k_of_D.hdf5, {TEST_DIR}/test_k_of_X.jsonl, k from 1 to the count in"
            f" {METADATA})",
            count=len(extra),
        )


def _check_shards(
    folder: Path,
    files: dict[str, list[SplitFile]],
    metadata: dict[str, object],
    options: ValidateOptions,
    progress: Callable[[int], None] | None,
) -> list[FileReport]:
    """`validate`'s checks on each train and dev file, ids limited by metadata's vocab_size too."""
    given = options.effective_vocab_size
    declared = _id_bound(folder, metadata.get("vocab_size"))
    limits = [v for v in (given, declared, options.training.model_vocab_size) if v is not None]
    limit = min(limits) if limits else None
    shard_options = replace(options, vocab_size=limit)
    # metadata's vocab_size decides: name it, not a --vocab-size the user never passed.
    renamed = declared is not None and declared == limit and (given is None or declared < given)
    reports = []
    for f in files["train"] + files["dev"]:
        shard = validate_file(f.path, shard_options, progress)
        if renamed and declared is not None:
            _as_metadata_vocab(shard, folder, declared, options.strict)
        reports.append(shard)
    return reports


def _id_bound(folder: Path, vocab_size: object) -> int | None:
    """The ids a folder may hold: below metadata's vocab_size, which (as Hugging Face counts it)
    leaves out added tokens, and the tokenizer/ folder's added tokens that follow it (ChatML's
    <|im_start|> and <|im_end|> after GPT-2's 50257)."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        return None
    try:
        path = folder / TOKENIZER_DIR / "tokenizer.json"
        data = json.loads(read_bounded(path, TOKENIZER_LIMIT, "tokenizer.json"))
        added = {token["id"] for token in data.get("added_tokens") or ()}
    except (InputError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return vocab_size  # no or a damaged tokenizer folder: metadata alone decides
    bound = vocab_size
    while bound in added:
        bound += 1
    return bound


def _as_metadata_vocab(report: FileReport, folder: Path, vocab_size: int, strict: bool) -> None:
    for i, finding in enumerate(report.findings):
        if finding.check != "token-id-out-of-vocab":
            continue
        _, found, first = finding.message.rpartition(" (first: ")
        message = (
            f"{report.path}: '{INPUT_IDS}' values >= vocab_size {vocab_size} of"
            f" {folder / METADATA}: {finding.count:,}" + (f" (first: {first}" if found else "")
        )
        report.findings[i] = replace(
            finding,
            check="metadata-vocab-size",
            message=message,
            fix=FIXES["metadata-vocab-size"],
        )
    settle(report, strict)


def _check_widths(
    folder: Path, widths: list[tuple[Path, int]], metadata: dict[str, object], report: FileReport
) -> None:
    declared = metadata.get("max_seq_length")
    if declared is not None:
        off = [(path, width) for path, width in widths if width != declared]
        if off:
            path, width = off[0]
            report.add(
                "metadata-seq-length",
                ERROR,
                f"{folder}: {METADATA}: max_seq_length is {declared} but {len(off)} of"
                f" {len(widths)} files hold rows of another length (first: {path.name}, {width})",
                count=len(off),
            )
        return
    counts = Counter(width for _, width in widths)
    if len(counts) > 1:
        first = widths[0]
        other = next((p, w) for p, w in widths if w != first[1])
        report.add(
            "seq-length-mixed",
            ERROR,
            f"{folder}: files hold rows of {len(counts)} lengths ({first[0].name} {first[1]},"
            f" {other[0].name} {other[1]})",
        )


def _check_types(
    folder: Path, shards: list[FileReport], metadata: dict[str, object], report: FileReport
) -> None:
    """metadata's token_type_ids: true promises types in every file."""
    if metadata.get("token_type_ids") is not True:
        return
    lacking = [s.path.name for s in shards if any(f.check == "missing-types" for f in s.findings)]
    if lacking:
        report.add(
            "metadata-token-types",
            ERROR,
            f"{folder}: {METADATA}: token_type_ids is true but {_listed(lacking)} hold no"
            f" '{TOKEN_TYPE_IDS}': training with --use_token_type_ids fails",
            count=len(lacking),
        )


def _check_batches(
    folder: Path,
    files: dict[str, list[SplitFile]],
    rows: dict[str, list[tuple[Path, int]]],
    metadata: dict[str, object],
    report: FileReport,
) -> None:
    """max_batch_size_* is the fewest rows in a file of the split (dev: null without dev files)."""
    for split, key in BATCH_KEYS.items():
        if key not in metadata:
            continue  # missing or unusable: already a finding
        value = metadata[key]
        if not files[split]:
            if split == "dev" and value is not None:
                report.add(
                    "max-batch-size",
                    ERROR,
                    f"{folder}: {METADATA}: {key} is {value} but there are no dev files (it must"
                    " be null)",
                )
            continue
        if len(rows[split]) < len(files[split]):
            continue  # an unreadable file has its own finding; its rows are unknown
        path, fewest = min(rows[split], key=lambda item: item[1])
        if value != fewest:
            shown = "null" if value is None else value
            report.add(
                "max-batch-size",
                ERROR,
                f"{folder}: {METADATA}: {key} is {shown} but the fewest rows in a {split} file"
                f" is {fewest:,} ({path.name})",
            )


def _check_balance(
    folder: Path, rows: dict[str, list[tuple[Path, int]]], report: FileReport
) -> None:
    """Each split's files hold the same rows within one (train and dev apart)."""
    for split, sizes in rows.items():
        if len(sizes) < 2:
            continue
        low_path, low = min(sizes, key=lambda item: item[1])
        high_path, high = max(sizes, key=lambda item: item[1])
        if high - low > 1:
            report.add(
                "unbalanced",
                WARNING,
                f"{folder}: {split} files hold {low:,} to {high:,} rows, more than one apart"
                f" ({low_path.name} {low:,}, {high_path.name} {high:,}); workers reading them"
                " take unequal steps",
                count=sum(count > low + 1 for _, count in sizes),
            )


# --- the manifest --------------------------------------------------------------------------------


def _check_manifest(folder: Path, report: FileReport) -> None:
    """Every file but sha256/ is in the manifest with its size and hash, and nothing else is."""
    path = folder / MANIFEST
    where = f"{folder}: {MANIFEST}"
    if not path.is_file():
        report.add("manifest-missing", ERROR, f"{where} is missing: the folder is incomplete")
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        report.add("manifest-invalid", ERROR, f"{where}: cannot be read ({first_line(exc)})")
        return
    if not isinstance(data, dict):
        report.add("manifest-invalid", ERROR, f"{where}: holds a {type(data).__name__}, not a map")
        return
    entries: dict[str, dict] = {}
    malformed: list[str] = []
    for key, entry in data.items():
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and type(entry.get("size")) is int
        ):
            entries[key] = entry
        else:
            malformed.append(key)
    if malformed:
        report.add(
            "manifest-invalid",
            ERROR,
            f"{where}: {_listed(malformed)} lack a sha256 string or a size integer",
            count=len(malformed),
        )
    actual: dict[str, Path] = {}
    for file in manifest_files(folder):
        actual.setdefault(manifest_key(file.relative_to(folder)), file)
    # Log files are appended after the manifest (GDP's logs.log), and GDP's own check skips them.
    actual = {key: file for key, file in actual.items() if not key.endswith(LOG_SUFFIX)}
    data = {key: entry for key, entry in data.items() if not key.endswith(LOG_SUFFIX)}
    entries = {key: entry for key, entry in entries.items() if key in data}
    unlisted = [actual[key].relative_to(folder).as_posix() for key in actual if key not in data]
    if unlisted:
        report.add(
            "not-in-manifest",
            ERROR,
            f"{where} does not list {_listed(unlisted)}",
            count=len(unlisted),
        )
    absent = sorted(key for key in data if key not in actual)
    if absent:
        report.add(
            "manifest-extra",
            ERROR,
            f"{where} lists {_listed(absent)}, which the folder lacks",
            count=len(absent),
        )
    changed: list[str] = []
    for key in sorted(set(actual) & set(entries)):
        file, entry = actual[key], entries[key]
        name = file.relative_to(folder).as_posix()
        try:
            size = file.stat().st_size
            # A size that differs settles it without reading; an equal one proves nothing.
            if size != entry["size"]:
                changed.append(f"{name} ({size:,} bytes, listed {entry['size']:,})")
            elif sha256_of(file) != entry["sha256"].lower():
                changed.append(f"{name} (same size, another sha256)")
        except OSError as exc:
            changed.append(f"{name} (cannot be read: {first_line(exc)})")
    if changed:
        report.add(
            "hash-mismatch",
            ERROR,
            f"{folder}: {_listed(changed)} differ from {MANIFEST}",
            count=len(changed),
        )


# --- the training run ----------------------------------------------------------------------------


def _check_training(
    folder: Path,
    files: dict[str, list[SplitFile]],
    rows: dict[str, list[tuple[Path, int]]],
    metadata: dict[str, object],
    options: ValidateOptions,
    report: FileReport,
) -> None:
    """What the trainer checks against its own settings before it starts."""
    run = options.training
    declared = metadata.get("max_seq_length")
    if options.max_seq_length not in (None, declared) and declared is not None:
        report.add(
            "run-seq-length",
            ERROR,
            f"{folder}: {METADATA}: max_seq_length is {declared}, not --max-seq-length"
            f" {options.max_seq_length}: the trainer refuses the folder",
        )
    if run.batch_size is not None:
        limit = metadata.get("max_batch_size_train")
        what = f"max_batch_size_train {limit}"
        if limit is None and rows["train"]:
            limit = min(count for _, count in rows["train"])
            what = f"{limit}, the fewest rows in a train file"
        if isinstance(limit, int) and run.batch_size > limit:  # an int when usable
            report.add(
                "batch-size",
                ERROR,
                f"{folder}: --batch-size {run.batch_size} exceeds {what}: the trainer refuses it",
            )
    if run.workers is not None:
        declared_count = metadata.get("number_of_training_files")  # an int when usable
        count = declared_count if isinstance(declared_count, int) else len(files["train"])
        if run.workers > count:
            report.add(
                "workers",
                ERROR,
                f"{folder}: --workers {run.workers} but {count} training files: the trainer"
                " needs a file per worker",
            )
    if run.eval and (not files["dev"] or metadata.get("number_of_dev_files") == 0):
        report.add(
            "eval-without-dev",
            ERROR,
            f"{folder}: --eval but the folder has no dev files: the trainer refuses to evaluate",
        )
    vocab = metadata.get("vocab_size")
    if run.model_vocab_size is not None and isinstance(vocab, int) and vocab > run.model_vocab_size:
        report.add(
            "model-vocab-size",
            ERROR,
            f"{folder}: {METADATA}: vocab_size {vocab} exceeds --model-vocab-size"
            f" {run.model_vocab_size}: the trainer refuses the folder",
        )


def _listed(names: list[str], total: int | None = None) -> str:
    """The first few names, then how many more (of `total`, when only the first are at hand)."""
    total = len(names) if total is None else total
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {total - _LISTED:,} more" if total > _LISTED else "")
