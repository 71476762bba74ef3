"""`tokentype inspect`."""

from __future__ import annotations

from pathlib import Path

import click

from tokentype_cli.cli.base import (
    allow_external_option,
    cli,
    emit_json,
    json_option,
    progress_bar,
    prompt_loss_weight_option,
    quiet_option,
    tokenizer_option,
    use_color,
)
from tokentype_cli.tokenizer_loader import LoadedTokenizer


@cli.command("inspect")
@click.argument("path", type=click.Path(readable=False, path_type=Path))
@click.option(
    "--rows",
    "rows_spec",
    default=None,
    metavar="SPEC",
    help="Show these rows token by token instead of the summary: 0, -1, 3:6, or 0,5,9.",
)
@tokenizer_option(help_extra="Decodes the tokens of --rows (ids are shown without one).")
@click.option("--ids", "show_ids", is_flag=True, help="With --tokenizer, show each token's id too.")
@prompt_loss_weight_option(
    help_extra="Adds each type's share of the loss weight and the rows carrying no loss."
)
@click.option(
    "--collapse",
    type=click.IntRange(min=2),
    default=8,
    help="Show runs of at least this many padding tokens as one '… N × pad'.",
)
@allow_external_option
@json_option
@quiet_option
def inspect_command(
    path: Path,
    rows_spec: str | None,
    tokenizer: LoadedTokenizer | None,
    show_ids: bool,
    prompt_loss_weight: float | None,
    collapse: int,
    allow_external: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Summarise a shard (or a folder of shards), or show its rows by token type.

    The summary gives each dataset's shape, dtype, storage and attributes, the count and share of
    each token type, articles (separators), the padding share and, with --prompt-loss-weight, each
    type's share of the loss. --rows prints tokens coloured by type on a terminal (NO_COLOR turns
    colour off), with [type] markers otherwise.

    Example:

    \b
        tokentype inspect shard.h5 --prompt-loss-weight 0
        tokentype inspect shard.h5 --rows 0:3 --tokenizer gpt2/ --ids | less
        tokentype inspect shards/ --json | jq '.token_types.padding.share'
    """
    from tokentype_cli import inspect_shard

    if rows_spec is None:
        with progress_bar(None, "tok", "inspect", quiet) as advance:
            summary = inspect_shard.summarize(
                path, prompt_loss_weight, progress=advance, allow_external=allow_external
            )
        if as_json:
            emit_json(summary.as_dict())
        else:
            click.echo(inspect_shard.format_summary(summary), nl=False)
        return
    files = inspect_shard.shard_files(path)
    color = use_color() and not as_json
    results = []
    if color:
        # color=True: click would strip the codes again when it thinks stdout is no terminal.
        click.echo(inspect_shard.color_legend(color=True), color=True)
    for file in files:
        total = inspect_shard.row_count(file, allow_external)
        shown = []
        if len(files) > 1 and not as_json:
            click.echo(f"== {file} ==")
        for row, ids, types in inspect_shard.read_rows(file, rows_spec, allow_external):
            if as_json:
                shown.append(inspect_shard.row_as_dict(row, ids, types, tokenizer))
                continue
            click.echo(inspect_shard.format_row_header(row, total, types, prompt_loss_weight))
            click.echo(
                inspect_shard.format_row(
                    ids,
                    types,
                    tokenizer=tokenizer,
                    show_ids=show_ids,
                    color=color,
                    collapse_padding=collapse,
                ),
                color=color or None,
            )
        results.append({"path": str(file), "rows": total, "selected": shown})
    if as_json:
        if path.is_dir():
            emit_json({"path": str(path), "files": results})
        else:
            emit_json(results[0])
