"""Read JSONL / TXT inputs into batches of texts to encode, checking every line.

Inputs are files (plain, .gz or .zst), folders of them, streams (FIFOs, /dev/stdin) or - for
stdin; Parquet and Arrow files are read by columnar.py, each row a line holding its record. Lines end where Python's universal newlines end them (\n, \r\n or a lone \r), as in the
reference's text-mode reading, and a UTF-8 byte order mark at the start of an input is skipped.

A batch holds the texts of up to a few thousand lines, and for each prompt/completion pair which
texts are its prompt and completion. A chat conversation (a JSONL line holding "messages", or a
pair list under --apply-chat-template) is rendered here, in the reader's thread, into one text that
is the completion of one pair, with the characters it learns (see chat.py). Lines that cannot be
used become rejections (with --skip-bad-lines) or an InputError naming file and line.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import os
import stat
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

import numpy as np

from tokentype_cli.errors import InputError, OptionError, TemplateError
from tokentype_cli.tokenize.chat import (
    ChatLine,
    Conversation,
    ConversationError,
    chat_line,
    is_conversation,
)
from tokentype_cli.tokenize.columnar import columnar_format, folder_files
from tokentype_cli.tokenize.columnar import dumps as row_json
from tokentype_cli.tokenize.columnar import rows as columnar_rows
from tokentype_cli.tokenize.options import COLUMNAR, INPUT_FORMATS, SHAPES, TokenizeOptions
from tokentype_cli.tokenize.shapes import ShapeError, normalise

if TYPE_CHECKING:
    from tokentype_cli.tokenize.chat import Chat

_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".txt": "txt"}
_COMPRESSED = (".gz", ".zst")
_BOM = b"\xef\xbb\xbf"
# Formats people try that are not text lines: the first bytes of the file, and what to say.
_NOT_TEXT = {
    b"PAR1": "a Parquet file named as text; name it .parquet, which tokenize reads as Parquet",
    b"ARROW1": "an Arrow IPC file named as text; name it .arrow, which tokenize reads as Arrow",
    b"\x89HDF": "an HDF5 file (already tokenized?); tokenize reads JSONL or TXT",
    b"PK\x03\x04": "a zip archive; unpack it and pass the JSONL or TXT inside",
}


class InputLine(NamedTuple):
    """One line of an input: where it came from (for messages and the ledger) and its bytes."""

    source: str  # the input's display name (<stdin> for -)
    number: int  # 1-based line number in that input (a Parquet/Arrow row's number, from 0)
    raw: bytes  # the line with its newline normalised to \n (none on a last line without one)
    # A Parquet/Arrow row: its record, which is json.loads(raw); None for a text line. Such a
    # row's raw may be b"" (made when needed), and `size` then bounds its length.
    value: dict | None = None
    size: int = 0


@dataclass
class Batch:
    """Up to a few thousand input lines and the texts they need encoded."""

    line_source: list[str] = field(default_factory=list)  # per line: its input
    line_number: list[int] = field(default_factory=list)  # per line: 1-based number there
    texts: list[str] = field(default_factory=list)
    # Per pair: line index in the batch, prompt text index (-1 none), completion text index,
    # and whether an article ends after it because of --packing-boundary prompt_completion_pair.
    pair_line: list[int] = field(default_factory=list)
    pair_prompt: list[int] = field(default_factory=list)
    pair_completion: list[int] = field(default_factory=list)
    pair_split: list[int] = field(default_factory=list)
    pair_category: list[int] = field(default_factory=list)  # with --categories; -1 for none
    skipped_pairs: dict[int, int] = field(default_factory=dict)  # line index -> prompt-only pairs
    blank: set[int] = field(default_factory=set)  # line indices of blank JSONL lines (skipped)
    rejected: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # line -> (why, raw)
    raw: list[bytes] = field(default_factory=list)  # the lines as read, kept for --skip-bad-lines
    nbytes: int = 0
    # Chat: text index -> the rendered conversation (its text is texts[index]); lines holding a
    # conversation, and those whose conversation learns no token (skipped as prompt-only pairs
    # are, unless --keep-prompt-only-sequences).
    conversations: dict[int, Conversation] = field(default_factory=dict)
    chat_lines: set[int] = field(default_factory=set)
    learns_nothing: set[int] = field(default_factory=set)
    # What line_number counts: "line" (from 1), or "row" of a Parquet/Arrow file (from 0); the
    # ledger's key for it.
    unit: str = "line"

    @property
    def line_count(self) -> int:
        return len(self.line_number)

    def where(self, index: int) -> str:
        """`file:line` of the batch's line `index`, for messages."""
        return f"{self.line_source[index]}:{self.line_number[index]}"


