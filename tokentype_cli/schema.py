"""The one HDF5 schema layer: dataset names, token types, dtypes, compression, chunking, streaming
reads and atomic, deterministic writes. Every command reads and writes shards through this module."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import h5py
import numpy as np

from tokentype_cli import __version__, interrupts
from tokentype_cli.errors import DatasetExistsError, OptionError, ShardError

INPUT_IDS = "input_ids"
TOKEN_TYPE_IDS = "token_type_ids"
CATEGORY_IDS = "category_ids"
ROW_DATASETS = (INPUT_IDS, TOKEN_TYPE_IDS, CATEGORY_IDS)

DTYPE = np.dtype("<i4")
COMPRESSION = "gzip"
# Level 4 writes 2.5-4x faster than 6 for at most 4% more disk; shuffle before gzip doubled write
# speed and saved 15% on token ids, and every HDF5 reader decodes it.
COMPRESSION_LEVEL = 4
SHUFFLE = True
# Whole rows per chunk, about 256 KiB of int32: big enough to compress and read fast (one-row
# chunks are the slowest to read), small enough for HDF5's default 1 MiB chunk cache.
CHUNK_TOKENS = 1 << 16
# Streaming reads and writes move this many chunks at a time (about 4 MiB per dataset).
CHUNKS_PER_STEP = 16
# Tokens per row tokentype reads or writes: 4 MiB of int32 per row, so a block of rows stays
# bounded; 10^9 asked for 15.6 GB before anything was written.
MAX_SEQ_LENGTH = 1 << 20
# Whatever a file's chunking, one read moves at most this many bytes of one dataset and touches
# at most this many chunks: HDF5 keeps a few KB of bookkeeping per chunk a read touches (262,144
# one-token chunks read at once took 1.7 GB), and a chunk shape of (131072, 1) made the old
# chunk-aligned step read 1 GiB at once.
MAX_READ_BYTES = 1 << 24
MAX_CHUNKS_PER_READ = 4096
# Attributes larger than this are summarised (shape, dtype, size), not read whole into reports.
MAX_ATTRIBUTE_BYTES = 4096

PROVENANCE_VERSION_ATTR = "tokentype_version"
PROVENANCE_COMMAND_ATTR = "tokentype_command"
PROVENANCE_OPTIONS_ATTR = "tokentype_options"


class TokenType(IntEnum):
    """What the loss does with a token (see the source document)."""

    PROMPT = 0
    COMPLETION = 1
    PADDING = 2
    SEPARATOR = 3


# Plain ints for comparing blocks in hot paths: numpy looks attributes up on an IntEnum member
# with errors suppressed, and a signal's exception raised there was lost.
PROMPT, COMPLETION, PADDING, SEPARATOR = (int(t) for t in TokenType)

TOKEN_TYPE_NAMES = {t: t.name.lower() for t in TokenType}
_TYPE_ALIASES = {"pad": TokenType.PADDING, "sep": TokenType.SEPARATOR}
MAX_TOKEN_TYPE = max(TokenType)


def parse_token_type(value: str | int) -> TokenType:
    """Accept a token type by name (`prompt`, `pad`, ...) or number (0..3)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) <= MAX_TOKEN_TYPE:
            return TokenType(int(value))
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit() and int(text) <= MAX_TOKEN_TYPE:
            return TokenType(int(text))
        if text in _TYPE_ALIASES:
            return _TYPE_ALIASES[text]
        for token_type, name in TOKEN_TYPE_NAMES.items():
            if text == name:
                return token_type
    names = ", ".join(f"{name} ({int(t)})" for t, name in TOKEN_TYPE_NAMES.items())
    raise ValueError(f"unknown token type {value!r}; use one of {names}")


