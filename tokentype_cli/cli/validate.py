"""`tokentype validate`."""

from __future__ import annotations

from pathlib import Path

import click

from tokentype_cli.cli.base import (
    allow_external_option,
    cli,
    emit_json,
    json_option,
    max_seq_length_callback,
    plural,
    progress_bar,
    prompt_loss_weight_option,
    quiet_option,
    tokenizer_option,
)
from tokentype_cli.tokenizer_loader import LoadedTokenizer


@cli.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False, path_type=Path))
@tokenizer_option(
    help_extra="Token ids must be below its vocabulary size; separators its EOS id, padding its"
    " pad (or EOS) id."
)
@click.option(
    "--vocab-size",
    type=click.IntRange(min=1),
    default=None,
    help="Token ids must be below N (overrides the --tokenizer's size).",
)
@click.option(
    "--max-seq-length",
    type=click.IntRange(min=1),
    default=None,
    callback=max_seq_length_callback,
    help="Every file's rows must be this long (files must always agree with each other).",
)
@click.option(
    "--require-types",
    is_flag=True,
    help="A file without token_type_ids is an error (training with --use_token_type_ids fails).",
)
@prompt_loss_weight_option(help_extra="A row in which no target carries loss is an error.")
@click.option("--strict", is_flag=True, help="Count warnings as errors (exit 1 on any finding).")
@allow_external_option
@json_option
@quiet_option
@click.pass_context
def validate_command(
    ctx: click.Context,
    paths: tuple[Path, ...],
    tokenizer: LoadedTokenizer | None,
    vocab_size: int | None,
    max_seq_length: int | None,
    require_types: bool,
    prompt_loss_weight: float | None,
    strict: bool,
    allow_external: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Check shards for everything that would break or silently skew training.

    PATHS are HDF5 files or folders (searched for *.h5 / *.hdf5). Each finding names a check, its
    severity, an exact count, the first offending row and column, and a fix. Exit 0 with no
    errors, 1 with errors (or any warning with --strict), 2 for a bad invocation.

    Example:

    \b
        tokentype validate shard.h5
        tokentype validate shards/ --tokenizer gpt2/ --max-seq-length 2048 --require-types
        tokentype validate shards/ --prompt-loss-weight 0 --json | jq '.files[].findings[].check'
    """
    from tokentype_cli.validate import ValidateOptions, totals, validate_paths
    from tokentype_cli.validate import as_json as report_json

    options = ValidateOptions(
        vocab_size=vocab_size,
        tokenizer=tokenizer,
        max_seq_length=max_seq_length,
        require_types=require_types,
        prompt_loss_weight=prompt_loss_weight,
        strict=strict,
        allow_external=allow_external,
    )
    with progress_bar(None, "tok", "validate", quiet) as advance:
        reports = validate_paths(paths, options, progress=advance)
    if as_json:
        emit_json(report_json(reports))
    else:
        click.echo(_validate_report(reports), nl=False)
    errors, _ = totals(reports)
    if errors:
        ctx.exit(1)


def _validate_report(reports: list) -> str:
    """Each file's findings with their fix, then the totals."""
    from tokentype_cli.validate import totals

    lines: list[str] = []
    for report in reports:
        if not report.findings:
            size = f" ({plural(report.rows, 'row')} x {report.seq_len})" if report.seq_len else ""
            lines.append(f"{report.path}: ok{size}")
            continue
        lines.append(
            f"{report.path}: {plural(report.errors, 'error')}, {plural(report.warnings, 'warning')}"
        )
        prefix = f"{report.path}: "
        for finding in report.findings:
            text = finding.message.removeprefix(prefix)
            lines.append(f"  {finding.severity:<7}  {finding.check}: {text}")
            if finding.fix:
                lines.append(f"           fix: {finding.fix}")
    errors, warnings = totals(reports)
    lines.append(
        f"{plural(len(reports), 'file')}: {plural(errors, 'error')}, {plural(warnings, 'warning')}"
    )
    return "\n".join(lines) + "\n"
