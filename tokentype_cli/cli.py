"""Command-line interface: the only module that imports click.

Each command parses options, calls the library, turns library errors into click errors (exit 1)
and formats output. Data goes to stdout; progress and messages go to stderr.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from tqdm import tqdm

from tokentype_cli import __version__
from tokentype_cli.errors import OptionError, TokentypeError
from tokentype_cli.schema import Provenance, TokenType, parse_token_type
from tokentype_cli.tokenizer_loader import LoadedTokenizer, load_tokenizer

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


class TokentypeGroup(click.Group):
    """A group whose commands report library errors as one line and exit 1, never a traceback."""

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
        tokentype inspect shard.h5 --rows 0 --tokenizer gpt2/ | less -R
    """


def main() -> None:
    """Entry point: run the CLI and exit quietly when stdout is closed early (`| head`)."""
    # SIGTERM (make, timeout, schedulers) unwinds like Ctrl-C, so temporary files are removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        cli(prog_name="tokentype")
    except BrokenPipeError:
        # Python would complain when flushing stdout at exit; point it at /dev/null instead.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


# --- shared options and helpers ------------------------------------------------------------------


def json_option(command: Callable) -> Callable:
    """`--json`: machine-readable output on stdout, the same for every listing command."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of text."
    )(command)


def quiet_option(command: Callable) -> Callable:
    """`-q/--quiet`: no progress bar and no summary on stderr."""
    return click.option(
        "-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr (errors still show)."
    )(command)


def tokenizer_option(required: bool = False, help_extra: str = "") -> Callable:
    """`--tokenizer PATH`, loaded before the command runs."""
    text = (
        "tokenizer.json, a folder holding one, or a plain {\"TOKEN\": id} vocabulary JSON."
        + (f" {help_extra}" if help_extra else "")
    )

    def decorate(command: Callable) -> Callable:
        return click.option(
            "--tokenizer",
            "tokenizer",
            type=click.Path(exists=False, path_type=Path),
            required=required,
            default=None,
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
        help="The trainer's --prompt_loss_weight: loss weight of prompt tokens (0.0 = context only)."
        + (f" {help_extra}" if help_extra else ""),
    )


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
        help="Write a new file with FILE's datasets plus the types; FILE is left untouched.",
    )(command)


def provenance(ctx: click.Context, **options) -> Provenance:
    """The command name and the options that produced a dataset, for its attributes."""
    return Provenance(command=f"tokentype {ctx.info_name}", options=options)


def emit_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=_json_default))


def _json_default(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


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
        total=total, unit=unit, unit_scale=unit_scale, desc=description, file=sys.stderr, leave=False
    ) as bar:
        yield bar.update


def handle_errors(function: Callable) -> Callable:
    """Turn library errors raised outside click's invoke (e.g. in generators) into exit 1."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except OptionError as exc:
            raise click.UsageError(str(exc)) from exc
        except TokentypeError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


# === add-types ===================================================================================
# (owner: lead)


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
        provenance=provenance(ctx, source=source, output=output, overwrite=overwrite),
        stdin=stdin,
    )
    shares = ", ".join(
        f"{TokenType(kind).name.lower()} {count}" for kind, count in result.counts.items()
    )
    message(
        f"{result.path}: wrote token_type_ids {result.rows} x {result.seq_len} ({shares})", quiet
    )


# === validate ====================================================================================
# (owner: validate/inspect)


# === inspect =====================================================================================
# (owner: validate/inspect)


# === tokenize ====================================================================================
# (owner: tokenize)


# === assign-types ================================================================================
# (owner: assign-types)