def chunk_rows(seq_len: int) -> int:
    """Rows per HDF5 chunk for a sequence length."""
    return max(1, CHUNK_TOKENS // max(1, seq_len))


def step_rows(seq_len: int) -> int:
    """Rows per streaming step: a whole number of chunks."""
    return chunk_rows(seq_len) * CHUNKS_PER_STEP


@dataclass(frozen=True)
class Provenance:
    """Which tokentype command and options produced a dataset; stored as dataset attributes."""

    command: str
    options: Mapping[str, object] = field(default_factory=dict)

    def attrs(self) -> dict[str, str]:
        return {
            PROVENANCE_VERSION_ATTR: __version__,
            PROVENANCE_COMMAND_ATTR: self.command,
            PROVENANCE_OPTIONS_ATTR: json.dumps(dict(self.options), sort_keys=True, default=str),
        }


# --- opening and reading -----------------------------------------------------------------------


def open_shard(
    path: str | os.PathLike,
    mode: str = "r",
    *,
    allow_external: bool = False,
    check_links: bool = True,
) -> h5py.File:
    """Open an existing shard, turning every way that can fail into a one-line ShardError.

    A shard must hold its own data: an external link, or a virtual dataset reading another file,
    is refused unless `allow_external` (then each virtual dataset's sources must exist, or its
    rows would read as fill values). `check_links=False` leaves both to the caller (validate
    reports them as findings).
    """
    path = Path(path)
    if not path.exists():
        raise ShardError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise ShardError(f"{path}: is a folder, not an HDF5 file")
    kind = path.stat().st_mode
    if not stat.S_ISREG(kind):
        # Opening a FIFO would wait for a writer for ever; HDF5 needs random access anyway.
        raise ShardError(
            f"{path}: is {_kind(kind)}, not a regular file; HDF5 is read with random access:"
            " save it to a file first"
        )
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ShardError(
            f"{path}: cannot be read ({exc.strerror or exc}); check the file's permissions"
        ) from exc
    try:
        if not h5py.is_hdf5(path):
            raise ShardError(f"{path}: not an HDF5 file; pass a shard written by tokentype or h5py")
        shard = h5py.File(path, mode)
    except OSError as exc:
        raise ShardError(f"{path}: cannot open as HDF5 ({first_line(exc)})") from exc
    if not check_links:
        return shard
    try:
        with read_errors(path):
            check_contained(shard, allow_external)
    except BaseException:
        shard.close()
        raise
    return shard


@contextlib.contextmanager
def read_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn h5py's errors from reading damaged metadata into one line naming the file.

    h5py raises a flipped checksum, a dangling or looping link, or an external file that is not
    HDF5 as OSError, RuntimeError, KeyError or ValueError from any access. A full disk met while
    writing passes through unchanged (atomic_path names the output instead).
    """
    try:
        yield
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        if isinstance(exc, ShardError) or no_room(exc):
            raise
        raise ShardError(
            f"{path}: cannot be read ({first_line(exc)}); the file is damaged: rebuild it or"
            " restore a copy"
        ) from exc


@dataclass(frozen=True)
class OutsideReference:
    """An object of a file whose data lives elsewhere: an external link or a virtual dataset."""

    name: str  # its path in the file
    what: str  # "an external link to F:/OBJ", "a virtual dataset reading F"

    def refusal(self, path: str | os.PathLike) -> str:
        return (
            f"{path}: '{self.name}' is {self.what}; tokentype reads only the file it is given:"
            " pass --allow-external to follow it, or copy the data into the file"
        )


def outside_references(shard: h5py.File, limit: int | None = None) -> list[OutsideReference]:
    """External links and virtual datasets reading other files, anywhere in `shard` (in order).

    Links are visited without being followed, so a soft-link loop or an external link to a
    non-HDF5 file costs nothing here. A soft link can leave the file only through one of these.
    """
    found: list[OutsideReference] = []
    failed: list[BaseException] = []

    def visit(name: str, link: object) -> bool | None:
        try:
            if isinstance(link, h5py.ExternalLink):
                found.append(
                    OutsideReference(name, f"an external link to {link.filename}:{link.path}")
                )
            elif isinstance(link, h5py.HardLink):
                obj = shard[name]
                if isinstance(obj, h5py.Dataset) and obj.is_virtual:
                    files = sorted({s.file_name for s in obj.virtual_sources()} - {"."})
                    if files:
                        found.append(
                            OutsideReference(name, f"a virtual dataset reading {', '.join(files)}")
                        )
            interrupts.check()
        except BaseException as exc:
            # Raised through HDF5's C visitor it would come out as a SystemError: stop the
            # visit and raise it from here.
            failed.append(exc)
            return True
        return True if limit is not None and len(found) >= limit else None

    shard.visititems_links(visit)
    if failed:
        raise failed[0]
    return found


def check_contained(shard: h5py.File, allow_external: bool) -> None:
    """Refuse data kept outside `shard` unless allowed; when allowed, refuse missing sources."""
    path = shard.filename
    references = outside_references(shard, None if allow_external else 1)
    if references and not allow_external:
        raise ShardError(references[0].refusal(path))
    for reference in references:
        obj = shard.get(reference.name)
        if isinstance(obj, h5py.Dataset) and obj.is_virtual:
            missing = missing_virtual_sources(obj)
            if missing:
                raise ShardError(
                    f"{path}: virtual dataset '{reference.name}' reads {missing[0]}, which does"
                    " not exist; its rows would read as fill values: restore the source or"
                    " rebuild the file"
                )


def missing_virtual_sources(dataset: h5py.Dataset) -> list[str]:
    """`FILE:DATASET` of each source of a virtual dataset that cannot be found.

    HDF5 reads a missing source as fill values without a word; relative names are looked up as
    HDF5 does: under $HDF5_VDS_PREFIX, beside the virtual file, then from the working folder.
    """
    folder = Path(dataset.file.filename).parent
    missing = []
    for source in dataset.virtual_sources():
        name, inner = source.file_name, source.dset_name
        if name == ".":
            if inner not in dataset.file:
                missing.append(f"{dataset.file.filename}:{inner}")
            continue
        candidates = [Path(name)]
        if not Path(name).is_absolute():
            prefix = os.environ.get("HDF5_VDS_PREFIX")
            candidates = [*([Path(prefix) / name] if prefix else []), folder / name, Path(name)]
        if not any(_holds_dataset(candidate, inner) for candidate in candidates):
            missing.append(f"{name}:{inner}")
    return missing


def _holds_dataset(path: Path, name: str) -> bool:
    try:
        if not path.is_file() or not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as other:
            return isinstance(other.get(name), h5py.Dataset)
    except (OSError, RuntimeError, KeyError, ValueError):
        return False


def reads_outside(shard: h5py.File, name: str) -> bool:
    """Whether reading object `name` of `shard` reads another file (a link or a virtual dataset)."""
    link = shard.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        return True
    obj = shard.get(name)
    if obj is None:
        return False
    if obj.file.filename != shard.filename:  # a soft link through an external one
        return True
    return isinstance(obj, h5py.Dataset) and obj.is_virtual


def require_rows_dataset(shard: h5py.File, name: str = INPUT_IDS) -> h5py.Dataset:
    """Return a 2-D (rows, seq_len) dataset that can be read, or say what is wrong with it."""
    path = shard.filename
    if name not in shard:
        have = ", ".join(sorted(shard.keys())) or "nothing"
        raise ShardError(f"{path}: no dataset '{name}' (the file holds {have})")
    dataset = shard[name]
    if not isinstance(dataset, h5py.Dataset):
        raise ShardError(f"{path}: '{name}' is a group, not a dataset")
    if dataset.ndim != 2:
        raise ShardError(
            f"{path}: dataset '{name}' has shape {dataset.shape}; expected 2-D (rows, max_seq_length)"
        )
    if dataset.dtype.kind not in "iu":
        raise ShardError(
            f"{path}: dataset '{name}' has dtype {dataset.dtype}; expected integers (i4)"
        )
    if dataset.shape[1] > MAX_SEQ_LENGTH:
        raise ShardError(
            f"{path}: dataset '{name}' has rows of {dataset.shape[1]:,} tokens, more than the"
            f" {MAX_SEQ_LENGTH:,} tokentype reads; re-tokenize with a shorter --max-seq-length"
        )
    unwritten = unwritten_chunks(dataset)
    if unwritten is not None:
        raise ShardError(unwritten_message(path, name, dataset, *unwritten))
    return dataset


def unwritten_chunks(dataset: h5py.Dataset) -> tuple[int, int] | None:
    """(chunks stored, chunks declared) when part of a dataset was never written, else None.

    HDF5 reads unwritten storage as the fill value, so a (10^12, 2048) dataset declared in a
    4 KB file would be read for ever; HDF5 counts what is allocated without reading any of it.
    """
    if dataset.is_virtual or not dataset.size:
        return None
    if dataset.chunks is None:
        return (0, 1) if dataset.id.get_storage_size() == 0 else None
    declared = math.prod(-(-n // c) for n, c in zip(dataset.shape, dataset.chunks, strict=True))
    stored = dataset.id.get_num_chunks()
    return None if stored >= declared else (stored, declared)


def unwritten_message(
    path: str | os.PathLike, name: str, dataset: h5py.Dataset, stored: int, declared: int
) -> str:
    """The one line saying a dataset's storage was never (fully) written."""
    shape = " x ".join(f"{n:,}" for n in dataset.shape)
    return (
        f"{path}: dataset '{name}' declares {shape} but only {stored:,} of its {declared:,}"
        " chunks were ever written; the rest would read as fill values: rebuild the file"
    )


def chunk_shape_problem(dataset: h5py.Dataset) -> str | None:
    """Why a 2-D dataset's chunk shape makes row-by-row reading slow, or None when it is fine."""
    if dataset.chunks is None or dataset.ndim != 2 or not dataset.size:
        return None
    rows_per_chunk, columns_per_chunk = dataset.chunks
    row_bytes = dataset.shape[1] * dataset.dtype.itemsize
    chunk_bytes = rows_per_chunk * columns_per_chunk * dataset.dtype.itemsize
    chunks = math.prod(-(-n // c) for n, c in zip(dataset.shape, dataset.chunks, strict=True))
    if rows_per_chunk * row_bytes > MAX_READ_BYTES and rows_per_chunk < dataset.shape[0]:
        return (
            f"chunks {dataset.chunks} span {rows_per_chunk:,} rows; every bounded read"
            " decompresses whole chunks again"
        )
    if chunk_bytes < 1024 and chunks > MAX_CHUNKS_PER_READ:
        return (
            f"chunks {dataset.chunks} hold {chunk_bytes} bytes each ({chunks:,} chunks); HDF5"
            " spends more on each chunk's bookkeeping than on its data"
        )
    return None


def read_step_rows(dataset: h5py.Dataset) -> int:
    """Rows per streaming read of a 2-D dataset: about step_rows, whole chunks where a chunk fits
    in one read, never more than MAX_READ_BYTES nor MAX_CHUNKS_PER_READ chunks."""
    seq_len = dataset.shape[1]
    most = max_block_rows(dataset)
    wanted = min(most, step_rows(seq_len))
    if not dataset.chunks:
        return wanted
    per_chunk, columns_per_chunk = dataset.chunks
    if per_chunk > most:
        # Taller chunks than a read may hold: reads cut through them (chunk_shape_problem).
        return most
    across = -(-seq_len // columns_per_chunk) if seq_len else 1
    fit = max(1, MAX_CHUNKS_PER_READ // across)
    return per_chunk * max(1, min(wanted // per_chunk, fit))


def max_block_rows(dataset: h5py.Dataset) -> int:
    """Most rows of a 2-D dataset one block may hold (MAX_READ_BYTES)."""
    row_bytes = max(1, dataset.shape[1]) * dataset.dtype.itemsize
    return max(1, MAX_READ_BYTES // row_bytes)


def read_block(dataset: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    """Rows start..stop-1 of a 2-D dataset, read in pieces touching at most MAX_CHUNKS_PER_READ
    chunks each (HDF5's per-chunk bookkeeping of one read is what grows with tiny chunks)."""
    chunks = dataset.chunks
    seq_len = dataset.shape[1]
    if chunks is None or stop <= start or not seq_len:
        return dataset[start:stop]
    per_chunk, columns_per_chunk = chunks
    across = -(-seq_len // columns_per_chunk)
    down = (stop - 1) // per_chunk - start // per_chunk + 1
    if down * across <= MAX_CHUNKS_PER_READ:
        return dataset[start:stop]
    block = np.empty((stop - start, seq_len), dtype=dataset.dtype)
    band = columns_per_chunk * min(across, MAX_CHUNKS_PER_READ)
    tall = per_chunk * max(1, MAX_CHUNKS_PER_READ // min(across, MAX_CHUNKS_PER_READ))
    row = start
    while row < stop:
        end = min(stop, (row // per_chunk) * per_chunk + tall)
        for column in range(0, seq_len, band):
            right = min(seq_len, column + band)
            dataset.read_direct(
                block,
                np.s_[row:end, column:right],
                np.s_[row - start : end - start, column:right],
            )
        interrupts.check()
        row = end
    return block


def iter_row_chunks(
    datasets: Sequence[h5py.Dataset],
    rows_per_step: int | None = None,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Yield (first_row, [block per dataset]) over rows start..stop, a bounded block at a time.

    All datasets must have the same number of rows. Blocks are aligned to the first dataset's
    chunks so each chunk is decompressed once, and never hold more than MAX_READ_BYTES of any
    dataset whatever `rows_per_step` asks. A signal received stops the loop between blocks.
    """
    if not datasets:
        return
    total = datasets[0].shape[0]
    stop = total if stop is None else min(stop, total)
    if rows_per_step is None:
        rows_per_step = read_step_rows(datasets[0])
    rows_per_step = max(1, min([rows_per_step, *(max_block_rows(d) for d in datasets)]))
    row = start
    while row < stop:
        interrupts.check()
        end = min(stop, (row // rows_per_step + 1) * rows_per_step)
        blocks = []
        for dataset in datasets:
            try:
                blocks.append(read_block(dataset, row, end))
            except (OSError, RuntimeError) as exc:
                raise ShardError(
                    f"{dataset.file.filename}: dataset '{dataset.name.lstrip('/')}' rows {row}..{end - 1}"
                    f" cannot be read ({first_line(exc)}); the file is damaged, rebuild it"
                ) from exc
        yield row, blocks
        row = end


@contextlib.contextmanager
def readable(path: Path) -> Iterator[None]:
    """Report damaged metadata (dangling links, broken object headers) as one line.

    h5py raises these as OSError, RuntimeError or KeyError from any access to the file.
    """
    try:
        yield
    except (OSError, RuntimeError, KeyError) as exc:
        raise ShardError(
            f"{path}: cannot be read ({first_line(exc)}); the file is damaged, rebuild it or"
            " restore a copy"
        ) from exc


def types_dataset(shard: h5py.File, ids: h5py.Dataset) -> h5py.Dataset | None:
    """The shard's token_type_ids (None without one); a shape unlike input_ids' is an error."""
    if TOKEN_TYPE_IDS not in shard:
        return None
    types = require_rows_dataset(shard, TOKEN_TYPE_IDS)
    if types.shape != ids.shape:
        raise ShardError(
            f"{shard.filename}: '{TOKEN_TYPE_IDS}' has shape {types.shape} but '{INPUT_IDS}' has"
            f" {ids.shape}; fix it with `tokentype add-types FILE TYPES --overwrite`"
        )
    return types


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (h5py's run to several), for one-line errors."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --- temporaries, locks and write targets --------------------------------------------------------

# Why a write failed for want of room, by errno; h5py often gives only the text "errno = 28".
_NO_ROOM = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file size limit is exceeded",
}
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
# `.NAME.tokentype-HOST-PID-RANDOM.tmp`: the owner's host and pid let a later run tell a
# temporary left by a killed process from one that a live process is still writing.
_TEMPORARY = re.compile(r"^\..*\.tokentype-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[0-9a-f]+\.tmp$")
_LOCK_SUFFIX = ".tokentype-lock"


def no_room(exc: BaseException) -> str | None:
    """'the disk is full' (or quota, file size) when `exc` is a write that ran out of room."""
    code = getattr(exc, "errno", None)
    if code in _NO_ROOM:
        return _NO_ROOM[code]
    text = str(exc)
    for code, why in _NO_ROOM.items():
        if f"errno = {code}," in text or os.strerror(code) in text:
            return why
    return None


def temporary_name(target: str | os.PathLike) -> Path:
    """A fresh temporary path beside `target`, named after its owner (this process)."""
    target = Path(target)
    # Long names are cut so the temporary stays within the 255 bytes a file name may have.
    stem = target.name[:100]
    token = secrets.token_hex(4)
    return target.parent / f".{stem}.tokentype-{_HOST}-{os.getpid()}-{token}.tmp"


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove temporaries (files or folders) in `folder` whose owner process is gone.

    A SIGKILLed run cannot clean up after itself; the next write into the folder does. Only
    names made by `temporary_name` on this host are considered, and never one whose owner is
    still running. Returns what was removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(_LOCK_SUFFIX):
            if _remove_unheld_lock(Path(entry.path)):
                removed.append(Path(entry.path))
            continue
        match = _TEMPORARY.match(entry.name)
        if match is None or match["host"] != _HOST or _alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue  # another run removed it first, or it is not ours to remove
        removed.append(path)
    return removed


def _remove_unheld_lock(path: Path) -> bool:
    """Remove a lock file nobody holds (its owner was killed); a held one stays."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return False
    try:
        # Still the file at that name (not one a new holder has just made)?
        if os.stat(path).st_ino != os.fstat(descriptor).st_ino:
            return False
        path.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def temporary_folder(beside: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder beside `beside`, named by `temporary_name`, removed with its contents on
    exit; a killed run's is removed by the next write into the same folder. Raises OSError when
    the folder cannot be made (the caller words it)."""
    beside = Path(beside)
    remove_stale_temporaries(beside.parent)
    path = temporary_name(beside)
    os.mkdir(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except (OverflowError, OSError):
        return False
    return True


def check_target(target: str | os.PathLike) -> None:
    """Refuse a write target that is not a regular file or absent, or whose folder is missing.

    Renaming onto a character device or a FIFO would replace the node itself (as root,
    `-o /dev/null` would replace the system's).
    """
    target = Path(target)
    folder = target.parent
    if not folder.is_dir():
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise ShardError(f"{target}: {blocker} is a file, not a folder; choose another path")
        raise ShardError(f"{target}: folder {folder} does not exist; create it first")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return  # absent, or a dangling link: the rename makes the file
    except OSError as exc:
        raise ShardError(f"{target}: cannot be checked ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(mode):
        raise ShardError(
            f"{target}: is {_kind(mode)}, not a regular file; tokentype writes only regular"
            " files: name a new file"
        )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def refuse_output_onto_inputs(
    output: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None], flag: str = "-o"
) -> None:
    """Refuse an output that is one of the run's inputs (by resolved path or by inode).

    The output is renamed into place at the end, which would replace that input with it.
    `inputs` maps a description ("the types source") to a path (None: no such input).
    """
    for what, path in inputs.items():
        if path is None or str(path) == "-":
            continue
        if same_file(output, path):
            raise OptionError(f"{flag} {output} is {what}; writing it would replace it")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same inode, or the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


_held_locks: set[str] = set()


@contextlib.contextmanager
def write_lock(target: str | os.PathLike) -> Iterator[None]:
    """Hold an advisory lock on `target` while this process rewrites it; refuse when another does.

    Two in-place writers of one shard would both succeed and one result would be lost. The lock
    is a file beside the target (HDF5 itself locks the target, so it cannot carry our lock),
    holding the owner's pid for the message; it is removed on release. Nested use in one process
    is a no-op.
    """
    key = os.path.realpath(target)
    if key in _held_locks:
        yield
        return
    real = Path(key)
    lock_path = real.parent / f".{real.name[:100]}{_LOCK_SUFFIX}"
    attempts = 0
    while True:
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ShardError(
                f"{target}: cannot lock it for writing ({exc.strerror or exc}); check that its"
                " folder is writable"
            ) from exc
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
            os.close(descriptor)
            if not (holder.isdigit() and _alive(int(holder))) and attempts < 50:
                # Held for a moment by a run removing a killed writer's lock file.
                attempts += 1
                time.sleep(0.02)
                continue
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise ShardError(
                f"{target}: tokentype {who} is writing this file; wait for it to finish (or"
                " write elsewhere with -o)"
            ) from None
        # The previous holder may have removed the lock file between our open and our lock.
        try:
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(descriptor).st_ino:
            break
        os.close(descriptor)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        _held_locks.add(key)
        yield
    finally:
        _held_locks.discard(key)
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(descriptor)


# --- atomic, deterministic writing ---------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    A failure, an exception, a signal or a kill at any moment leaves `target` exactly as it
    was. The temporary's name carries this process's pid, so the next write into the folder
    removes it if this process was killed; that write also checks `target` is a regular file
    (or absent). Running out of disk space is one line naming `target`.
    """
    target = Path(target)
    check_target(target)
    folder = target.parent
    remove_stale_temporaries(folder)
    temporary = temporary_name(target)
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise ShardError(f"{target}: cannot create a file in {folder} ({first_line(exc)})") from exc
    try:
        yield temporary
        interrupts.check()
        os.chmod(temporary, _mode_for(target))
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        # The last moment a signal can stop the rename.
        interrupts.check()
        os.replace(temporary, target)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        why = no_room(exc) if isinstance(exc, (OSError, RuntimeError)) else None
        if why is not None and not isinstance(exc, ShardError):
            raise ShardError(
                f"{target}: cannot be written: {why} ({first_line(exc)}); nothing was written:"
                " free some space or write elsewhere"
            ) from exc
        raise
    _fsync_folder(folder)


def _mode_for(target: Path) -> int:
    if target.exists():
        return target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _create_file(path: Path, userblock_size: int = 0) -> h5py.File:
    # No object timestamps and a fixed format version: same arrays, same bytes.
    return h5py.File(
        path, "w", libver=("v110", "v110"), track_order=False, userblock_size=userblock_size
    )


def create_rows_dataset(
    shard: h5py.File,
    name: str,
    seq_len: int,
    provenance: Provenance | None = None,
    rows: int = 0,
) -> h5py.Dataset:
    """Create an empty (rows, seq_len) int32 dataset with the schema's storage settings."""
    if not 1 <= seq_len <= MAX_SEQ_LENGTH:
        raise ShardError(
            f"{shard.filename}: cannot create '{name}' with sequence length {seq_len:,}; use"
            f" 1..{MAX_SEQ_LENGTH:,}"
        )
    dataset = shard.create_dataset(
        name,
        shape=(rows, seq_len),
        maxshape=(None, seq_len),
        dtype=DTYPE,
        chunks=(chunk_rows(seq_len), seq_len),
        compression=COMPRESSION,
        compression_opts=COMPRESSION_LEVEL,
        shuffle=SHUFFLE,
        track_times=False,
    )
    if provenance is not None:
        dataset.attrs.update(provenance.attrs())
    return dataset


def as_rows(array: np.ndarray, seq_len: int, what: str) -> np.ndarray:
    """Check that `array` is (n, seq_len) integers that fit int32 and return it as int32."""
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != seq_len:
        raise ShardError(f"{what}: got a block of shape {array.shape}; expected (rows, {seq_len})")
    if array.dtype == DTYPE:
        return array
    if array.dtype.kind not in "iub":
        raise ShardError(f"{what}: got dtype {array.dtype}; expected integers")
    if array.size and array.dtype.itemsize >= DTYPE.itemsize:
        low, high = int(array.min()), int(array.max())
        info = np.iinfo(DTYPE)
        if low < info.min or high > info.max:
            raise ShardError(f"{what}: value {high if high > info.max else low} does not fit int32")
    return array.astype(DTYPE)


class _RowAppender:
    """Appends blocks of rows to one dataset, buffering so HDF5 writes whole chunks."""

    def __init__(self, dataset: h5py.Dataset, what: str) -> None:
        self.dataset = dataset
        self.what = what
        self.seq_len = dataset.shape[1]
        self.flush_rows = step_rows(self.seq_len)
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.rows = dataset.shape[0]

    def append(self, block: np.ndarray) -> None:
        block = as_rows(block, self.seq_len, self.what)
        if not len(block):
            return
        self.pending.append(block)
        self.pending_rows += len(block)
        if self.pending_rows >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        block = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        self.pending, self.pending_rows = [], 0
        interrupts.check()
        end = self.rows + len(block)
        try:
            self.dataset.resize(end, axis=0)
            self.dataset[self.rows : end] = block
        except (OSError, RuntimeError) as exc:
            if no_room(exc):
                raise  # atomic_path says so, naming the output
            raise ShardError(f"{self.what}: cannot be written ({first_line(exc)})") from exc
        self.rows = end


# HDF5 files a full disk left unclosable (see ShardWriter._abort).
_ABANDONED: list[object] = []


def abandoned_files() -> bool:
    """Whether a write ran out of room and left an HDF5 file that must never be closed: the
    process must then end without the interpreter's teardown (os._exit)."""
    return bool(_ABANDONED)


class ShardWriter:
    """Stream rows into a new shard, written under a temporary name and renamed into place on close.

    Example::

        with ShardWriter("out.h5", 2048, provenance=Provenance("tokenize", opts)) as writer:
            writer.append(input_ids=ids, token_type_ids=types)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        seq_len: int,
        datasets: Sequence[str] = (INPUT_IDS, TOKEN_TYPE_IDS),
        provenance: Provenance | None = None,
    ) -> None:
        self.path = Path(path)
        self.seq_len = seq_len
        self.names = tuple(datasets)
        self.provenance = provenance
        self._atomic: contextlib.AbstractContextManager[Path] | None = None
        self._file: h5py.File | None = None
        self._appenders: dict[str, _RowAppender] = {}

    def __enter__(self) -> ShardWriter:
        self._atomic = atomic_path(self.path)
        temporary = self._atomic.__enter__()
        try:
            self._file = _create_file(temporary)
            for name in self.names:
                dataset = create_rows_dataset(self._file, name, self.seq_len, self.provenance)
                self._appenders[name] = _RowAppender(dataset, f"{self.path}: dataset '{name}'")
        except BaseException as exc:
            self._abort(exc)
            raise
        return self

    @property
    def rows(self) -> int:
        """Rows appended so far (including buffered ones) to the first dataset."""
        first = self._appenders[self.names[0]]
        return first.rows + first.pending_rows

    def append(self, **blocks: np.ndarray) -> None:
        """Append the same number of rows to every dataset of the shard."""
        if set(blocks) != set(self.names):
            raise ShardError(f"{self.path}: append needs exactly {', '.join(self.names)}")
        lengths = {len(np.asarray(block)) for block in blocks.values()}
        if len(lengths) != 1:
            raise ShardError(f"{self.path}: append got blocks with different row counts {lengths}")
        for name, block in blocks.items():
            self._appenders[name].append(block)

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc is not None:
            self._fail(exc)
            return
        try:
            for appender in self._appenders.values():
                appender.flush()
            self._file.close()
            self._file = None
        except BaseException as error:
            self._fail(error)
            raise
        self._atomic.__exit__(None, None, None)

    def _fail(self, exc: BaseException) -> None:
        """Abort; a write that ran out of room becomes one line naming the shard (_abort
        swallows atomic_path's own message)."""
        self._abort(exc)
        why = no_room(exc) if isinstance(exc, (OSError, RuntimeError)) else None
        if why is not None and not isinstance(exc, ShardError):
            raise ShardError(
                f"{self.path}: cannot be written: {why}; nothing was written: free some space"
                " or write elsewhere"
            ) from exc

    def _abort(self, exc: BaseException) -> None:
        if self._file is not None:
            if isinstance(exc, (OSError, RuntimeError)) and no_room(exc):
                # HDF5 cannot close a file it could not write: it retries the metadata flush at
                # close, at every object's release and at exit, where it crashed the interpreter
                # (SIGSEGV after the message). The temporary is removed unclosed; the objects are
                # kept from release and abandoned_files() tells main() to end without teardown.
                _ABANDONED.append((self._file, dict(self._appenders)))
                self._appenders.clear()
            else:
                with contextlib.suppress(Exception):
                    self._file.close()
            self._file = None
        if self._atomic is not None:
            with contextlib.suppress(BaseException):
                self._atomic.__exit__(type(exc), exc, exc.__traceback__)


def write_dataset_atomically(
    path: str | os.PathLike,
    name: str,
    row_blocks: Iterable[np.ndarray],
    *,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    provenance: Provenance | None = None,
    overwrite_hint: str = "--overwrite",
    allow_external: bool = False,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
) -> Path:
    """Add (or replace) dataset `name` shaped like the shard's input_ids, streaming `row_blocks`.

    The result is built beside the target and renamed into place, so `path` is left exactly as it
    was unless the whole write succeeds. With `output`, `path` is never touched, and `output` may
    not be `path` nor any of `inputs` (description -> path). Existing datasets are copied object
    by object (compressed chunks as they are), the user block too. The target is locked against
    a second tokentype writer for the whole run.
    """
    source_path = Path(path)
    # In place through a symlink: replace the file it points to and keep the link.
    target = Path(output) if output is not None else Path(os.path.realpath(source_path))
    if output is not None:
        refuse_output_onto_inputs(
            output,
            {
                f"the input {source_path} itself (drop -o to rewrite it in place)": source_path,
                **(inputs or {}),
            },
        )
    check_target(target)
    with write_lock(target), open_shard(source_path, allow_external=allow_external) as source:
        # Only the source's own metadata: an error of `row_blocks` is the caller's to word.
        with read_errors(source_path):
            input_ids = require_rows_dataset(source, INPUT_IDS)
            rows, seq_len = input_ids.shape
            if seq_len < 1:
                raise ShardError(
                    f"{source_path}: '{INPUT_IDS}' has rows of length 0; rebuild the shard"
                )
            if name in source and not overwrite:
                raise DatasetExistsError(
                    f"{source_path}: dataset '{name}' already exists; pass {overwrite_hint} to"
                    " replace it"
                )
            userblock = source.userblock_size
            keys = sorted(source.keys())
        with atomic_path(target) as temporary:
            with _create_file(temporary, userblock) as result:
                _copy_attributes(source, result, source_path)
                for key in keys:
                    if key != name:
                        _copy_object(source, key, result, allow_external)
                appender = _RowAppender(
                    create_rows_dataset(result, name, seq_len, provenance),
                    f"{target}: dataset '{name}'",
                )
                for block in row_blocks:
                    appender.append(block)
                    if appender.rows + appender.pending_rows > rows:
                        raise ShardError(
                            f"{source_path}: more rows given for '{name}' than the {rows} of '{INPUT_IDS}'"
                        )
                appender.flush()
                if appender.rows != rows:
                    raise ShardError(
                        f"{source_path}: {appender.rows} rows given for '{name}' but '{INPUT_IDS}' has {rows}"
                    )
            if userblock:
                _copy_userblock(source_path, temporary, userblock)
    return target


def storage(dataset: h5py.Dataset) -> dict[str, object]:
    """How a dataset is stored: dtype, compression, shuffle, chunks and maxshape, JSON-ready."""
    return {
        "dtype": dataset.dtype.str,
        "compression": dataset.compression,
        "compression_opts": dataset.compression_opts,
        "shuffle": bool(dataset.shuffle),
        "chunks": None if dataset.chunks is None else list(dataset.chunks),
        "maxshape": None if dataset.maxshape is None else list(dataset.maxshape),
    }


def schema_storage(seq_len: int) -> dict[str, object]:
    """`storage()` of a (rows, seq_len) dataset as create_rows_dataset makes it."""
    return {
        "dtype": DTYPE.str,
        "compression": COMPRESSION,
        "compression_opts": COMPRESSION_LEVEL,
        "shuffle": SHUFFLE,
        "chunks": [chunk_rows(seq_len), seq_len],
        "maxshape": [None, seq_len],
    }


@dataclass(frozen=True)
class RepackResult:
    """What repack_shard found and wrote: each row dataset's storage before and after."""

    path: Path
    output: Path
    written: bool
    rows: int
    seq_len: int
    datasets: dict[str, tuple[dict[str, object], dict[str, object]]]


def repack_shard(path: str | os.PathLike, output: str | os.PathLike | None = None) -> RepackResult:
    """Rewrite the shard's row datasets in the schema's storage (int32, gzip + shuffle, row chunks,
    maxshape (None, L)); copy everything else as it is, attributes included.

    Values are checked to fit int32 before anything is renamed into place. In place, a shard
    already in the schema's storage is left byte-identical (nothing is written).
    """
    source_path = Path(path)
    target = Path(output) if output is not None else Path(os.path.realpath(source_path))
    with open_shard(source_path) as source:
        input_ids = require_rows_dataset(source, INPUT_IDS)
        names = [name for name in ROW_DATASETS if name in source]
        datasets = {name: require_rows_dataset(source, name) for name in names}
        for name, dataset in datasets.items():
            if dataset.shape[1] < 1:
                raise ShardError(
                    f"{source_path}: dataset '{name}' has rows of length 0; rebuild the shard"
                )
        before = {name: storage(dataset) for name, dataset in datasets.items()}
        after = {name: schema_storage(dataset.shape[1]) for name, dataset in datasets.items()}
        result = RepackResult(
            path=source_path,
            output=target,
            written=False,
            rows=input_ids.shape[0],
            seq_len=input_ids.shape[1],
            datasets={name: (before[name], after[name]) for name in names},
        )
        if output is None and before == after:
            return result
        with atomic_path(target) as temporary, _create_file(temporary) as written:
            written.attrs.update(dict(source.attrs))
            for key in sorted(source.keys()):
                if key not in datasets:
                    _copy_object(source, key, written, allow_external=False)
                    continue
                dataset = datasets[key]
                copy = create_rows_dataset(written, key, dataset.shape[1])
                copy.attrs.update(dict(dataset.attrs))
                appender = _RowAppender(copy, f"{source_path}: dataset '{key}'")
                for _, (block,) in iter_row_chunks([dataset]):
                    appender.append(block)
                appender.flush()
    return RepackResult(**{**result.__dict__, "written": True})


def _copy_userblock(source: Path, temporary: Path, size: int) -> None:
    """Copy the user block (bytes before the HDF5 superblock, e.g. a text header) as it is."""
    with open(source, "rb") as original, open(temporary, "r+b") as result:
        left = size
        while left:
            piece = original.read(min(left, 1 << 20))
            if not piece:
                raise ShardError(f"{source}: the file ends inside its user block; it is damaged")
            result.write(piece)
            left -= len(piece)


def _copy_attributes(source: h5py.HLObject, result: h5py.HLObject, path: Path) -> None:
    for key in source.attrs:
        try:
            result.attrs[key] = source.attrs[key]
        except (TypeError, ValueError, OSError, RuntimeError, KeyError) as exc:
            if no_room(exc):
                raise
            raise ShardError(
                f"{path}: attribute '{key}' of '{source.name}' cannot be copied"
                f" ({first_line(exc)}); remove it or rebuild the file"
            ) from exc


def _copy_object(source: h5py.Group, key: str, result: h5py.Group, allow_external: bool) -> None:
    """Copy one object as it is; damaged metadata (e.g. a dangling link) is one line.

    Soft links stay links (a dangling or looping one is an error). Data kept outside the
    file (only with allow_external) is copied in, so the result stands on its own wherever it
    goes: a relative external link or virtual source would not resolve from another folder.
    """
    try:
        link = source.get(key, getlink=True)
        if isinstance(link, h5py.SoftLink):
            source[key]  # a dangling or looping link is damage: raises, and we say so
            result[key] = h5py.SoftLink(link.path)
            return
        obj = source[key]
        if _holds_virtual(obj):
            _materialise(obj, result, key, allow_external)
        else:
            source.copy(obj, result, name=key, expand_external=allow_external)
    except (OSError, RuntimeError, KeyError) as exc:
        if no_room(exc):
            raise
        raise ShardError(
            f"{source.file.filename}: '{(source.name.rstrip('/') + '/' + key).lstrip('/')}' cannot be copied"
            f" ({first_line(exc)}); the file is damaged: remove that object or rebuild the file"
        ) from exc
    interrupts.check()


def _holds_virtual(obj: h5py.HLObject) -> bool:
    if isinstance(obj, h5py.Dataset):
        return obj.is_virtual
    found = []
    failed: list[BaseException] = []

    def visit(_name: str, child: h5py.HLObject) -> bool | None:
        try:
            if isinstance(child, h5py.Dataset) and child.is_virtual:
                found.append(child)
                return True
        except BaseException as exc:  # see outside_references
            failed.append(exc)
            return True
        return None

    obj.visititems(visit)
    if failed:
        raise failed[0]
    return bool(found)


def _materialise(obj: h5py.HLObject, result: h5py.Group, key: str, allow_external: bool) -> None:
    """Copy a virtual dataset's values (or a group holding one) into a real dataset."""
    if isinstance(obj, h5py.Group):
        group = result.create_group(key, track_order=False)
        _copy_attributes(obj, group, Path(obj.file.filename))
        for child in sorted(obj.keys()):
            _copy_object(obj, child, group, allow_external)
        return
    if obj.ndim == 2 and obj.shape[1]:
        columns = obj.shape[1]
        copy = result.create_dataset(
            key,
            shape=obj.shape,
            maxshape=(None, columns),
            dtype=obj.dtype,
            chunks=(chunk_rows(columns), columns),
            compression=COMPRESSION,
            compression_opts=COMPRESSION_LEVEL,
            shuffle=SHUFFLE,
            track_times=False,
        )
        for first_row, (block,) in iter_row_chunks([obj]):
            copy[first_row : first_row + len(block)] = block
    elif obj.nbytes <= MAX_READ_BYTES:
        copy = result.create_dataset(key, data=obj[()], track_times=False)
    else:
        raise ShardError(
            f"{obj.file.filename}: virtual dataset '{obj.name}' of shape {obj.shape} is too"
            " large to copy in; copy its data into a real dataset first"
        )
    _copy_attributes(obj, copy, Path(obj.file.filename))


def find_shards(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand folders into the *.h5 / *.hdf5 files they hold (recursively, sorted); keep files as given."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix.lower() in (".h5", ".hdf5") and p.is_file()
                )
            )
        else:
            found.append(path)
    return found


# --- rows moved between files a build owns ---------------------------------------------------


def copy_rows_in_place(
    source: str | os.PathLike, start: int, stop: int, target: str | os.PathLike
) -> None:
    """Append rows start..stop-1 of every row dataset of `source` to the same datasets of `target`.

    In place and not atomic: only for files inside a build's own temporary folder, which appears
    as a whole or not at all. Streams a bounded block at a time.
    """
    with h5py.File(source, "r") as src, h5py.File(target, "r+") as dst:
        names = [name for name in ROW_DATASETS if name in src]
        if sorted(names) != sorted(name for name in ROW_DATASETS if name in dst):
            raise ShardError(f"{source} and {target} hold different datasets; cannot move rows")
        appenders = {name: _RowAppender(dst[name], f"{target}: dataset '{name}'") for name in names}
        for _, blocks in iter_row_chunks([src[name] for name in names], start=start, stop=stop):
            for name, block in zip(names, blocks, strict=True):
                appenders[name].append(block)
        for appender in appenders.values():
            appender.flush()


def truncate_rows_in_place(path: str | os.PathLike, rows: int) -> None:
    """Keep the first `rows` rows of every row dataset of `path` (same caveat as above)."""
    with h5py.File(path, "r+") as shard:
        for name in ROW_DATASETS:
            if name in shard:
                shard[name].resize(rows, axis=0)
