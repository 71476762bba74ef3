"""The dataset folder a SambaStudio-style trainer takes, as the reference `pipeline` writes it.

    DIR/train_{k}_of_{T}.hdf5      k from 1, no zero padding
    DIR/dev_{k}_of_{D}.hdf5
    DIR/test_files/test_{k}_of_{X}.jsonl (or .txt)   test splits stay text
    DIR/tokenizer/                 every tokenizer file of the source folder (tokenizer.json,
                                   tokenizer_config.json, vocab.json, merges.txt, tokenizer.model,
                                   ...), config.json (the model's)
    DIR/metadata.yaml              checked by the trainer before it starts (REQUIRED_METADATA)
    DIR/category_to_id.json        with --categories
    DIR/splits/                    the split text, with --keep-splits
    DIR/sha256/files_metadata.json written last: every other file's sha256, size, modified_time

Train and dev files are told apart by their file name, never by the folder's path.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath

METADATA = "metadata.yaml"
MANIFEST_DIR = "sha256"
MANIFEST = f"{MANIFEST_DIR}/files_metadata.json"
TOKENIZER_DIR = "tokenizer"
TEST_DIR = "test_files"
SPLITS_DIR = "splits"
CATEGORIES = "category_to_id.json"
# Logs are appended to after the manifest is written (GDP: logs.log); checks skip them.
LOG_SUFFIX = ".log"
SPLITS = ("train", "dev", "test")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
)
# Further files a Hugging Face tokenizer may read (slow tokenizers, sentencepiece, tiktoken,
# chat templates) and the generation defaults saved beside them: tokenizer/ carries those the
# source folder has, as GDP's save_pretrained copy does. Never weights.
TOKENIZER_EXTRA_FILES = (
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.tiktoken",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)

SPLIT_FILE = re.compile(r"^(?P<split>train|dev)_(?P<k>[1-9][0-9]*)_of_(?P<n>[1-9][0-9]*)\.hdf5$")

# Keys the trainer's validator requires, with the types it accepts (None: null allowed).
REQUIRED_METADATA: dict[str, tuple[type | None, ...]] = {
    "max_seq_length": (int,),
    "token_type_ids": (bool,),
    "vocab_size": (int,),
    "tokenizer_model_type": (str,),
    "number_of_training_files": (int,),
    "number_of_dev_files": (int,),
    "number_of_test_files": (int,),
    "max_batch_size_train": (int,),
    "max_batch_size_dev": (int, None),
}


def split_file_name(split: str, k: int, count: int, extension: str = "hdf5") -> str:
    """`train_3_of_16.hdf5`: k counts from 1."""
    return f"{split}_{k}_of_{count}.{extension}"


def manifest_key(relative: str | os.PathLike) -> str:
    """The manifest's key for a file: its folder with / replaced by _, then _, then its name
    (`tokenizer/config.json` -> `tokenizer_config.json`, `metadata.yaml` -> `metadata.yaml`)."""
    path = PurePosixPath(Path(relative).as_posix())
    folder = str(path.parent)
    return path.name if folder == "." else f"{folder.replace('/', '_')}_{path.name}"


def sha256_of(path: str | os.PathLike, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_files(folder: str | os.PathLike) -> list[Path]:
    """Every file the manifest covers: all files under `folder` except the sha256/ folder, sorted."""
    root = Path(folder)
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).parts[0] != MANIFEST_DIR
    )
