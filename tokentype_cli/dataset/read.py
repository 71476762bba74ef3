"""Reading a dataset folder back: metadata.yaml, and the split files its names mark. Used by the
build's finish, `validate` and `inspect`, so all three read a folder the same way."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import yaml

from tokentype_cli.dataset.layout import METADATA, SPLIT_FILE, SPLITS, TEST_DIR
from tokentype_cli.errors import InputError
from tokentype_cli.schema.read import file_kind, first_line

TEST_FILE = re.compile(r"^test_(?P<k>[1-9][0-9]*)_of_(?P<n>[1-9][0-9]*)\.(?P<ext>jsonl|txt)$")


@dataclass(frozen=True)
class SplitFile:
    """A file whose name makes it part of a split: `train_3_of_16.hdf5` is ("train", 3, 16)."""

    split: str
    k: int
    n: int
    path: Path


# No trainer writes more than a few kilobytes, or anchors and aliases; a bounded, alias-free,
# shallow document cannot be made into a "billion laughs" or a recursion that never ends.
METADATA_LIMIT = 1 << 20
METADATA_DEPTH = 32
TOKENIZER_LIMIT = 1 << 30  # the largest tokenizer.json files are some hundreds of megabytes


def read_bounded(path: str | os.PathLike, limit: int, what: str) -> bytes:
    """The bytes of a file a check reads: a regular file (links followed) of at most `limit`
    bytes. InputError naming it otherwise: a FIFO would block, /dev/zero never end."""
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        why = "a dangling symbolic link" if path.is_symlink() else "missing"
        raise InputError(f"{path}: {why}; restore the {what} or rebuild the folder") from exc
    except OSError as exc:
        raise InputError(
            f"{path}: cannot be read ({first_line(exc)}); restore the {what} or rebuild the folder"
        ) from exc
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(
                f"{path}: is {file_kind(info.st_mode)}, not a regular file; restore the {what}"
                " or rebuild the folder"
            )
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InputError(
            f"{path}: larger than the {limit:,} bytes a {what} may have; restore it or rebuild"
            " the folder"
        )
    return data


class _MetadataLoader(yaml.SafeLoader):
    """safe_load without aliases and with bounded nesting."""

    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed", self.peek_event().start_mark
            )
        self.depth += 1
        if self.depth > METADATA_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested deeper than {METADATA_DEPTH} levels",
                self.peek_event().start_mark,
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_metadata_text(text: str) -> object:
    """metadata.yaml's text as YAML, aliases refused and nesting bounded (yaml.YAMLError)."""
    loader = _MetadataLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_metadata(folder: str | os.PathLike) -> dict[str, object]:
    """metadata.yaml as a mapping; InputError naming the file (and line) when it is not one."""
    path = Path(folder) / METADATA
    try:
        text = read_bounded(path, METADATA_LIMIT, METADATA).decode("utf-8")
        data = load_metadata_text(text)
    except UnicodeDecodeError as exc:
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
    except RecursionError as exc:  # the parser's own stack, before any node is composed
        raise InputError(
            f"{path}: not valid YAML (nested too deeply); fix it or rebuild the folder"
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
            # fullmatch: `$` would also match before a trailing line break in a renamed file.
            match = pattern.fullmatch(path.name)
            if match and path.is_file():
                split = match.groupdict().get("split", "test")
                found[split].append(SplitFile(split, int(match["k"]), int(match["n"]), path))
    for files in found.values():
        files.sort(key=lambda f: (f.n, f.k, f.path.name))
    return found
