"""`tokentype add-types`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tokentype_cli.cli.base import (
    allow_external_option,
    check_existing_output,
    cli,
    emit_json,
    json_option,
    message,
    output_options,
    provenance,
    quiet_option,
)
from tokentype_cli.schema.names import TOKEN_TYPE_NAMES, TokenType


@cli.command("add-types")
# readable=False: an unreadable shard is a data error (exit 1) the library words, not usage.
@click.argument("file", type=click.Path(dir_okay=False, readable=False, path_type=Path))
@click.argument("source", type=str)
@output_options
@json_option
@allow_external_option
@quiet_option
@click.pass_context
def add_types_command(
    ctx: click.Context,
    file: Path,
    source: str,
    output: Path | None,
    overwrite: bool,
    as_json: bool,
    allow_external: bool,
    quiet: bool,
) -> None:
    """Append a token_type_ids dataset to FILE from SOURCE.

    SOURCE is a .npy array, a .jsonl file (one JSON list of ints per row), an HDF5 file (its
    token_type_ids, or PATH:DATASET), or - for JSONL on stdin. The whole source is checked (same
    shape as input_ids, integers in 0..3) before anything is written, and FILE is replaced
    atomically: an error or interruption leaves it exactly as it was.

    Example:

    \b
        tokentype add-types shard.h5 types.npy
        tokentype add-types shard.h5 other.h5:token_type_ids --overwrite
        python make_types.py | tokentype add-types shard.h5 - -o typed.h5
        tokentype add-types shard.h5 types.npy --json | jq '.token_types.prompt.share'
    """
    from tokentype_cli.add_types.add import add_types

    # SOURCE may be PATH:DATASET; an output naming its file is the library's to refuse.
    check_existing_output(ctx, output, overwrite, inputs=(file, source, source.rpartition(":")[0]))
    stdin = sys.stdin if source == "-" else None
    result = add_types(
        file,
        source,
        output=output,
        overwrite=overwrite,
        provenance=provenance(ctx, source=source, overwrite=overwrite),
        stdin=stdin,
        allow_external=allow_external,
    )
    if as_json:
        from tokentype_cli.loss import type_shares

        emit_json(
            {
                "path": str(file),
                "output": str(result.path),
                "source": source,
                "rows": result.rows,
                "seq_len": result.seq_len,
                "token_types": type_shares([result.counts[int(t)] for t in TokenType]),
            }
        )
        return
    shares = ", ".join(
        f"{TOKEN_TYPE_NAMES[TokenType(kind)]} {count:,}" for kind, count in result.counts.items()
    )
    message(
        f"{result.path}: wrote token_type_ids {result.rows} x {result.seq_len} ({shares})", quiet
    )