def display_name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _base_suffix(path: str) -> str:
    """The extension that names the format: `.jsonl` for data.jsonl and data.jsonl.gz."""
    name = Path(path)
    if name.suffix.lower() in _COMPRESSED:
        name = name.with_suffix("")
    return name.suffix.lower()


def input_format(path: str, given: str | None) -> str:
    """The format of one input: --input-format, else its extension; stdin defaults to JSONL.

    A Parquet or Arrow file is that whatever --input-format: the option then says the shape of
    its rows (shapes.py)."""
    columnar = None if path == "-" else columnar_format(path)
    if columnar is not None:
        if given == "txt":
            raise OptionError(
                f"{path}: --input-format txt reads text lines; a {columnar.title()} file holds"
                " records: leave --input-format out or give jsonl, chat, sharegpt or alpaca"
            )
        return columnar
    if given:
        return given
    if path == "-":
        return "jsonl"
    suffix = _base_suffix(path)
    found = _EXTENSIONS.get(suffix)
    if found is None:
        raise OptionError(
            f"{path}: cannot tell the format from the extension (.jsonl, .txt, .parquet, .arrow);"
            " pass --input-format jsonl or txt"
        )
    return found


def expand_inputs(paths: Iterable[str]) -> list[str]:
    """Files as given; a folder becomes its *.jsonl or *.txt files (also .gz/.zst), sorted by name,
    or its Parquet/Arrow files (columnar.folder_files: Hub and save_to_disk folders too).

    A folder holding both JSONL and TXT files is an error naming one of each, since a folder is
    read as one dataset in one format.
    """
    found: list[str] = []
    for path in paths:
        if path == "-" or not Path(path).is_dir():
            found.append(path)
            continue
        by_format: dict[str, list[str]] = {}
        for child in sorted(Path(path).iterdir(), key=lambda p: p.name):
            fmt = _EXTENSIONS.get(_base_suffix(str(child)))
            if fmt is None or child.suffix.lower() == ".json":
                continue
            if child.is_symlink() and not os.path.exists(child):
                # Left out silently, the data it was meant to bring would be missing from the
                # build with nothing said.
                why = "a symbolic link loop" if _loops(child) else "a dangling symbolic link"
                raise InputError(
                    f"{child}: {why} in the input folder {path}; fix its target or remove it"
                )
            if _is_readable_file(child):
                by_format.setdefault(fmt, []).append(str(child))
        columnar = folder_files(Path(path))
        if columnar is not None:
            if by_format:
                text = next(iter(by_format.values()))[0]
                raise InputError(
                    f"{path}: the folder mixes Parquet/Arrow ({columnar[0]}) and text ({text})"
                    " files; keep one format per folder or name the files"
                )
            found.extend(columnar)
            continue
        if len(by_format) > 1:
            raise InputError(
                f"{path}: the folder mixes JSONL ({by_format['jsonl'][0]}) and TXT"
                f" ({by_format['txt'][0]}) files; keep one format per folder or name the files"
            )
        if not by_format:
            raise InputError(
                f"{path}: the folder holds no *.jsonl, *.txt, *.parquet or *.arrow files"
            )
        found.extend(next(iter(by_format.values())))
    return found


