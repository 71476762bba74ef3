"""Command-line interface: the only module that imports click.

Each command parses options, calls the library, turns library errors into click errors (exit 1)
and formats output. Data goes to stdout; progress and messages go to stderr.
"""

from __future__ import annotations

import _thread
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from click.core import ParameterSource
from tqdm import tqdm

from tokentype_cli import __version__
from tokentype_cli.errors import OptionError, TokentypeError
from tokentype_cli.schema import TOKEN_TYPE_NAMES, Provenance, TokenType, parse_token_type
from tokentype_cli.tokenize.options import BOUNDARIES, INPUT_FORMATS, PACKING_CHOICES
from tokentype_cli.tokenizer_loader import LoadedTokenizer, load_tokenizer

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


class TokentypeCommand(click.Command):
    """A command whose conflicting options (OptionError) are usage errors showing its own usage."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OptionError as exc:
            raise click.UsageError(str(exc), ctx) from exc


class TokentypeGroup(click.Group):
    """A group whose commands report library errors as one line and exit 1, never a traceback."""

    command_class = TokentypeCommand

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OptionError as exc:
            raise click.UsageError(str(exc), ctx) from exc
        except TokentypeError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=TokentypeGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="tokentype")
def cli() -> None:
    """Prepare, check and inspect token_type_ids in HDF5 training shards.

    Token types decide what a model learns: 0 prompt (scaled by prompt_loss_weight), 1 completion
    (learned), 2 padding (never learned), 3 separator (end-of-article EOS, always learned).

    Example:

    \b
        tokentype tokenize data.jsonl -o shard.h5 --tokenizer gpt2/
        tokentype validate shard.h5 --require-types
        tokentype inspect shard.h5 --rows 0:3 --tokenizer gpt2/ | head -n 20
    """


def main() -> None:
    """Entry point for the `tokentype` script and `python -m tokentype_cli`."""
    # A closed stdout (`| head`) is handled by click: exit 1 with nothing on stderr.
    exit_on_signals()
    cli(prog_name="tokentype")


def exit_on_signals() -> None:
    """Make SIGTERM (make, timeout, schedulers) unwind like Ctrl-C, so temporary files are removed.

    Python ignores exceptions raised in weakref callbacks and __del__, which h5py runs while
    closing objects: a SIGTERM or Ctrl-C landing there was printed as a traceback and lost, and
    the run went on to finish with exit 0. Such a swallowed interruption is delivered again, from
    outside the callback.
    """
    code = 128 + signal.SIGTERM

    def terminate(signum, frame) -> None:
        raise SystemExit(code)

    default_hook = sys.unraisablehook

    def redeliver(unraisable) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, KeyboardInterrupt):
            signum = signal.SIGINT
        elif isinstance(exc, SystemExit) and exc.code == code:
            signum = signal.SIGTERM
        else:
            default_hook(unraisable)
            return
        # Not from here: a signal raised now would be handled inside this hook and lost too.
        threading.Timer(0.01, _thread.interrupt_main, (signum,)).start()

    signal.signal(signal.SIGTERM, terminate)
    sys.unraisablehook = redeliver


# --- shared options and helpers ------------------------------------------------------------------


def json_option(command: Callable) -> Callable:
    """`--json`: machine-readable output on stdout, the same for every listing command."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of text."
    )(command)


def quiet_option(command: Callable) -> Callable:
    """`-q/--quiet`: no progress bar and no summary on stderr."""
    return click.option(
        "-q",
        "--quiet",
        is_flag=True,
        help="No progress bar or summary on stderr (errors still show).",
    )(command)


