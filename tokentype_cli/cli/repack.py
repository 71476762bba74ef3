"""`tokentype repack`."""

from __future__ import annotations

from pathlib import Path

import click

from tokentype_cli.cli.base import (
    check_existing_output,
    cli,
    emit_json,
    hdf5_output,
    json_option,
    message,
    quiet_option,
)


@cli.command("repack")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=hdf5_output,
    help="Write the repacked shard here and leave FILE untouched (default: replace FILE).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing -o file (only an HDF5 one is ever replaced).",
)
@json_option
@quiet_option
@click.pass_context
def repack_command(
    ctx: click.Context, file: Path, output: Path | None, overwrite: bool, as_json: bool, quiet: bool
) -> None:
    """Rewrite a shard's datasets in the schema's storage, fixing validate's storage warnings.

    input_ids, token_type_ids and category_ids become int32, gzip level 4 with the shuffle
    filter, chunked by whole rows, maxshape (None, max_seq_length): what every tokentype command
    writes and validate expects (dtype-not-int32, not-gzip, maxshape). Values and attributes are
    kept; other objects are copied as they are. Ids that do not fit int32 are an error and
    nothing is written. FILE is replaced atomically, and only when its storage differs.

    Example:

    \b
        tokentype repack shard.h5
        tokentype repack other_tool.h5 -o shard.h5 && tokentype validate shard.h5 --strict
        tokentype repack shard.h5 --json | jq '.datasets | keys'
    """
    from tokentype_cli.schema.repack import repack_shard

    check_existing_output(ctx, output, overwrite, inputs=(file,))
    result = repack_shard(file, output=output)
    if as_json:
        emit_json(
            {
                "path": str(result.path),
                "output": str(result.output),
                "written": result.written,
                "rows": result.rows,
                "seq_len": result.seq_len,
                "datasets": {
                    name: {"before": before, "after": after}
                    for name, (before, after) in result.datasets.items()
                },
            }
        )
        return
    if not result.written:
        message(f"{result.path}: already in the schema's storage; nothing written", quiet)
        return
    message(
        f"{result.output}: rewrote {', '.join(result.datasets)} in the schema's storage (int32,"
        f" gzip 4 + shuffle, row chunks, maxshape (None, {result.seq_len}))",
        quiet,
    )
