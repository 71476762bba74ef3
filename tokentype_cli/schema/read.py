"""Opening and reading shards: refusing data kept outside the file, bounded streaming reads."""

from __future__ import annotations

import contextlib
import math
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from tokentype_cli import interrupts
from tokentype_cli.errors import ShardError
from tokentype_cli.schema.names import INPUT_IDS, MAX_SEQ_LENGTH, TOKEN_TYPE_IDS
from tokentype_cli.schema.storage import step_rows
from tokentype_cli.schema.temporary import no_room

# Whatever a file's chunking, one read moves at most this many bytes of one dataset and touches
# at most this many chunks: HDF5 keeps a few KB of bookkeeping per chunk a read touches (262,144
# one-token chunks read at once took 1.7 GB), and a chunk shape of (131072, 1) made the old
# chunk-aligned step read 1 GiB at once.
MAX_READ_BYTES = 1 << 24


MAX_CHUNKS_PER_READ = 4096


# Attributes larger than this are summarised (shape, dtype, size), not read whole into reports.
MAX_ATTRIBUTE_BYTES = 4096


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
            f"{path}: is {file_kind(kind)}, not a regular file; HDF5 is read with random access:"
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


def file_kind(mode: int) -> str:
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
