"""`repack`: rewrite a shard into the schema's storage (chunking, compression), atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tokentype_cli.errors import ShardError
from tokentype_cli.schema.copy import copy_object
from tokentype_cli.schema.names import INPUT_IDS, ROW_DATASETS
from tokentype_cli.schema.read import (
    iter_row_chunks,
    open_shard,
    require_rows_dataset,
)
from tokentype_cli.schema.storage import (
    create_rows_dataset,
    schema_storage,
    storage,
)
from tokentype_cli.schema.write import (
    RowAppender,
    atomic_path,
    check_target,
    create_file,
    refuse_output_onto_inputs,
)


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
    if output is not None:
        # The rename into place would replace the input with its own half-read copy; in place
        # is spelled without -o, as add-types and assign-types ask.
        refuse_output_onto_inputs(
            output,
            {f"the input {source_path} itself (drop -o to rewrite it in place)": source_path},
        )
        check_target(output)
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
        with atomic_path(target) as temporary, create_file(temporary) as written:
            written.attrs.update(dict(source.attrs))
            for key in sorted(source.keys()):
                if key not in datasets:
                    copy_object(source, key, written, allow_external=False)
                    continue
                dataset = datasets[key]
                copy = create_rows_dataset(written, key, dataset.shape[1])
                copy.attrs.update(dict(dataset.attrs))
                appender = RowAppender(copy, f"{source_path}: dataset '{key}'")
                for _, (block,) in iter_row_chunks([dataset]):
                    appender.append(block)
                appender.flush()
    return RepackResult(**{**result.__dict__, "written": True})
