"""The command group, the signal handling and the options and output helpers every command shares."""

from __future__ import annotations

import _thread
import codecs
import contextlib
import functools
import io
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tokentype_cli import __version__, interrupts
from tokentype_cli.errors import OptionError, TokentypeError
from tokentype_cli.schema.names import MAX_SEQ_LENGTH, Provenance, TokenType, parse_token_type

if TYPE_CHECKING:
    from tokentype_cli.tokenizer_loader import LoadedTokenizer

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


def gdp_spelling(name: str) -> bool:
    """generative_data_prep's underscore spellings (`--max_seq_length`): accepted as aliases so
    its command lines run, but kept out of --help and tab completion."""
    return name.startswith("--") and "_" in name


@contextmanager
def shown_names(params: Sequence[click.Parameter], keep: Callable[[str], bool]) -> Iterator[None]:
    """Let help show only the option names `keep` accepts (an option keeps at least one)."""
    saved = []
    for param in params:
        if isinstance(param, click.Option):
            kept = [name for name in param.opts if keep(name)]
            if kept and kept != param.opts:
                saved.append((param, param.opts))
                param.opts = kept
    try:
        yield
    finally:
        for param, opts in saved:
            param.opts = opts


class TokentypeCommand(click.Command):
    """A command whose conflicting options (OptionError) are usage errors showing its own usage,
    and whose GDP spellings are accepted but not shown."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OptionError as exc:
            raise click.UsageError(str(exc), ctx) from exc

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with shown_names(self.get_params(ctx), lambda name: not gdp_spelling(name)):
            super().format_options(ctx, formatter)

    def shell_complete(self, ctx: click.Context, incomplete: str):
        items = super().shell_complete(ctx, incomplete)
        return [item for item in items if not gdp_spelling(str(item.value))]


class TokentypeGroup(click.Group):
    """A group whose commands report library errors as one line and exit 1, never a traceback."""

    command_class = TokentypeCommand

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except interrupts.Interrupted as exc:
            click.echo(_aborted(exc.signum), err=True)
            raise
        except Exception as exc:
            signum = interrupts.received()
            if signum is None:
                said = _one_line(exc, ctx)
                if said is exc:
                    raise
                raise said from exc
            # The handler's Interrupted, turned into another error by C code it was raised in
            # (h5py's type-conversion callbacks make it a TypeError): interrupted all the same.
            click.echo(_aborted(signum), err=True)
            raise interrupts.Interrupted(signum) from exc


def _aborted(signum: int) -> str:
    name = signal.Signals(signum).name
    return f"Aborted: {name} received; outputs were left as they were."


def _one_line(exc: Exception, ctx: click.Context) -> Exception:
    """What a command's error becomes: a usage error, one line, or click's own (which names a
    path as given); anything else as it is."""
    if isinstance(exc, OptionError):
        return click.UsageError(printable(str(exc)), ctx)
    if isinstance(exc, TokentypeError):
        return click.ClickException(printable(str(exc)))
    if isinstance(exc, click.ClickException):
        object.__setattr__(exc, "message", printable(exc.message))  # Final in the stubs
    return exc


@click.group(cls=TokentypeGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="tokentype")
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
    usable_standard_streams()
    exit_on_signals()
    try:
        cli(prog_name="tokentype")
    except SystemExit as exc:
        # However the run ended (click turns a KeyboardInterrupt into exit 1), a signal received
        # decides the status: 130 for Ctrl-C, 143 for SIGTERM.
        signum = interrupts.received()
        if signum is not None:
            raise SystemExit(128 + signum) from None
        _end_without_teardown_if_hdf5_is_stuck(exc.code)
        raise


def _end_without_teardown_if_hdf5_is_stuck(code: object) -> None:
    """After a full disk, HDF5 holds a file it cannot flush and would crash the interpreter's
    teardown; the message is out and the temporaries are gone, so end here."""
    # No shard writer was ever loaded, so none can be stuck (and start-up stays light).
    writes = sys.modules.get("tokentype_cli.schema.write")
    if writes is not None and writes.abandoned_files():
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code if isinstance(code, int) else 1)


def usable_standard_streams() -> None:
    """Keep running, quietly, when stdin, stdout or stderr was closed (`2>&-`), and print file
    names that are not UTF-8 as the bytes they are.

    With descriptor 2 closed, the next file opened would get it, and whatever C code writes to
    stderr would land in that file; and Python sets `sys.stderr` to None, on which every message
    failed and the command exited 1 having printed and written nothing.
    """
    for descriptor in (0, 1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != descriptor:
                os.dup2(null, descriptor)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (lives with the process)
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (lives with the process)
    codecs.register_error("tokentype", _own_bytes_else_escaped)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            with contextlib.suppress(ValueError):
                stream.reconfigure(errors="tokentype")


def _own_bytes_else_escaped(error: UnicodeError) -> tuple[str | bytes, int]:
    """A file name that is not UTF-8 arrives as surrogate escapes: write its own bytes back (as
    `ls` does). Any other unencodable text is escaped rather than fail the command."""
    try:
        return codecs.lookup_error("surrogateescape")(error)
    except UnicodeEncodeError:
        return codecs.lookup_error("backslashreplace")(error)


def exit_on_signals() -> None:
    """Make SIGINT and SIGTERM stop a run for certain, with temporaries removed.

    The handler records the signal (tokentype_cli.interrupts) and raises `Interrupted`, a
    SystemExit of 128 + the signal's number. Python ignores exceptions raised in weakref callbacks
    and __del__, which h5py runs while closing objects, and numpy's attribute lookups: the first
    raise can be lost, so every streaming loop and every rename into place checks the flag too,
    and a swallowed raise is delivered again from outside the callback. Further signals while
    the run unwinds are not raised again, so clean-up is not cut short.
    """
    in_hook = threading.Event()
    wake = threading.Event()

    def stop(signum, frame) -> None:
        first = interrupts.received() is None
        deciding = interrupts.note(signum)
        if in_hook.is_set():
            return  # raised here it would be lost too; the redelivery is already asked for
        if first or interrupts.redelivery_wanted():
            interrupts.raised()
            raise interrupts.Interrupted(deciding)

    default_hook = sys.unraisablehook

    def redeliver(unraisable) -> None:
        if not isinstance(unraisable.exc_value, interrupts.Interrupted):
            default_hook(unraisable)
            return
        in_hook.set()
        try:
            interrupts.want_redelivery()
            wake.set()
        finally:
            in_hook.clear()

    def redeliverer() -> None:
        # Started once, before any signal: starting a thread inside the hook waits on a lock,
        # where the handler could run and its exception escape the hook.
        while True:
            wake.wait()
            wake.clear()
            time.sleep(0.01)
            signum = interrupts.received()
            if interrupts.redelivery_wanted() and signum is not None:
                _thread.interrupt_main(signal.Signals(signum))

    threading.Thread(target=redeliverer, name="redeliver-signals", daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
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
    text = (
        'tokenizer.json, a folder holding one, a plain {"TOKEN": id} vocabulary JSON, or a'
        " Hugging Face model id (ORG/NAME: from the local cache, else downloaded unless"
        " HF_HUB_OFFLINE is set)." + (f" {help_extra}" if help_extra else "")
    )

    def decorate(command: Callable) -> Callable:
        # No explicit default: click 8.5 skips its required check when one is given, even None.
        return click.option(
            "--tokenizer",
            "--pretrained_tokenizer",
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
    from tokentype_cli.tokenizer_loader import load_tokenizer  # numpy, tokenizers: on use

    try:
        return load_tokenizer(
            str(value), keep_definition=keep, special_tokens=ctx.meta.get(SPECIAL_TOKENS_KEY)
        )
    except TokentypeError as exc:
        raise click.BadParameter(str(exc), ctx, param, param_hint="'--tokenizer'") from exc


SPECIAL_TOKENS_KEY = "tokentype.special_tokens"


def special_tokens_option(command: Callable) -> Callable:
    """`--special-tokens JSON`: read before --tokenizer (eager), which adds them on loading."""

    def remember(ctx: click.Context, param: click.Parameter, value: str | None):
        if value is None:
            return None
        from tokentype_cli.tokenizer_loader import parse_special_tokens

        try:
            ctx.meta[SPECIAL_TOKENS_KEY] = parse_special_tokens(value)
        except TokentypeError as exc:
            raise click.BadParameter(str(exc), ctx, param) from exc
        return ctx.meta[SPECIAL_TOKENS_KEY]

    return click.option(
        "--special-tokens",
        "--special_tokens_dict",
        "special_tokens",
        metavar="JSON",
        default=None,
        is_eager=True,
        expose_value=False,
        callback=remember,
        help="Add special tokens to the tokenizer before tokenizing, as transformers'"
        """ add_special_tokens does, e.g. '{"sep_token": "[SEP]"}'; a --dataset's tokenizer/"""
        " carries them.",
    )(command)


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
        help="Replace an existing token_type_ids dataset (and an existing -o file) instead of"
        " failing.",
    )(command)
    return click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        callback=hdf5_output,
        help="Write a new file with FILE's datasets plus the types; FILE is left untouched.",
    )(command)