def tokenizer_option(required: bool = False, help_extra: str = "") -> Callable:
    """`--tokenizer PATH`, loaded before the command runs."""
    text = 'tokenizer.json, a folder holding one, or a plain {"TOKEN": id} vocabulary JSON.' + (
        f" {help_extra}" if help_extra else ""
    )

    def decorate(command: Callable) -> Callable:
        # No explicit default: click 8.5 skips its required check when one is given, even None.
        return click.option(
            "--tokenizer",
            "tokenizer",
            type=click.Path(exists=False, path_type=Path),
            required=required,
            help=text,
            callback=_load_tokenizer_callback,
        )(command)

    return decorate


def _load_tokenizer_callback(
    ctx: click.Context, param: click.Parameter, value: Path | None
) -> LoadedTokenizer | None:
    if value is None:
        return None
    try:
        return load_tokenizer(value)
    except TokentypeError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


def prompt_loss_weight_option(help_extra: str = "") -> Callable:
    """`--prompt-loss-weight W`: the trainer's weight for prompt tokens (type 0)."""
    return click.option(
        "--prompt-loss-weight",
        type=click.FloatRange(min=0.0),
        default=None,
        callback=_finite_weight,
        help="The trainer's --prompt_loss_weight: loss weight of prompt tokens (0.0 = context only)."
        + (f" {help_extra}" if help_extra else ""),
    )


def _finite_weight(ctx: click.Context, param: click.Parameter, value: float | None):
    # FloatRange lets nan and inf through; they would print NaN, which is not JSON.
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(
            f"{value} is not a finite number; use e.g. 0, 0.1 or 1", ctx, param
        )
    return None if value is None else value + 0.0  # -0.0 -> 0.0


class TokenTypeParam(click.ParamType):
    """A token type by name (prompt, completion, padding, separator) or number (0..3)."""

    name = "TYPE"

    def convert(self, value, param, ctx) -> TokenType:
        if isinstance(value, TokenType):
            return value
        try:
            return parse_token_type(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


TOKEN_TYPE = TokenTypeParam()


def output_options(command: Callable) -> Callable:
    """`-o/--output` and `--overwrite` for commands that add a dataset to a shard."""
    command = click.option(
        "--overwrite",
        is_flag=True,
        help="Replace an existing token_type_ids dataset instead of failing.",
    )(command)
    return click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        callback=_hdf5_output,
        help="Write a new file with FILE's datasets plus the types; FILE is left untouched.",
    )(command)


def _hdf5_output(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    # click.Path would happily take "-" and the rename at the end would create a file named "-".
    if value is not None and str(value) == "-":
        raise click.BadParameter(
            "an HDF5 file cannot go to stdout (it needs a seekable file); name a file", ctx, param
        )
    return value


def provenance(ctx: click.Context, **options) -> Provenance:
    """The command name and the options that produced a dataset, for its attributes.

    Give what decides the data, not where it is written: a copy renamed or built under another
    name must stay byte-identical.
    """
    return Provenance(command=f"tokentype {ctx.info_name}", options=options)


def emit_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=_json_default))


