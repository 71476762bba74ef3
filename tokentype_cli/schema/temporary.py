"""Temporaries and locks: owner-named temporary files and folders, stale ones removed, and
the write lock on a target."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tokentype_cli.errors import ShardError

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


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Swap two existing paths in one step (Linux's renameat2 RENAME_EXCHANGE); False where the
    system or filesystem cannot, and then nothing was changed.

    Replacing a folder with another otherwise takes two renames, and a process killed between
    them leaves neither at the target."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)  # glibc 2.28 and newer
    if renameat2 is None:
        return False
    done = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # old kernel, or NFS and kin
        return False
    raise OSError(code, os.strerror(code), os.fspath(first), None, os.fspath(second))


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries (files or folders) in `folder` whose owner process is gone.

    A SIGKILLed run cannot clean up after itself; the next write into the folder does. Only
    names made by `temporary_name` on this host are considered, and never one whose owner is
    still running. Returns what was removed.
    """
    removed: list[Path] = []
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
    failed: OSError | None = None  # the folder could not be made: nothing to remove
    # Made inside the guarded block: a signal's exception raised right after mkdir still
    # removes it.
    try:
        try:
            os.mkdir(path, 0o700)
        except OSError as exc:
            failed = exc
            raise
        yield path
    finally:
        if failed is None:
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