def allow_external_option(command: Callable) -> Callable:
    """`--allow-external`: follow external links and virtual datasets into other files."""
    return click.option(
        "--allow-external",
        is_flag=True,
        help="Follow external links and virtual datasets that read other files (refused by"
        " default: a shard should hold its own data). A rewritten file gets a copy of that data.",
    )(command)


def max_seq_length_callback(
    ctx: click.Context, param: click.Parameter, value: int | None
) -> int | None:
    """Bound --max-seq-length: one row must fit a bounded block (10^9 asked for 15.6 GB)."""
    if value is not None and value > MAX_SEQ_LENGTH:
        raise click.BadParameter(
            f"{value:,} tokens per row is more than the {MAX_SEQ_LENGTH:,} tokentype supports;"
            " use a shorter length",
            ctx,
            param,
        )
    return value


def hdf5_output(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    # click.Path would happily take "-" and the rename at the end would create a file named "-".
    if value is not None and str(value) == "-":
        raise click.BadParameter(
            "an HDF5 file cannot go to stdout (it needs a seekable file); name a file", ctx, param
        )
    return value


# The signature HDF5 writes at the start of a file (tokentype writes no user block).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_existing_output(
    ctx: click.Context,
    output: Path | None,
    overwrite: bool,
    inputs: tuple[Path | str, ...] = (),
    flag: str = "-o",
    overwrite_flag: str = "--overwrite",
) -> None:
    """An existing output file is replaced only with --overwrite, and only an HDF5 one (a typo
    such as `-o notes.txt` must not destroy notes). An output that is one of the inputs is
    left to the command, which names that mistake itself."""
    if output is None or not output.exists():
        return
    for given in inputs:
        with contextlib.suppress(OSError):
            if str(given) != "-" and os.path.samefile(output, given):
                return
    if output.is_dir():
        raise click.UsageError(f"{flag} {output} is a folder; name a file", ctx)
    if not output.is_file():
        return  # a FIFO or a device: reading it would block; the writer refuses it by name
    try:
        with open(output, "rb") as handle:
            head = handle.read(len(HDF5_SIGNATURE))
    except OSError:
        head = b""
    if head != HDF5_SIGNATURE:
        raise click.UsageError(
            f"{flag} {output} exists and is not an HDF5 file; it is never replaced: name another",
            ctx,
        )
    if not overwrite:
        raise click.UsageError(
            f"{flag} {output} already exists; pass {overwrite_flag} to replace it or name another",
            ctx,
        )


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


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 row`, `2,048 rows`; `nouns` for a plural that is not the noun and an s."""
    if count == 1:
        return f"{count:,} {noun}"
    return f"{count:,} {nouns or noun + 's'}"


def message(text: str, quiet: bool = False) -> None:
    """A human message on stderr (its own line breaks kept, a name's escaped)."""
    if not quiet:
        click.echo("\n".join(printable(line) for line in text.split("\n")), err=True)


# Line breaks and terminal controls (C0, DEL, C1, the Unicode line and paragraph separators):
# a file name holding one would break a one-line message or drive the terminal.
_CONTROLS = {
    code: (repr(chr(code))[1:-1] if code < 0x100 else f"\\u{code:04x}")
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}


def printable(text: str) -> str:
    """`text` with control characters written as escapes (`\\n`, `\\x1b`): one line, inert."""
    return text.translate(_CONTROLS)


COLOR_CHOICES = ("auto", "always", "never")


def color_option(command: Callable) -> Callable:
    """`--color auto|always|never`, resolved to a bool: the same for every command that colours."""
    return click.option(
        "--color",
        "color",
        type=click.Choice(COLOR_CHOICES),
        default="auto",
        callback=lambda ctx, param, value: use_color(choice=value),
        help="Colour tokens by type: auto colours a terminal unless NO_COLOR is set (FORCE_COLOR"
        " colours a pipe); always suits `| less -R`; --json is never coloured.",
    )(command)


def use_color(stream=None, choice: str = "auto") -> bool:
    """Whether to colour `stream` (stdout by default).

    The flag is the most specific choice, so it wins; then NO_COLOR (https://no-color.org), then
    FORCE_COLOR (https://force-color.org; "0" and "false" are read as unset, as Node does), then
    whether the stream is a terminal.
    """
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR", "").strip().lower() not in ("", "0", "false"):
        return True
    stream = stream or sys.stdout
    return stream is not None and stream.isatty()


@contextmanager
def progress_bar(
    total: int | None, unit: str, description: str, quiet: bool, unit_scale: bool = True
) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(n)` callback drawing a tqdm bar on stderr, or doing nothing.

    No bar with --quiet or when stderr is not a terminal (logs, CI, pipes).
    """
    if quiet or sys.stderr is None or not sys.stderr.isatty():
        yield lambda n: None
        return
    from tqdm import tqdm  # only when a bar is drawn: start-up stays light

    with tqdm(
        total=total,
        unit=unit,
        unit_scale=unit_scale,
        desc=description,
        file=sys.stderr,
        leave=False,
    ) as bar:

        def advance(n: int) -> None:
            bar.update(n)

        yield advance