def _json_default(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def plural(count: int, noun: str) -> str:
    """`1 row`, `2,048 rows`."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def message(text: str, quiet: bool = False) -> None:
    """A human message on stderr."""
    if not quiet:
        click.echo(text, err=True)


def use_color(stream=None) -> bool:
    """Colour only on a terminal and when NO_COLOR is unset (https://no-color.org)."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR")


@contextmanager
def progress_bar(
    total: int | None, unit: str, description: str, quiet: bool, unit_scale: bool = True
) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(n)` callback drawing a tqdm bar on stderr, or doing nothing.

    No bar with --quiet or when stderr is not a terminal (logs, CI, pipes).
    """
    if quiet or not sys.stderr.isatty():
        yield lambda n: None
        return
    with tqdm(
        total=total,
        unit=unit,
        unit_scale=unit_scale,
        desc=description,
        file=sys.stderr,
        leave=False,
    ) as bar:
        yield bar.update


# Each command imports its library module when it runs, so `--help` and every other command
# start without loading what they do not use (the tokenizer stack, the rule engine). The option
# choices imported at the top come from light modules, which stay the one place spelling them.

# === add-types ===================================================================================


@cli.command("add-types")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("source", type=str)
@output_options
@quiet_option
@click.pass_context
def add_types_command(
    ctx: click.Context, file: Path, source: str, output: Path | None, overwrite: bool, quiet: bool
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
    """
    from tokentype_cli.add_types import add_types

    stdin = sys.stdin if source == "-" else None
    result = add_types(
        file,
        source,
        output=output,
        overwrite=overwrite,
        provenance=provenance(ctx, source=source, overwrite=overwrite),
        stdin=stdin,
    )
    shares = ", ".join(
        f"{TOKEN_TYPE_NAMES[TokenType(kind)]} {count:,}" for kind, count in result.counts.items()
    )
    message(
        f"{result.path}: wrote token_type_ids {result.rows} x {result.seq_len} ({shares})", quiet
    )


# === validate ====================================================================================


@cli.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
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
    help="Every file's rows must be this long (files must always agree with each other).",
)
@click.option(
    "--require-types",
    is_flag=True,
    help="A file without token_type_ids is an error (training with --use_token_type_ids fails).",
)
@prompt_loss_weight_option(help_extra="A row in which no target carries loss is an error.")
@click.option("--strict", is_flag=True, help="Count warnings as errors (exit 1 on any finding).")
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


# === inspect =====================================================================================


@cli.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
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
@json_option
@quiet_option
def inspect_command(
    path: Path,
    rows_spec: str | None,
    tokenizer: LoadedTokenizer | None,
    show_ids: bool,
    prompt_loss_weight: float | None,
    collapse: int,
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
            summary = inspect_shard.summarize(path, prompt_loss_weight, progress=advance)
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
        total = inspect_shard.row_count(file)
        shown = []
        if len(files) > 1 and not as_json:
            click.echo(f"== {file} ==")
        for row, ids, types in inspect_shard.read_rows(file, rows_spec):
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


# === tokenize ====================================================================================


@cli.command("tokenize")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_hdf5_output,
    help="HDF5 shard to write (written under a temporary name, renamed when complete).",
)
@tokenizer_option(required=True)
@click.option(
    "--input-format",
    type=click.Choice(INPUT_FORMATS),
    default=None,
    help="Format of every input. Default: by extension (.jsonl/.json, .txt); jsonl for -.",
)
@click.option(
    "--max-seq-length",
    "--max_seq_length",
    "max_seq_length",
    type=click.IntRange(min=1),
    default=2048,
    help="Tokens per row.",
)
@click.option(
    "--packing",
    "--input_packing_config",
    "packing",
    type=click.Choice(PACKING_CHOICES),
    default="full",
    help="full: fill rows, split articles; greedy::*: whole articles per row; single::*: one"
    " article per row. drop/truncate_left/truncate_right: what happens to an article longer"
    " than a row.",
)
@click.option(
    "--packing-boundary",
    "--packing_boundary",
    "packing_boundary",
    type=click.Choice(BOUNDARIES),
    default="jsonl",
    help="Pack a whole JSONL line as one article, or each prompt/completion pair (separators"
    " still follow --attention-boundary and line ends, as in the reference).",
)
@click.option(
    "--attention-boundary",
    "--attention_boundary",
    "attention_boundary",
    type=click.Choice(BOUNDARIES),
    default="jsonl",
    help="Where separators (type 3) go: the end of each line's article, or also every pair's eos.",
)
@click.option(
    "--prompt-key", "--prompt_keyword", "prompt_key", default="prompt", help="Prompt field."
)
@click.option(
    "--completion-key",
    "--completion_keyword",
    "completion_key",
    default="completion",
    help="Completion field.",
)
@click.option(
    "--no-space-separator",
    "--disable_space_separator",
    "no_space_separator",
    is_flag=True,
    help="Keep prompt and completion text as is (default: strip trailing spaces from the"
    " prompt, start the completion with exactly one space).",
)
@click.option(
    "--keep-prompt-only-sequences",
    "--keep_prompt_only_sequences",
    "keep_prompt_only",
    is_flag=True,
    help="Keep pairs with an empty completion and rows with no completion token.",
)
@click.option(
    "--prompt-prefix",
    "--prompt_prefix",
    "prompt_prefix",
    default=None,
    help="Text put before a non-empty prompt.",
)
@click.option(
    "--prompt-postfix",
    "--prompt_postfix",
    "prompt_postfix",
    default=None,
    help="Text put after a non-empty prompt.",
)
@click.option(
    "--eos-token",
    default=None,
    help="End-of-sequence token (text, or a number for an id). Default: the tokenizer's.",
)
@click.option(
    "--pad-token",
    default=None,
    help="Padding token (text or id). Default: the tokenizer's pad token, else the eos in use.",
)
@click.option(
    "--no-types",
    is_flag=True,
    help="Write input_ids only (type them later with assign-types or add-types).",
)
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write one JSON line per input line: the rows, offsets and token counts it went to, or"
    " why not (its keys are listed above).",
)
@click.option(
    "--skip-bad-lines",
    "rejects",
    metavar="REJECTS",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write unusable lines to REJECTS and go on, instead of failing on the first one.",
)
@json_option
@quiet_option
@click.pass_context
def tokenize_command(
    ctx: click.Context,
    inputs: tuple[str, ...],
    output: Path,
    tokenizer: LoadedTokenizer,
    input_format: str | None,
    max_seq_length: int,
    packing: str,
    packing_boundary: str,
    attention_boundary: str,
    prompt_key: str,
    completion_key: str,
    no_space_separator: bool,
    keep_prompt_only: bool,
    prompt_prefix: str | None,
    prompt_postfix: str | None,
    eos_token: str | None,
    pad_token: str | None,
    no_types: bool,
    ledger: Path | None,
    rejects: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Tokenize JSONL or TXT into packed rows with token_type_ids (like generative_data_prep).

    JSONL lines are {"prompt": ..., "completion": ...} or a list of such objects; TXT lines are
    completion-only articles. Prompt tokens get type 0, completion tokens 1, padding 2, and the
    eos ending each article 3. Use - to read stdin.

    A summary goes to stderr; --json prints the metrics on stdout instead: lines, lines_rejected,
    pairs, pairs_skipped_prompt_only, articles, input_tokens, rows, max_seq_length,
    output_tokens, tokens_by_type, tokens_truncated_left, tokens_truncated_right,
    tokens_dropped_too_long (articles longer than a row, with ::drop),
    tokens_dropped_prompt_only_rows, rows_dropped_prompt_only and packing_efficiency (the
    non-padding share of the rows).

    --ledger writes one JSON object per input line, all with the same keys: input, line, status
    (packed, truncated, partly_dropped, dropped or rejected), reason (for dropped: too_long,
    prompt_only, prompt_only_row or empty; for rejected: the error; else null), tokens, rows (a
    list of [row, offset, count] pieces in the output), cut_left, cut_right, dropped_too_long,
    dropped_prompt_only_row and pairs_skipped_prompt_only. Every token is accounted for: tokens
    is the sum of the counts in rows, cut_left, cut_right, dropped_too_long and
    dropped_prompt_only_row.

    Example:

    \b
        tokentype tokenize data.jsonl -o shard.h5 --tokenizer gpt2/ --max-seq-length 1024
        tokentype tokenize chat.jsonl -o sft.h5 --tokenizer gpt2/ --packing single::drop
        cat a.jsonl b.jsonl | tokentype tokenize - -o out.h5 --tokenizer gpt2/ --json | jq .rows
    """
    from tokentype_cli.tokenize.options import TokenizeOptions
    from tokentype_cli.tokenize.pipeline import tokenize_files
    from tokentype_cli.tokenize.read import input_size

    options = TokenizeOptions(
        seq_len=max_seq_length,
        packing=packing,
        packing_boundary=packing_boundary,
        attention_boundary=attention_boundary,
        prompt_key=prompt_key,
        completion_key=completion_key,
        space_separator=not no_space_separator,
        keep_prompt_only=keep_prompt_only,
        prompt_prefix=prompt_prefix,
        prompt_postfix=prompt_postfix,
        input_format=input_format,
        write_types=not no_types,
        eos_token=eos_token,
        pad_token=pad_token,
    )
    paths = list(inputs)
    record = {"inputs": paths, "tokenizer": str(tokenizer.path), **vars(options)}
    with progress_bar(input_size(paths), "B", "tokenize", quiet) as advance:
        metrics = tokenize_files(
            paths,
            output,
            tokenizer,
            options,
            provenance=provenance(ctx, **record),
            ledger_path=ledger,
            rejects_path=rejects,
            advance=advance,
        )
    summary = metrics.as_dict()
    if as_json:
        emit_json(summary)
    elif not quiet:
        message(_tokenize_summary(summary, output, rejects))


def _tokenize_summary(m: dict, output: Path, rejects: Path | None) -> str:
    types = m["tokens_by_type"]
    lines = [
        f"{output}: {plural(m['rows'], 'row')} x {m['max_seq_length']:,} tokens"
        f" from {plural(m['lines'], 'line')}"
        f" ({plural(m['articles'], 'article')}, {plural(m['pairs'], 'pair')})",
        "  tokens: " + ", ".join(f"{name} {count:,}" for name, count in types.items()),
        f"  packing efficiency {m['packing_efficiency']:.1%} (non-padding share of the rows)",
    ]
    losses = [
        ("truncated from the left", m["tokens_truncated_left"]),
        ("truncated from the right", m["tokens_truncated_right"]),
        ("dropped: article longer than a row", m["tokens_dropped_too_long"]),
        (
            f"dropped: {plural(m['rows_dropped_prompt_only'], 'row')} without completion tokens",
            m["tokens_dropped_prompt_only_rows"],
        ),
    ]
    for what, count in losses:
        if count:
            lines.append(f"  {plural(count, 'token')} {what}")
    if m["pairs_skipped_prompt_only"]:
        lines.append(
            f"  {plural(m['pairs_skipped_prompt_only'], 'pair')} with an empty completion skipped"
            " (--keep-prompt-only-sequences keeps them)"
        )
    if m["lines_rejected"]:
        lines.append(f"  {plural(m['lines_rejected'], 'bad line')} written to {rejects}")
    return "\n".join(lines)


# === assign-types ================================================================================


@cli.command("assign-types")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="TOML or JSON rules file (- for stdin) with sep, pad, default, from_existing and a"
    " list of rules; applied before any --rule.",
)
@click.option(
    "--rule",
    "rule_specs",
    multiple=True,
    metavar="KIND:ARGS=TYPE",
    help="A rule, repeatable, applied in order after the file's: span:A:B, token:T..., until:P...,"
    " through:P..., between:S... .. E...; TYPE is prompt, completion, padding, separator or 0..3."
    ' Bare integers are ids; quote a token ("..", "5", "a b") to mean the vocabulary string.',
)
@click.option(
    "--sep",
    "seps",
    multiple=True,
    metavar="TOKEN",
    help="Separator token (type 3, ends an article), repeatable. Default: the rules file's sep,"
    " else the --tokenizer's eos, else none.",
)
@click.option(
    "--pad",
    metavar="TOKEN",
    default=None,
    help="Padding token: its run at the end of a row is type 2. Default: the rules file's pad,"
    " else the --tokenizer's pad token, else its eos, else none.",
)
@click.option(
    "--no-sep",
    is_flag=True,
    help="No separators, not even the --tokenizer's eos: each row is one article.",
)
@click.option(
    "--no-pad",
    is_flag=True,
    help="No padding, not even the --tokenizer's pad or eos: trailing runs keep their types.",
)
@click.option(
    "--default",
    "default_type",
    type=TOKEN_TYPE,
    default=None,
    help="Type of every token no rule sets (other than separators and padding)."
    "  [default: completion]",
)
@click.option(
    "--from-existing",
    is_flag=True,
    help="Start from FILE's token_type_ids (their separators and padding stay) instead of"
    " --sep/--pad/--default; replaces them.",
)
@tokenizer_option(
    help_extra="Lets tokens be written as text; --sep defaults to its eos, --pad to its pad."
)
@output_options
@click.option(
    "--require-match",
    is_flag=True,
    help="Fail (exit 1, nothing written) if an until/through/between rule finds nothing in an"
    " article; the message names the first such row.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Compute and report, print the first rows by type on stdout, write nothing.",
)
@click.option(
    "--show",
    "show_rows",
    type=click.IntRange(min=0),
    default=3,
    help="Rows --dry-run prints.",
)
@json_option
@quiet_option
@click.pass_context
def assign_types_command(
    ctx: click.Context,
    file: Path,
    rules_file: str | None,
    rule_specs: tuple[str, ...],
    seps: tuple[str, ...],
    pad: str | None,
    no_sep: bool,
    no_pad: bool,
    default_type: TokenType | None,
    from_existing: bool,
    tokenizer: LoadedTokenizer | None,
    output: Path | None,
    overwrite: bool,
    require_match: bool,
    dry_run: bool,
    show_rows: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Set token_type_ids of an already-tokenized shard by rules.

    Separators (--sep) and end-of-row padding (--pad) come first; every other token starts as
    --default. A row splits into articles at separators; each article's body (without its
    separator and padding) then goes through the rules in order, a later rule overriding an
    earlier one. Separators and padding are never changed. Rules (KIND:ARGS=TYPE):

    \b
      span:A:B          body positions A..B-1, a Python slice (span::-1, span:3:)
      token:T...        every occurrence of these tokens
      until:P...        the tokens before the first occurrence of pattern P
      through:P...      the same, including the occurrence
      between:S .. E    from each S through the next E (or the end of the body)

    FILE is replaced atomically (an error or interruption leaves it as it was), or -o writes a
    new file. What every rule matched, and the tokens per type before and after, go to stderr
    (stdout with --json).

    Example:

    \b
        tokentype assign-types shard.h5 --tokenizer codons.json --rule 'until:ATG=prompt'
        tokentype assign-types shard.h5 --rules rules.toml -o typed.h5 --require-match
        tokentype assign-types chat.h5 --tokenizer tok/ --overwrite \\
            --rule 'between:<|user|> .. <|assistant|>=prompt' --dry-run | less -R
        tokentype assign-types shard.h5 --sep 2 --rule 'span:2:4=0' --json | jq '.rules'
    """
    from tokentype_cli import inspect_shard
    from tokentype_cli.assign_types import assign_types
    from tokentype_cli.errors import RuleError
    from tokentype_cli.rules import (
        RulesConfig,
        build_structure,
        load_rules_file,
        parse_rule_spec,
        parse_token_word,
    )

    if not dry_run and ctx.get_parameter_source("show_rows") is not ParameterSource.DEFAULT:
        raise click.UsageError("--show only applies with --dry-run; add --dry-run", ctx)
    config = RulesConfig() if rules_file is None else load_rules_file(rules_file, tokenizer)
    try:
        rules = list(config.rules)
        for number, spec in enumerate(rule_specs, 1):
            rules.append(parse_rule_spec(spec, f"--rule {number}", tokenizer))
        sep_ids = [parse_token_word(s, tokenizer, f"--sep {s!r}") for s in seps]
        pad_id = None if pad is None else parse_token_word(pad, tokenizer, f"--pad {pad!r}")
    except RuleError as exc:
        raise click.UsageError(str(exc), ctx) from exc
    structure = build_structure(
        config,
        sep=sep_ids or None,
        pad=pad_id,
        default=default_type,
        from_existing=from_existing,
        tokenizer=tokenizer,
        no_sep=no_sep,
        no_pad=no_pad,
    )
    record = {
        "rules_file": rules_file,
        "rules": [rule.describe() for rule in rules],
        "sep": list(structure.sep),
        "pad": structure.pad,
        "default": int(structure.default),
        "from_existing": structure.from_existing,
        "tokenizer": None if tokenizer is None else str(tokenizer.path),
    }
    with progress_bar(None, "rows", "assign-types", quiet) as advance:
        report = assign_types(
            file,
            structure,
            rules,
            output=output,
            overwrite=overwrite,
            require_match=require_match,
            dry_run=dry_run,
            preview_rows=show_rows if dry_run else 0,
            provenance=provenance(ctx, **record),
            progress=advance,
        )
    preview = []
    if report.preview_ids is not None:
        preview = list(enumerate(zip(report.preview_ids, report.preview_types, strict=True)))
    if as_json:
        data = report.as_dict()
        if dry_run:
            data["preview"] = [
                inspect_shard.row_as_dict(row, ids, types, tokenizer)
                for row, (ids, types) in preview
            ]
        emit_json(data)
        return
    color = use_color()
    for row, (ids, types) in preview:
        click.echo(inspect_shard.format_row_header(row, report.rows, types))
        click.echo(
            inspect_shard.format_row(ids, types, tokenizer=tokenizer, color=color),
            color=color or None,
        )
    message(_assign_types_summary(report), quiet)


def _assign_types_summary(report) -> str:
    """Structure, what each rule did, tokens per type before and after."""

    if not report.written:
        outcome = "dry run, nothing written"
    elif report.output is None or report.output == report.path:
        outcome = f"written to {report.path} in place"
    else:
        outcome = f"written to {report.output}"
    structure = report.structure
    if structure.from_existing:
        start = "structure: separators and padding of the existing token_type_ids"
    else:
        sep = " ".join(str(t) for t in structure.sep) or "none"
        pad = "none" if structure.pad is None else str(structure.pad)
        start = f"structure: sep {sep}, pad {pad}, default {TOKEN_TYPE_NAMES[structure.default]}"
    lines = [
        f"{report.path}: {plural(report.rows, 'row')} x {plural(report.seq_len, 'token')},"
        f" {plural(report.articles, 'article')} ({outcome})",
        f"  {start}",
    ]
    if not report.rules:
        lines.append("  no rules: types come from the structure alone")
    width = max((len(r.rule.describe()) for r in report.rules), default=0)
    for number, rule_report in enumerate(report.rules, 1):
        not_matched = report.articles - rule_report.matched
        line = (
            f"  rule {number}  {rule_report.rule.describe():<{width}}  matched"
            f" {rule_report.matched:,} of {plural(report.articles, 'article')}, {not_matched:,} not;"
            f" set {plural(rule_report.tokens_set, 'token')}"
        )
        if not_matched and rule_report.first_unmatched_row is not None:
            line += f" (first unmatched row {rule_report.first_unmatched_row})"
        lines.append(line)
    names = list(TOKEN_TYPE_NAMES.values())
    columns = [
        max(len(name), len(str(report.before[i])), len(str(report.after[i])))
        for i, name in enumerate(names)
    ]
    lines.append("  tokens  " + "  ".join(f"{n:>{w}}" for n, w in zip(names, columns, strict=True)))
    for label, counts in (("before", report.before), ("after ", report.after)):
        values = "  ".join(f"{int(c):>{w}}" for c, w in zip(counts, columns, strict=True))
        lines.append(f"  {label}  {values}")
    return "\n".join(lines)
