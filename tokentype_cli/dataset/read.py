"""Reading a dataset folder back: metadata.yaml, and the split files its names mark. Used by the
build's finish, `validate` and `inspect`, so all three read a folder the same way."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tokentype_cli.dataset.layout import METADATA, SPLIT_FILE, SPLITS, TEST_DIR
from tokentype_cli.errors import InputError
from tokentype_cli.schema.read import first_line

TEST_FILE = re.compile(r"^test_(?P<k>[1-9][0-9]*)_of_(?P<n>[1-9][0-9]*)\.(?P<ext>jsonl|txt)$")


@dataclass(frozen=True)
class SplitFile:
    """A file whose name makes it part of a split: `train_3_of_16.hdf5` is ("train", 3, 16)."""

    split: str
    k: int
    n: int
    path: Path


def read_metadata(folder: str | os.PathLike) -> dict[str, object]:
    """metadata.yaml as a mapping; InputError naming the file (and line) when it is not one."""
    path = Path(folder) / METADATA
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{path}: cannot be read ({first_line(exc)}); restore it or rebuild the folder"
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise InputError(
            f"{where}: not valid YAML ({problem}); fix it or rebuild the folder"
        ) from exc
    if not isinstance(data, dict):
        held = "nothing" if data is None else f"a {type(data).__name__}"
        raise InputError(
            f"{path}: holds {held}, not a mapping of keys; fix it or rebuild the folder"
        )
    return data


def split_files(folder: str | os.PathLike) -> dict[str, list[SplitFile]]:
    """The files each split's name pattern matches, in order of (n, k): train and dev shards in
    the folder itself, test text under test_files/. Names decide, never the folder's path."""
    folder = Path(folder)
    found: dict[str, list[SplitFile]] = {split: [] for split in SPLITS}
    for pattern, where in ((SPLIT_FILE, folder), (TEST_FILE, folder / TEST_DIR)):
        if not where.is_dir():
            continue
        for path in where.iterdir():
            match = pattern.match(path.name)
            if match and path.is_file():
                split = match.groupdict().get("split", "test")
                found[split].append(SplitFile(split, int(match["k"]), int(match["n"]), path))
    for files in found.values():
        files.sort(key=lambda f: (f.n, f.k, f.path.name))
    return found
