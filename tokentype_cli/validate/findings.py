"""The names and fixes of the dataset-folder checks, and the training run they check against.

A leaf module: `validate` imports it for its FIXES and options, and `dataset.check` (which
imports `validate`) runs the checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tokentype_cli.dataset.layout import METADATA

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
    """A folder is a dataset (not just shards) when it holds a metadata.yaml."""
    path = Path(path)
    return path.is_dir() and (path / METADATA).is_file()
