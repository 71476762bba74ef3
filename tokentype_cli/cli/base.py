"""The command group, the signal handling and the options and output helpers every command shares."""

from __future__ import annotations

import _thread
import functools
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
from tqdm import tqdm

from tokentype_cli import __version__
from tokentype_cli.errors import OptionError, TokentypeError
from tokentype_cli.schema import Provenance, TokenType, parse_token_type
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


def tokenizer_option(
    required: bool = False, help_extra: str = "", for_encoding: bool = False
) -> Callable:
    """`--tokenizer PATH`, loaded before the command runs.

    `for_encoding`: the command encodes text, so the loader keeps what the fast encoder's
    checks read (see load_tokenizer).
    """
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
            callback=functools.partial(_load_tokenizer_callback, keep=for_encoding),
        )(command)

    return decorate


def _load_tokenizer_callback(
    ctx: click.Context, param: click.Parameter, value: Path | None, keep: bool = False
) -> LoadedTokenizer | None:
    if value is None:
        return None
    try:
        return load_tokenizer(value, keep_definition=keep)
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
        callback=hdf5_output,
        help="Write a new file with FILE's datasets plus the types; FILE is left untouched.",
    )(command)


def hdf5_output(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
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
