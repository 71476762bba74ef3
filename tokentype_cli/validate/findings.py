"""What `validate` reports and how: check names with their fixes, findings, per-file reports,
the options (and the training run a dataset folder must suit). The per-shard and per-folder
checks both write into these; the CLI formats them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tokentype_cli.dataset.layout import METADATA
from tokentype_cli.errors import OptionError
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_IDS

if TYPE_CHECKING:
    import numpy as np

    from tokentype_cli.tokenizer_loader import LoadedTokenizer

# Stable check names of a dataset folder, in report order, with the one-line fix of each.
DATASET_FIXES = {
    "metadata-invalid": "metadata.yaml must be a YAML mapping of keys: fix it or rebuild the folder"
    " (tokentype tokenize --dataset)",
    "metadata-missing-key": "add the key to metadata.yaml (the trainer refuses a folder without"
    " it), or rebuild the folder",
    "metadata-type": "write the value with the type the trainer expects: int, bool or str"
    " (max_batch_size_dev: int or null)",
    "metadata-value": "counts and sizes in metadata.yaml must be positive (dev and test counts may"
    " be 0): correct it or rebuild the folder",
    "metadata-model-type": "set tokenizer_model_type to str(type(config)) of the model's"
    " transformers config, e.g. <class 'transformers.models.llama.configuration_llama.LlamaConfig'>",
    "metadata-token-types": "set token_type_ids: true in metadata.yaml once every file has"
    " token_type_ids (the trainer refuses --use_token_type_ids otherwise)",
    "missing-file": "restore the file, or rebuild the folder (tokentype tokenize --dataset)",
    "extra-file": "move the file out of the dataset folder: the trainer may read it as data",
    "file-count": "set number_of_*_files in metadata.yaml to the files present, or rebuild the"
    " folder",
    "metadata-seq-length": "set max_seq_length in metadata.yaml to the files' width, or"
    " re-tokenize with the metadata's length",
    "max-batch-size": "set max_batch_size_train/_dev to the fewest rows in a file of the split"
    " (max_batch_size_dev: null without dev files)",
    "unbalanced": "rebuild without --no-balance so the files of a split hold the same rows within"
    " one",
    "metadata-vocab-size": "set vocab_size in metadata.yaml to the tokenizer's vocabulary size,"
    " or re-tokenize with the tokenizer in tokenizer/",
    "manifest-missing": "write the manifest last: rebuild the folder, or run `tokentype tokenize"
    " --dataset DIR --finish`",
    "manifest-invalid": "sha256/files_metadata.json must map each file's key to"
    ' {"sha256", "size", "modified_time"}: rebuild the folder',
    "hash-mismatch": "the file changed after the manifest was written: restore it, or rebuild the"
    " folder",
    "not-in-manifest": "move the file out of the dataset folder, or rebuild so the manifest"
    " covers it",
    "manifest-extra": "restore the file the manifest lists, or rebuild the folder",
    "run-seq-length": "train with the folder's max_seq_length, or re-tokenize with the run's",
    "batch-size": "lower --batch-size to at most max_batch_size_train, or rebuild with fewer"
    " train files",
    "workers": "train with at most number_of_training_files workers, or rebuild with"
    " --train-files at least the workers",
    "eval-without-dev": "rebuild with --dev-ratio or --dev-files, or train without --eval",
    "model-vocab-size": "tokenize with the model's own tokenizer: its vocabulary must fit the"
    " model's embedding",
}


@dataclass(frozen=True)
class TrainingOptions:
    """The training run a dataset folder must suit; None (False) leaves a setting unchecked."""

    batch_size: int | None = None
    workers: int | None = None
    eval: bool = False
    model_vocab_size: int | None = None

    @property
    def given(self) -> bool:
        return (
            self.batch_size is not None
            or self.workers is not None
            or self.eval
            or self.model_vocab_size is not None
        )


def is_dataset_folder(path: str | os.PathLike) -> bool:
    """A folder is a dataset (not just shards) when it holds a metadata.yaml: any entry of that
    name, so a dangling link, a FIFO or a device there is reported, not taken for no dataset."""
    path = Path(path)
    return path.is_dir() and os.path.lexists(path / METADATA)


ERROR = "error"


WARNING = "warning"


# Stable check names, in report order, with the one-line fix each finding carries.
FIXES = {
    "cannot-open": "check the path; pass an HDF5 shard written by tokentype or h5py",
    "no-shards": "pass .h5/.hdf5 files or a folder holding some",
    "unreadable": "the file is damaged: rebuild it (tokentype tokenize) or restore a copy",
    "missing-input-ids": "a shard needs input_ids: build it with `tokentype tokenize`",
    "not-2d": "store the dataset as (rows, max_seq_length)",
    "non-integer-dtype": "store integer ids (int32, 'i4')",
    "outside-data": "copy the data into the file, or pass --allow-external to check what it reads",
    "virtual-source-missing": "restore the virtual dataset's source files, or rebuild the file",
    "unwritten-chunks": "rebuild the file: part of the dataset was declared but never written",
    "id-beyond-int32": "store input_ids as int32 ('i4'): a trainer reading int32 sees these ids"
    " as other ids",
    "shape-mismatch": "rewrite the types: `tokentype add-types FILE TYPES --overwrite`",
    "zero-rows": "rebuild the shard from non-empty input",
    "seq-length": "re-tokenize with the --max-seq-length the model trains with",
    "seq-length-mixed": "re-tokenize every shard with one --max-seq-length",
    "seq-length-beyond-model": "re-tokenize with a --max-seq-length within the model's positions,"
    " or check that the tokenizer's config.json is the model's",
    "missing-types": "add types: `tokentype assign-types FILE ...` or `tokentype add-types FILE TYPES`",
    "type-out-of-range": "types are 0 prompt, 1 completion, 2 padding, 3 separator: rewrite them"
    " with `tokentype add-types FILE TYPES --overwrite`",
    "negative-token-id": "rebuild input_ids with `tokentype tokenize`",
    "token-id-out-of-vocab": "tokenize with the model's tokenizer, or pass the right"
    " --tokenizer/--vocab-size",
    "no-loss-row": "drop those rows or mark their answers as completion (tokentype assign-types)",
    "dtype-not-int32": "rewrite it as int32 ('i4'), as the trainer expects: `tokentype repack FILE`",
    "not-gzip": "rewrite it with gzip compression, as tokentype writes: `tokentype repack FILE`",
    "maxshape": "rewrite it with maxshape=(None, max_seq_length): `tokentype repack FILE`",
    "chunk-shape": "rewrite the dataset chunked by whole rows, as tokentype writes it: `tokentype repack FILE`",
    "padding-then-content": "pad only at the end of a row: re-pack the rows (tokentype tokenize)",
    "truncated-eos": "end each article with an EOS separator before padding (raise"
    " --max-seq-length or keep the EOS when truncating)",
    "eos-in-completion": "remove the literal end-of-sequence token from the text, or re-tokenize"
    " with --split-special-tokens so such text is encoded as plain text",
    "separator-id": "separators should all be the tokenizer's EOS id: check the tokenizer used",
    "padding-id": "padding should be one id, the tokenizer's pad (or EOS) id: check the tokenizer",
    "separator-run": "type padding 2, not 3: a run of separators is empty articles the model"
    " learns to end again and again (tokentype add-types FILE TYPES --overwrite)",
    "padding-only-row": "drop rows holding only padding; they carry no loss",
    "no-learned-token-row": "mark each row's answer as completion, or end it with a separator",
    **DATASET_FIXES,
    # The CI thresholds (errors when crossed).
    "learned-per-row": "mark more of each row as completion (tokentype assign-types), pack more"
    " articles per row, or lower --min-learned-per-row",
    "padding-share": "pack rows fuller (tokentype tokenize --packing full or greedy) or lower"
    " --max-seq-length",
    "truncated-share": "raise --max-seq-length or shorten the longest inputs; the ledger names"
    " each line cut",
    "no-ledger": "pass --ledger FILE, or keep `tokentype tokenize --ledger` output beside the shard"
    " as SHARD.ledger.jsonl",
}


_ORDER = {name: i for i, name in enumerate(FIXES)}


# The dataset a check is about when the finding does not name one itself (None: the file).
_DATASETS = {
    "missing-input-ids": INPUT_IDS,
    "zero-rows": INPUT_IDS,
    "seq-length": INPUT_IDS,
    "seq-length-mixed": INPUT_IDS,
    "seq-length-beyond-model": INPUT_IDS,
    "negative-token-id": INPUT_IDS,
    "token-id-out-of-vocab": INPUT_IDS,
    "separator-id": INPUT_IDS,
    "padding-id": INPUT_IDS,
    "eos-in-completion": INPUT_IDS,
    "missing-types": TOKEN_TYPE_IDS,
    "type-out-of-range": TOKEN_TYPE_IDS,
    "no-loss-row": TOKEN_TYPE_IDS,
    "padding-then-content": TOKEN_TYPE_IDS,
    "truncated-eos": TOKEN_TYPE_IDS,
    "padding-only-row": TOKEN_TYPE_IDS,
    "separator-run": TOKEN_TYPE_IDS,
    "no-learned-token-row": TOKEN_TYPE_IDS,
}


def check_names(names: Iterable[str]) -> frozenset[str]:
    """The check names of `--ignore a,b --ignore c`; an unknown one is an OptionError (exit 2)."""
    wanted = {name.strip() for given in names for name in given.split(",") if name.strip()}
    for name in sorted(wanted):
        if name not in FIXES:
            raise OptionError(
                f"--ignore: unknown check {name!r}; the checks are {', '.join(FIXES)}"
            )
    return frozenset(wanted)


@dataclass(frozen=True)
class Finding:
    """One problem found in one file: a stable check name, a severity, an exact count and where."""

    check: str
    severity: str  # "error" or "warning"
    message: str
    count: int = 1
    row: int | None = None
    column: int | None = None
    fix: str = ""
    dataset: str | None = None  # the dataset the finding is about; None for the whole file

    def as_dict(self) -> dict[str, object]:
        return {
            "check": self.check,
            "severity": self.severity,
            "dataset": self.dataset,
            "message": self.message,
            "count": self.count,
            "row": self.row,
            "column": self.column,
            "fix": self.fix,
        }


@dataclass
class FileReport:
    """The findings for one path, with its size once known."""

    path: Path
    findings: list[Finding] = field(default_factory=list)
    rows: int = 0
    seq_len: int | None = None

    @property
    def errors(self) -> int:
        return sum(f.severity == ERROR for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == WARNING for f in self.findings)

    def add(
        self,
        check: str,
        severity: str,
        message: str,
        count: int = 1,
        row: int | None = None,
        column: int | None = None,
        dataset: str | None = None,
    ) -> None:
        """Add a finding; `dataset` defaults to the one the check is about (see _DATASETS)."""
        self.findings.append(
            Finding(
                check,
                severity,
                message,
                int(count),
                row,
                column,
                FIXES.get(check, ""),
                dataset or _DATASETS.get(check),
            )
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "rows": self.rows,
            "seq_len": self.seq_len,
            "errors": self.errors,
            "warnings": self.warnings,
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class ValidateOptions:
    """What to check beyond the schema; every field is optional."""

    vocab_size: int | None = None
    tokenizer: LoadedTokenizer | None = None
    max_seq_length: int | None = None
    require_types: bool = False
    prompt_loss_weight: float | None = None
    strict: bool = False
    training: TrainingOptions = field(default_factory=TrainingOptions)  # dataset folders only
    allow_external: bool = False  # follow external links and virtual datasets
    ignore: frozenset[str] = frozenset()  # check names whose findings are dropped
    # CI thresholds: crossing one is an error.
    min_learned_per_row: int | None = None
    max_padding_share: float | None = None
    max_truncated_share: float | None = None
    max_rows_without_loss: int | None = None
    ledger: Path | None = None  # for --max-truncated-share; else the one beside each shard

    @property
    def loss_weight(self) -> float | None:
        """The weight rows without loss are judged at: given, or 0 for the thresholds."""
        if self.prompt_loss_weight is None and (
            self.max_rows_without_loss is not None or self.min_learned_per_row is not None
        ):
            return 0.0
        return self.prompt_loss_weight

    @property
    def effective_vocab_size(self) -> int | None:
        if self.vocab_size is not None:
            return self.vocab_size
        return None if self.tokenizer is None else self.tokenizer.vocab_size


# Called with (path, first_row, input_ids block, token_type_ids block or None) for each block
# validate reads, so a report can gather its statistics in the same streamed pass.
BlockObserver = Callable[[Path, int, "np.ndarray", "np.ndarray | None"], None]


def settle(report: FileReport, strict: bool, ignore: frozenset[str] = frozenset()) -> None:
    """Drop the ignored checks, make warnings errors with --strict, order by severity and check."""
    findings = [f for f in report.findings if f.check not in ignore]
    if strict:
        findings = [replace(f, severity=ERROR) for f in findings]
    report.findings = sorted(
        findings, key=lambda f: (f.severity != ERROR, _ORDER.get(f.check, len(_ORDER)))
    )


def totals(reports: list[FileReport]) -> tuple[int, int]:
    """(errors, warnings) over all reports."""
    return sum(r.errors for r in reports), sum(r.warnings for r in reports)


def as_json(reports: list[FileReport]) -> dict[str, object]:
    """`{"files": [{"path", "findings": [...]}], "errors": N, "warnings": N}`."""
    errors, warnings = totals(reports)
    return {"files": [r.as_dict() for r in reports], "errors": errors, "warnings": warnings}
