"""Atomic, deterministic writes: targets checked, temporaries renamed into place, `ShardWriter`."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from tokentype_cli import interrupts
from tokentype_cli.errors import DatasetExistsError, OptionError, ShardError
from tokentype_cli.schema.copy import copy_attributes, copy_object, copy_userblock
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_IDS, Provenance
from tokentype_cli.schema.read import (
    file_kind,
    first_line,
    open_shard,
    read_errors,
    require_rows_dataset,
)
from tokentype_cli.schema.storage import as_rows, create_rows_dataset, step_rows
from tokentype_cli.schema.temporary import (
    no_room,
    remove_stale_temporaries,
    temporary_name,
    write_lock,
)


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
        # A bad invocation (exit 2), as click's refusal of a folder for -o is.
        raise OptionError(
            f"{target}: is {file_kind(mode)}, not a regular file; tokentype writes only regular"
            " files: name a new file"
        )


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


@contextlib.contextmanager
def rewrite_target(
    file: str | os.PathLike,
    output: str | os.PathLike | None,
    inputs: Mapping[str, str | os.PathLike | None],
) -> Iterator[Path]:
    """Where a rewrite of FILE goes (FILE itself, or `output`), checked and locked for the run.

    `output` may name neither FILE nor any of `inputs` (what each is, by name); an in-place run
    holds FILE's write lock from the start, so a second writer is refused before any work. A
    missing FILE is left for open_shard to report.
    """
    file = Path(file)
    if output is not None:
        refuse_output_onto_inputs(
            output, {f"the input {file} itself (drop -o to rewrite it in place)": file, **inputs}
        )
        check_target(output)
    target = Path(output) if output is not None else Path(os.path.realpath(file))
    with write_lock(target) if file.exists() else contextlib.nullcontext():
        yield target


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
    # Created inside the guarded block: a signal's exception raised between creating the file
    # and entering a block that removes it would leave the temporary behind.
    refused: ShardError | None = None  # the temporary could not be made: nothing to remove
    try:
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            os.close(os.open(temporary, flags, 0o600))
        except OSError as exc:
            refused = ShardError(f"{target}: cannot create a file in {folder} ({first_line(exc)})")
            raise refused from exc
        yield temporary
        interrupts.check()
        os.chmod(temporary, _mode_for(target))
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        # The last moment a signal can stop the rename.
        interrupts.check()
        os.replace(temporary, target)
    except BaseException as exc:
        if exc is not refused:
            temporary.unlink(missing_ok=True)
        full = _no_room_error(target, exc, detail=True)
        if full is not None:
            raise full from exc
        raise
    _fsync_folder(folder)


def _no_room_error(target: Path, exc: BaseException, detail: bool) -> ShardError | None:
    """The one-line error for a write of `target` that ran out of room (disk, quota, file size
    limit), or None for any other failure. `detail` adds the system's own words; HDF5's are long
    and say no more than `why`."""
    why = no_room(exc) if isinstance(exc, (OSError, RuntimeError)) else None
    if why is None or isinstance(exc, ShardError):
        return None
    said = f" ({first_line(exc)})" if detail else ""
    return ShardError(
        f"{target}: cannot be written: {why}{said}; nothing was written: free some space or"
        " write elsewhere"
    )


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


def create_file(path: Path, userblock_size: int = 0) -> h5py.File:
    # No object timestamps and a fixed format version: same arrays, same bytes.
    return h5py.File(
        path, "w", libver=("v110", "v110"), track_order=False, userblock_size=userblock_size
    )


class RowAppender:
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
        self._appenders: dict[str, RowAppender] = {}

    def __enter__(self) -> ShardWriter:
        self._atomic = atomic_path(self.path)
        temporary = self._atomic.__enter__()
        try:
            self._file = create_file(temporary)
            for name in self.names:
                dataset = create_rows_dataset(self._file, name, self.seq_len, self.provenance)
                self._appenders[name] = RowAppender(dataset, f"{self.path}: dataset '{name}'")
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
        # __enter__ set both; only a writer used outside `with` gets here without them.
        assert self._file is not None and self._atomic is not None
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
        full = _no_room_error(self.path, exc, detail=False)
        if full is not None:
            raise full from exc

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
            with create_file(temporary, userblock) as result:
                copy_attributes(source, result, source_path)
                for key in keys:
                    if key != name:
                        copy_object(source, key, result, allow_external)
                appender = RowAppender(
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
                copy_userblock(source_path, temporary, userblock)
    return target
