"""`tokentype validate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tokentype_cli.cli.base import (
    allow_external_option,
    cli,
    emit_json,
    json_option,
    max_seq_length_callback,
    plural,
    printable,
    progress_bar,
    prompt_loss_weight_option,
    tokenizer_option,
)
from tokentype_cli.validate.findings import TrainingOptions, is_dataset_folder

if TYPE_CHECKING:
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
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Dataset folders: the run's batch size must be at most max_batch_size_train.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Dataset folders: the run's workers must be at most number_of_training_files.",
)
@click.option(
    "--eval",
    "evaluate",
    is_flag=True,
    help="Dataset folders: the run evaluates, so dev files must exist.",
)
@click.option(
    "--model-vocab-size",
    type=click.IntRange(min=1),
    default=None,
    help="Dataset folders: the model's vocabulary size must be at least vocab_size.",
)
@click.option(
    "--ignore",
    "ignore",
    multiple=True,
    metavar="CHECK,...",
    help="Drop the findings of checks you accept: names as in the report, comma-separated,"
    " repeatable (e.g. --ignore not-gzip,maxshape).",
)
@click.option(
    "--min-learned-per-row",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Error when a row learns fewer than N targets (at --prompt-loss-weight, else 0).",
)
@click.option(
    "--max-padding-share",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    metavar="F",
    help="Error when padding is more than this share (0..1) of a file's tokens.",
)
@click.option(
    "--max-truncated-share",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    metavar="F",
    help="Error when more than this share (0..1) of the input lines were cut or dropped for"
    " length, as the tokenize ledger beside the shard (SHARD.ledger.jsonl) or --ledger says.",
)
@click.option(
    "--max-rows-without-loss",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Error when more than N rows of a file carry no loss (at --prompt-loss-weight, else"
    " 0); up to N are a warning.",
)
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The `tokenize --ledger` file for --max-truncated-share (default: beside each shard).",
)
@allow_external_option
@json_option
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print nothing, not even the report or --json: only the exit code tells (0 no errors,"
    " 1 errors, or warnings with --strict).",
)
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
    batch_size: int | None,
    workers: int | None,
    evaluate: bool,
    model_vocab_size: int | None,
    ignore: tuple[str, ...],
    min_learned_per_row: int | None,
    max_padding_share: float | None,
    max_truncated_share: float | None,
    max_rows_without_loss: int | None,
    ledger: Path | None,
    allow_external: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Check shards for everything that would break or silently skew training.

    PATHS are HDF5 files or folders (searched for *.h5 / *.hdf5). Each finding names a check, its
    severity, an exact count, the first offending row and column, and a fix. Exit 0 with no
    errors, 1 with errors (or any warning with --strict), 2 for a bad invocation.

    A dataset folder (one with metadata.yaml, as `tokenize --dataset` writes it) is checked as
    the trainer will check it: metadata keys and types against the files, file names and counts,
    batch sizes, balance and the sha256 manifest; --batch-size, --workers, --eval and
    --model-vocab-size check it against a training run.

    The --min-/--max- thresholds let a Makefile or CI job stop a build before training: each
    one crossed is an error finding of its own (learned-per-row, padding-share,
    truncated-share, no-loss-row).

    Example:

    \b
        tokentype validate shard.h5
        tokentype validate dataset/ --batch-size 16 --workers 8 --eval --max-seq-length 2048
        tokentype validate shards/ --tokenizer gpt2/ --max-seq-length 2048 --require-types
        tokentype validate shards/ --prompt-loss-weight 0 --json | jq '.files[].findings[].check'
        tokentype validate out.h5 --min-learned-per-row 16 --max-padding-share 0.3 \\
            --max-truncated-share 0.01 --max-rows-without-loss 0
    """
    from tokentype_cli.validate.findings import ValidateOptions, check_names, totals
    from tokentype_cli.validate.findings import as_json as report_json
    from tokentype_cli.validate.paths import validate_paths

    options = ValidateOptions(
        vocab_size=vocab_size,
        tokenizer=tokenizer,
        max_seq_length=max_seq_length,
        require_types=require_types,
        prompt_loss_weight=prompt_loss_weight,
        strict=strict,
        training=TrainingOptions(batch_size, workers, evaluate, model_vocab_size),
        ignore=check_names(ignore),
        min_learned_per_row=min_learned_per_row,
        max_padding_share=max_padding_share,
        max_truncated_share=max_truncated_share,
        max_rows_without_loss=max_rows_without_loss,
        ledger=ledger,
        allow_external=allow_external,
    )
    if options.training.given and not any(is_dataset_folder(path) for path in paths):
        raise click.UsageError(
            "--batch-size, --workers, --eval and --model-vocab-size check a dataset folder"
            " (one with metadata.yaml); none of PATHS is one",
            ctx,
        )
    with progress_bar(None, "tok", "validate", quiet) as advance:
        reports = validate_paths(paths, options, progress=advance)
    if quiet:
        pass
    elif as_json:
        emit_json({"inputs": [str(p) for p in paths]} | report_json(reports))
    else:
        click.echo(_validate_report(reports), nl=False)
    errors, _ = totals(reports)
    if errors:
        ctx.exit(1)


def _validate_report(reports: list) -> str:
    """Each file's findings with their fix, then the totals. A cause found in several files is
    one finding naming the files (a 32-file folder is not 32 copies of one message)."""
    from tokentype_cli.validate.findings import totals

    causes: dict[tuple[str, str], list] = {}
    for report in reports:
        for finding in report.findings:
            causes.setdefault((finding.severity, finding.check), []).append((report, finding))
    shared = {cause for cause, found in causes.items() if len(found) > 1}
    lines: list[str] = []
    for report in reports:
        own = [f for f in report.findings if (f.severity, f.check) not in shared]
        if not report.findings:
            size = f" ({plural(report.rows, 'row')} x {report.seq_len})" if report.seq_len else ""
            lines.append(f"{report.path}: ok{size}")
            continue
        if not own:
            continue  # every finding is listed with the other files of its cause, below
        lines.append(
            f"{report.path}: {plural(report.errors, 'error')}, {plural(report.warnings, 'warning')}"
        )
        prefix = f"{report.path}: "
        for finding in own:
            text = finding.message.removeprefix(prefix)
            lines.append(f"  {finding.severity:<7}  {finding.check}: {text}")
            if finding.fix:
                lines.append(f"           fix: {finding.fix}")
    for cause, found in causes.items():
        if cause not in shared:
            continue
        severity, check = cause
        names = [str(report.path) for report, _ in found]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        first_report, first = found[0]
        text = first.message.removeprefix(f"{first_report.path}: ")
        lines.append(f"{plural(len(found), 'file')}: {shown}")
        lines.append(f"  {severity:<7}  {check}: in each; the first, {first_report.path}: {text}")
        if first.fix:
            lines.append(f"           fix: {first.fix}")
    errors, warnings = totals(reports)
    lines.append(
        f"{plural(len(reports), 'file')}: {plural(errors, 'error')}, {plural(warnings, 'warning')}"
    )
    return "\n".join(printable(line) for line in lines) + "\n"
