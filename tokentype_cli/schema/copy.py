"""Copying a shard's other objects into a new file as they are: user block, attributes, links,
groups and datasets, with virtual data made real. Used by atomic rewrites and `repack`."""

from __future__ import annotations

from pathlib import Path

import h5py

from tokentype_cli import interrupts
from tokentype_cli.errors import ShardError
from tokentype_cli.schema.read import MAX_READ_BYTES, first_line, iter_row_chunks
from tokentype_cli.schema.storage import COMPRESSION, COMPRESSION_LEVEL, SHUFFLE, chunk_rows
from tokentype_cli.schema.temporary import no_room


def copy_userblock(source: Path, temporary: Path, size: int) -> None:
    """Copy the user block (bytes before the HDF5 superblock, e.g. a text header) as it is."""
    with open(source, "rb") as original, open(temporary, "r+b") as result:
        left = size
        while left:
            piece = original.read(min(left, 1 << 20))
            if not piece:
                raise ShardError(f"{source}: the file ends inside its user block; it is damaged")
            result.write(piece)
            left -= len(piece)


def copy_attributes(source: h5py.HLObject, result: h5py.HLObject, path: Path) -> None:
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


def copy_object(source: h5py.Group, key: str, result: h5py.Group, allow_external: bool) -> None:
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
        if holds_virtual(obj):
            materialise(obj, result, key, allow_external)
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


def holds_virtual(obj: h5py.HLObject) -> bool:
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


def materialise(obj: h5py.HLObject, result: h5py.Group, key: str, allow_external: bool) -> None:
    """Copy a virtual dataset's values (or a group holding one) into a real dataset."""
    if isinstance(obj, h5py.Group):
        group = result.create_group(key, track_order=False)
        copy_attributes(obj, group, Path(obj.file.filename))
        for child in sorted(obj.keys()):
            copy_object(obj, child, group, allow_external)
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
    copy_attributes(obj, copy, Path(obj.file.filename))