def _loops(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _is_readable_file(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def check_inputs(paths: list[str]) -> None:
    """Fail before any work when an input is missing, a folder, or not text lines."""
    if paths.count("-") > 1:
        raise OptionError("'-' (stdin) can be given only once")
    for path in paths:
        if path == "-":
            continue
        if not _is_readable_file(Path(path)):
            what = "is a folder" if Path(path).is_dir() else "no such file"
            raise InputError(f"{path}: {what}; pass a JSONL or TXT file, or - for stdin")
        if not stat.S_ISREG(Path(path).stat().st_mode) or columnar_format(path):
            continue  # a stream: its first bytes must not be consumed here; pyarrow checks its own
        try:
            with open(path, "rb") as handle:
                head = handle.read(4)
        except OSError as exc:
            raise InputError(
                f"{path}: cannot read ({exc.strerror or exc}); check the file and its permissions"
            ) from exc
        for magic, what in _NOT_TEXT.items():
            if head.startswith(magic):
                raise InputError(f"{path}: {what}")


def input_size(paths: list[str]) -> int | None:
    """Total bytes to read, for the progress bar (None for stdin, streams and compressed inputs).

    Missing inputs count as empty: check_inputs reports them, once the run starts.
    """
    if any(p == "-" or Path(p).suffix.lower() in _COMPRESSED or columnar_format(p) for p in paths):
        return None
    sizes = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            return None
        sizes.append(info.st_size)
    return sum(sizes)


def open_binary(path: str) -> io.BufferedIOBase | BinaryIO:
    """A binary stream of the input's bytes, decompressed for .gz and .zst."""
    if path == "-":
        if sys.stdin is None:  # closed (`<&-`), not just empty
            raise InputError("<stdin>: standard input is closed; pipe the input in or name a file")
        # A reader of our own on a copy of the descriptor, not sys.stdin.buffer: a signal may
        # end the run while a reader thread waits on an open pipe, and the interpreter's exit
        # would then block on (and abort over) the lock of sys.stdin's buffer that it holds.
        try:
            descriptor = sys.stdin.fileno()
        except (OSError, ValueError):  # an in-memory stdin (tests, embedding): no descriptor
            return sys.stdin.buffer
        return open(os.dup(descriptor), "rb")
    suffix = Path(path).suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    handle = open(path, "rb")  # noqa: SIM115 (returned to the caller, who closes it)
    if suffix == ".zst":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(handle, closefd=True)
        return io.BufferedReader(reader, 1 << 20)
    return handle


@contextlib.contextmanager
def _reading(path: str, source: str) -> Iterator[io.BufferedIOBase | BinaryIO]:
    """The input's binary stream, closed after (stdin's own buffer is left open); a read that
    fails, a damaged .gz or .zst included, is one line naming `source`."""
    try:
        stream = open_binary(path)
        try:
            yield stream
        finally:
            if stream is not getattr(sys.stdin, "buffer", None):
                stream.close()
    except (OSError, EOFError) as exc:
        raise InputError(
            f"{source}: cannot read ({getattr(exc, 'strerror', None) or exc}); check the file"
            " (a compressed input may be truncated or damaged)"
        ) from exc
    except ImportError as exc:
        raise InputError(f"{source}: reading .zst needs the zstandard package ({exc})") from exc


def _empty(source: str) -> InputError:
    return InputError(f"{source}: empty input (no lines); check the file or leave it out")


def input_lines(path: str, name: str | None = None) -> Generator[InputLine, None, None]:
    """The lines of one input, numbered from 1 (see the module docstring for line ends).

    `name`: what messages and records call the input (default: its path, <stdin> for -)."""
    source = name or display_name(path)
    number = 0
    with _reading(path, source) as stream:
        first = True
        # Iterating the binary stream splits on b"\n" only, in C, and stays linear on huge
        # lines; the rare \r is handled per line after.
        for raw in stream:
            if first:
                first = False
                if raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                    if not raw:  # the whole input was the mark: no line
                        continue
            if b"\r" in raw:
                for piece in _universal(raw):
                    number += 1
                    yield InputLine(source, number, piece)
                continue
            number += 1
            yield InputLine(source, number, raw)
    if number == 0:
        raise _empty(source)


def line_blocks(
    path: str, name: str | None = None, block: int = 1 << 20
) -> Iterator[tuple[bytes, np.ndarray]]:
    """The input's lines a block at a time, as input_lines sees them: (bytes of whole lines, the
    end offset of each line in them). For passes that need no line as a Python object: counting
    and routing a dataset's lines run on numpy instead of a loop per line."""
    source = name or display_name(path)
    lines = 0
    with _reading(path, source) as stream:
        head = stream.read(len(_BOM))
        rest = b"" if head == _BOM else head
        while chunk := stream.read(block):
            data = rest + chunk
            held = b""
            if data.endswith(b"\r"):  # perhaps the first half of a \r\n
                data, held = data[:-1], b"\r"
            if b"\r" in data:
                data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            cut = data.rfind(b"\n") + 1
            rest = data[cut:] + held
            if cut:
                ends = np.flatnonzero(np.frombuffer(data, np.uint8, cut) == 10) + 1
                lines += len(ends)
                yield data[:cut], ends
        if rest:
            rest = rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            ends = np.flatnonzero(np.frombuffer(rest, np.uint8) == 10) + 1
            if not rest.endswith(b"\n"):
                ends = np.append(ends, len(rest))
            lines += len(ends)
            yield rest, ends
    if lines == 0:
        raise _empty(source)


def _universal(raw: bytes) -> list[bytes]:
    """Split a line holding \r the way text mode does: \r\n and a lone \r end lines, as \n."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    pieces = text.split(b"\n")
    out = [piece + b"\n" for piece in pieces[:-1]]
    if pieces[-1]:
        out.append(pieces[-1])
    return out


class LineError(Exception):
    """A line that cannot be used; message is 'what is wrong; the fix'."""


def _text_field(item: dict, key: str, where: str, required: bool, noun: str = "field") -> str:
    """`noun`: what the record's keys are to the user, fields of a JSON line or columns."""
    if key not in item:
        if required:
            raise LineError(
                f"no {key!r} {noun}{where}; add it (it may be empty) or name the {noun} with"
                " --completion-key"
            )
        return ""
    value = item[key]
    if not isinstance(value, str):
        flag = "--completion-key" if required else "--prompt-key"
        raise LineError(
            f"{noun} {key!r}{where} is {type(value).__name__ if value is not None else 'null'},"
            f" not a string; make it a string or pick another {noun} with {flag}"
        )
    return value


def batches(
    lines: Iterable[InputLine],
    fmt: str,
    options: TokenizeOptions,
    *,
    batch_lines: int = 2048,
    batch_bytes: int = 1 << 20,
    advance: Callable[[int], None] = lambda n: None,
    keep_raw: bool = False,
    chat: Chat | None = None,
) -> Iterator[Batch]:
    """Yield batches of checked lines, in the order given.

    `chat` renders conversations (chat.Chat); without it a conversation line is an error.
    """
    if fmt not in INPUT_FORMATS and fmt not in COLUMNAR:
        raise OptionError(f"unknown input format {fmt!r}; use {' or '.join(INPUT_FORMATS)}")
    shape = fmt if fmt in SHAPES else None
    if shape is None and options.input_format in SHAPES:
        shape = options.input_format
    if fmt == "txt" and options.apply_chat_template:
        raise OptionError(
            "--apply-chat-template reads prompt/completion JSONL; TXT lines have no prompt"
        )
    split_pairs = options.packing_boundary == "prompt_completion_pair"
    unit = "row" if fmt in COLUMNAR else "line"
    batch = Batch(unit=unit)
    for source, number, raw, value, size in lines:
        index = batch.line_count
        marks = (len(batch.texts), len(batch.pair_line))
        batch.line_source.append(source)
        batch.line_number.append(number)
        if keep_raw and value is not None and not raw:
            raw = row_json(value)
        batch.nbytes += len(raw) or size
        if keep_raw:
            batch.raw.append(raw)
        text = ""
        try:
            if len(raw) > options.max_line_bytes:
                raise LineError(
                    f"the {unit} is {len(raw) / (1 << 20):.1f} MiB, over the limit of"
                    f" {options.max_line_bytes / (1 << 20):.1f} MiB (encoding it would take about"
                    " 130 times that in memory); split it, or raise --max-line-bytes"
                )
            if value is not None:  # a Parquet/Arrow row, already a record
                _add_record(batch, index, value, options, split_pairs, shape, chat)
            else:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise LineError(
                        f"invalid UTF-8 at byte {exc.start}; convert the file to UTF-8"
                        " (e.g. iconv -f latin1 -t utf-8)"
                    ) from None
                if fmt == "txt":
                    _add_txt(batch, index, text)
                elif not text.strip():
                    batch.blank.add(index)
                else:
                    _add_jsonl(batch, index, text, options, split_pairs, shape, chat)
        except LineError as exc:
            message = str(exc)
            chat_list = index in batch.chat_lines
            if (
                number == 1
                and fmt == "jsonl"
                and text.lstrip().startswith("[")
                and not chat_list
                and message.startswith("malformed JSON")
            ):
                message += (
                    f"; if {source} is one JSON array, not JSON Lines, convert it:"
                    f" jq -c '.[]' {source} > lines.jsonl"
                )
            if value is not None and not raw:  # a row's JSON line, made for the rejects
                raw = row_json(value)
            batch.rejected[index] = (message, raw)
            _drop_line(batch, index, marks)
        if batch.line_count >= batch_lines or batch.nbytes >= batch_bytes:
            advance(batch.nbytes)
            yield batch
            batch = Batch(unit=unit)
    if batch.line_count:
        advance(batch.nbytes)
        yield batch


def columnar_lines(
    path: str, name: str | None = None, max_bytes: int | None = None
) -> Iterator[InputLine]:
    """The rows of a Parquet or Arrow file as lines: numbered from 0, with the record itself (so
    it is not parsed again). The raw bytes are its JSON line; with `max_bytes`, only for rows
    that may be longer than that (b"" for the others, made if the row is rejected)."""
    source = name or display_name(path)
    for number, raw, record, size in columnar_rows(path, source, max_bytes):
        yield InputLine(source, number, raw, record, size)


def _drop_line(batch: Batch, index: int, marks: tuple[int, int]) -> None:
    """Forget the texts and pairs a rejected line had added."""
    texts, pairs = marks
    del batch.texts[texts:]
    for column in (
        batch.pair_line,
        batch.pair_prompt,
        batch.pair_completion,
        batch.pair_split,
        batch.pair_category,
    ):
        del column[pairs:]
    batch.skipped_pairs.pop(index, None)
    for text in [t for t in batch.conversations if t >= texts]:
        del batch.conversations[text]
    batch.chat_lines.discard(index)
    batch.learns_nothing.discard(index)


def _add_txt(batch: Batch, index: int, text: str) -> None:
    # A blank TXT line is an article ("\n"), as in the reference.
    batch.texts.append(text)
    batch.pair_line.append(index)
    batch.pair_prompt.append(-1)
    batch.pair_completion.append(len(batch.texts) - 1)
    batch.pair_split.append(0)


def _category(item: dict, names: tuple[str, ...], where: str) -> int:
    name = item.get("category")
    if name is None:
        return -1
    if not isinstance(name, str) or name not in names:
        raise LineError(
            f"category {name!r}{where} is not one of the --categories names; add it to that file"
            " or fix the line"
        )
    return names.index(name)


def _add_jsonl(
    batch: Batch,
    index: int,
    text: str,
    options: TokenizeOptions,
    split_pairs: bool,
    shape: str | None = None,
    chat: Chat | None = None,
) -> None:
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineError(
            f"malformed JSON ({exc.msg} at character {exc.pos + 1}); fix the line"
        ) from None
    except RecursionError:
        raise LineError(
            "JSON nested too deeply to read (thousands of levels); a prompt/completion or chat"
            " line needs a few"
        ) from None
    _add_record(batch, index, loaded, options, split_pairs, shape, chat)


def _add_record(
    batch: Batch,
    index: int,
    loaded: object,
    options: TokenizeOptions,
    split_pairs: bool,
    shape: str | None = None,
    chat: Chat | None = None,
) -> None:
    try:
        loaded = normalise(loaded, shape, options, "column" if batch.unit == "row" else "field")
    except ShapeError as exc:
        raise LineError(str(exc)) from None
    if options.apply_chat_template and not is_conversation(loaded):
        _add_conversation(
            batch, index, _pairs_as_chat(batch, index, loaded, options), chat, options
        )
        return
    if shape in ("chat", "sharegpt") or is_conversation(loaded):
        if split_pairs or options.attention_boundary != "jsonl":
            raise LineError(
                "a chat conversation is one article; leave --packing-boundary and"
                " --attention-boundary at jsonl"
            )
        batch.chat_lines.add(index)
        try:
            line = chat_line(loaded)
        except ConversationError as exc:
            raise LineError(str(exc)) from None
        _add_conversation(batch, index, line, chat, options)
        return
    if isinstance(loaded, dict):
        items = [loaded]
    elif isinstance(loaded, list):
        items = loaded
    else:
        raise LineError(
            f"a JSON {type(loaded).__name__}, not an object; write"
            ' {"prompt": ..., "completion": ...} or a list of such objects'
        )
    last = len(items) - 1
    for position, where, item, prompt, completion in _pairs(loaded, batch, index, options):
        if options.space_separator:
            if prompt:
                prompt = prompt.rstrip(" ")
            if completion:
                completion = " " + completion.lstrip(" ")
        prompt_index = completion_index = -1
        if prompt:
            if options.prompt_prefix:
                prompt = options.prompt_prefix + prompt
            if options.prompt_postfix:
                prompt = prompt + options.prompt_postfix
            batch.texts.append(prompt)
            prompt_index = len(batch.texts) - 1
        if completion:
            batch.texts.append(completion)
            completion_index = len(batch.texts) - 1
        batch.pair_line.append(index)
        batch.pair_prompt.append(prompt_index)
        batch.pair_completion.append(completion_index)
        batch.pair_split.append(int(split_pairs and position != last))
        if options.categories is not None:
            batch.pair_category.append(_category(item, options.categories, where))


def _pairs(
    loaded: object, batch: Batch, index: int, options: TokenizeOptions
) -> Iterator[tuple[int, str, dict, str, str]]:
    """(position, where, item, prompt, completion) of each pair of a line, checked; a pair with
    an empty completion is counted as skipped instead, unless --keep-prompt-only-sequences."""
    items = loaded if isinstance(loaded, list) else [loaded]
    for position, item in enumerate(items):
        where = f" in list element {position}" if isinstance(loaded, list) else ""
        if not isinstance(item, dict):
            raise LineError(
                f"{'list element ' + str(position) if where else 'the line'} is not an object;"
                ' each must be {"prompt": ..., "completion": ...}'
            )
        noun = "column" if batch.unit == "row" else "field"
        completion = _text_field(item, options.completion_key, where, True, noun)
        prompt = _text_field(item, options.prompt_key, where, False, noun)
        if not completion and not options.keep_prompt_only:
            batch.skipped_pairs[index] = batch.skipped_pairs.get(index, 0) + 1
            continue
        yield position, where, item, prompt, completion


def _pairs_as_chat(batch: Batch, index: int, loaded: object, options: TokenizeOptions) -> ChatLine:
    """--apply-chat-template: each pair is a user turn and an assistant turn of one conversation.

    Texts go in as they are (no space separator); --prompt-prefix/--prompt-postfix still wrap a
    non-empty prompt. Pairs with an empty completion are skipped unless
    --keep-prompt-only-sequences, as without a template.
    """
    batch.chat_lines.add(index)
    messages: list[dict] = []
    for _, _, _, prompt, completion in _pairs(loaded, batch, index, options):
        if prompt:
            prompt = (options.prompt_prefix or "") + prompt + (options.prompt_postfix or "")
        messages.append({"role": "user", "content": prompt})
        messages.append({"role": "assistant", "content": completion})
    return ChatLine(messages)


def _add_conversation(
    batch: Batch, index: int, line: ChatLine, chat: Chat | None, options: TokenizeOptions
) -> None:
    if not line.messages:  # every pair had an empty completion: no conversation to render
        batch.chat_lines.discard(index)
        return
    if chat is None:
        raise OptionError(
            f"{batch.where(index)}: a chat conversation, but this run renders no chat templates;"
            " pass a Chat to batches()"
        )
    try:
        conversation = chat.conversation(line)
    except ConversationError as exc:
        raise LineError(str(exc)) from None
    except TemplateError as exc:  # the template cannot serve this run: stop it, naming the line
        raise TemplateError(f"{batch.where(index)}: {exc}") from exc
    if not conversation.learns:
        batch.learns_nothing.add(index)
        if not options.keep_prompt_only:
            batch.skipped_pairs[index] = batch.skipped_pairs.get(index, 0) + 1
            return
    batch.texts.append(conversation.text)
    batch.conversations[len(batch.texts) - 1] = conversation
    batch.pair_line.append(index)
    batch.pair_prompt.append(-1)
    batch.pair_completion.append(len(batch.texts) - 1)
    batch.pair_split.append(0)
    if options.categories is not None:  # a conversation has no pair's "category"
        batch.pair_category.append(-1)
