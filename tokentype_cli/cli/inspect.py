"""`tokentype inspect`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tokentype_cli.cli.base import (
    allow_external_option,
    cli,
    color_option,
    emit_json,
    json_option,
    message,
    printable,
    progress_bar,
    prompt_loss_weight_option,
    quiet_option,
    tokenizer_option,
)
from tokentype_cli.report.options import NORMALIZATIONS

if TYPE_CHECKING:
    from tokentype_cli.tokenizer_loader import LoadedTokenizer


@cli.command("inspect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False, path_type=Path))
@click.option(
    "--rows",
    "rows_spec",
    default=None,
    metavar="SPEC",
    help="Show these rows token by token instead of the summary: 0, -1, 3:6, or 0,5,9.",
)
@tokenizer_option(
    help_extra="Decodes the tokens of --rows (ids are shown without one). Default: a dataset"
    " folder's own tokenizer/."
)
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
@click.option(
    "--loss-normalization",
    type=click.Choice(NORMALIZATIONS),
    default="token",
    help="How --prompt-loss-weight shares average. token: one mean over every target of the"
    " batch, as Megatron-LM's loss_mask and Hugging Face's mean over unmasked labels do (long"
    " answers weigh more); row: each row's weights sum to 1 first, for trainers that average"
    " per sequence.",
)
@color_option
@click.option(
    "--html",
    "html",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="REPORT.html",
    help="Write a self-contained HTML report instead (- for stdout): what is learned, validate's"
    " findings, histograms and sample rows (--rows picks them; default the first 3 and 3 at"
    " random).",
)
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --html: the `tokenize --ledger` file to chart (default: SHARD.ledger.jsonl beside"
    " each shard, DIR.ledger.jsonl beside a dataset folder).",
)
@allow_external_option
@json_option
@quiet_option
def inspect_command(
    paths: tuple[Path, ...],
    rows_spec: str | None,
    tokenizer: LoadedTokenizer | None,
    show_ids: bool,
    prompt_loss_weight: float | None,
    loss_normalization: str,
    collapse: int,
    color: bool,
    html: Path | None,
    ledger: Path | None,
    allow_external: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Summarise shards, or show their rows by token type.

    PATHS are HDF5 files or folders (searched for *.h5 / *.hdf5); several are summed up in one
    total followed by each file. The summary gives each dataset's shape, dtype, storage and attributes, the count and share of
    each token type, articles (separators), the padding share and, with --prompt-loss-weight, each
    type's share of the loss. --rows prints tokens coloured by type (see --color), with [type]
    markers otherwise. A dataset folder (one with metadata.yaml) shows its splits, rows per file,
    tokens by type per split and metadata before the files.

    --html writes one HTML file (inline CSS and SVG, no scripts, no network) for a shard or a
    dataset folder: type and loss shares, validate's findings, histograms per row, the ledger's
    cut and dropped lines, and sample rows in the terminal's palette, each type also underlined
    its own way.

    Example:

    \b
        tokentype inspect dataset/ --json | jq '.dataset.splits.train.rows'
        tokentype inspect shard.h5 --prompt-loss-weight 0
        tokentype inspect shard.h5 --rows 0:3 --tokenizer gpt2/ --ids --color always | less -R
        tokentype inspect shards/ --json | jq '.token_types.padding.share'
        tokentype inspect a.h5 b.h5 --prompt-loss-weight 0.1 --loss-normalization row
        tokentype inspect dataset/ --html report.html --tokenizer gpt2/ --prompt-loss-weight 0
    """
    from tokentype_cli.inspect import shard as inspect_shard
    from tokentype_cli.inspect import summary as inspect_summary
    from tokentype_cli.report import rows as row_view

    if tokenizer is None:
        tokenizer = _folder_tokenizer(paths)
    if ledger is not None and html is None:
        raise click.UsageError("--ledger goes with --html (validate takes one for its thresholds)")
    if html is not None:
        if as_json:
            raise click.UsageError("--html writes the report; leave out --json")
        if len(paths) > 1:
            raise click.UsageError("--html reports one shard or folder; give one PATH")
        _write_html(
            paths[0], html, rows_spec, tokenizer, prompt_loss_weight, collapse, ledger, quiet
        )
        return
    if rows_spec is None:
        with progress_bar(None, "tok", "inspect", quiet) as advance:
            summary = inspect_summary.summarize(
                paths,
                prompt_loss_weight,
                progress=advance,
                normalization=loss_normalization,
                allow_external=allow_external,
            )
        if as_json:
            emit_json(summary.as_dict())
        else:
            click.echo(inspect_summary.format_summary(summary), nl=False)
        return
    files = inspect_shard.shard_files(*paths)
    color = color and not as_json
    results = []
    if color:
        # color=True: click would strip the codes again when it thinks stdout is no terminal.
        click.echo(row_view.color_legend(color=True), color=True)
    for file in files:
        total = inspect_shard.row_count(file, allow_external)
        shown = []
        if len(files) > 1 and not as_json:
            click.echo(f"== {printable(str(file))} ==")
        for row, ids, types in inspect_shard.read_rows(file, rows_spec, allow_external):
            if as_json:
                shown.append(inspect_shard.row_as_dict(row, ids, types, tokenizer))
                continue
            click.echo(inspect_shard.format_row_header(row, total, types, prompt_loss_weight))
            click.echo(
                row_view.format_row(
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
        if len(paths) == 1 and not paths[0].is_dir():
            emit_json(results[0])
        else:
            many = {"path": str(paths[0])} if len(paths) == 1 else {}
            emit_json(many | {"inputs": [str(p) for p in paths], "files": results})


def _folder_tokenizer(paths: tuple[Path, ...]) -> LoadedTokenizer | None:
    """The tokenizer/ of the dataset folder a path is (or is in): what built its ids."""
    from tokentype_cli.dataset.layout import TOKENIZER_DIR
    from tokentype_cli.errors import TokentypeError
    from tokentype_cli.tokenizer_loader import load_tokenizer
    from tokentype_cli.validate.findings import is_dataset_folder

    for path in paths:
        folder = path if path.is_dir() else path.parent
        own = folder / TOKENIZER_DIR
        if is_dataset_folder(folder) and (own / "tokenizer.json").is_file():
            try:
                return load_tokenizer(own)
            except TokentypeError:
                return None  # ids are shown without one; validate names what is wrong
    return None


def _write_html(
    path: Path,
    target: Path,
    rows_spec: str | None,
    tokenizer: LoadedTokenizer | None,
    prompt_loss_weight: float | None,
    collapse: int,
    ledger: Path | None,
    quiet: bool,
) -> None:
    from tokentype_cli.inspect.html import ReportOptions, build_report, render_html, write_report

    options = ReportOptions(
        prompt_loss_weight=prompt_loss_weight,
        tokenizer=tokenizer,
        rows_spec=rows_spec,
        ledger=ledger,
        collapse_padding=collapse,
    )
    with progress_bar(None, "tok", "report", quiet) as advance:
        report = build_report(path, options, progress=advance)
    if str(target) == "-":
        click.echo(render_html(report), nl=False)
        return
    size = write_report(report, target)
    message(f"wrote {target} ({size / 1024:,.0f} KiB)", quiet)
