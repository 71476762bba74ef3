"""Read JSONL / TXT inputs into batches of texts to encode, checking every line.

A batch holds the texts of consecutive lines of one input, and for each prompt/completion pair
which texts are its prompt and completion. Lines that cannot be used become rejections (with
--skip-bad-lines) or an InputError naming file and line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tokentype_cli.errors import InputError, OptionError
from tokentype_cli.tokenize.options import TokenizeOptions

_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".txt": "txt"}


@dataclass
class Batch:
    """Consecutive lines of one input and the texts they need encoded."""

    source: str
    first_line: int  # 1-based number of lines[0]
    line_count: int = 0
    texts: list[str] = field(default_factory=list)
    # Per pair: line index in the batch, prompt text index (-1 none), completion text index,
    # and whether an article ends after it because of --packing-boundary prompt_completion_pair.
    pair_line: list[int] = field(default_factory=list)
    pair_prompt: list[int] = field(default_factory=list)
    pair_completion: list[int] = field(default_factory=list)
    pair_split: list[int] = field(default_factory=list)
    skipped_pairs: dict[int, int] = field(default_factory=dict)  # line index -> prompt-only pairs
    rejected: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # line -> (why, raw)
    raw: list[bytes] = field(default_factory=list)  # the lines as read, kept for --skip-bad-lines
    nbytes: int = 0


def input_format(path: str, given: str | None) -> str:
    """The format of one input: --input-format, else its extension; stdin defaults to JSONL."""
    if given:
        return given
    if path == "-":
        return "jsonl"
    found = _EXTENSIONS.get(Path(path).suffix.lower())
    if found is None:
        raise OptionError(
            f"{path}: cannot tell the format from the extension; pass --input-format jsonl or txt"
        )
    return found


def check_inputs(paths: list[str]) -> None:
    """Fail before any work when an input file is missing."""
    if paths.count("-") > 1:
        raise OptionError("'-' (stdin) can be given only once")
    for path in paths:
        if path != "-" and not Path(path).is_file():
            what = "is a folder" if Path(path).is_dir() else "no such file"
            raise InputError(f"{path}: {what}; pass a JSONL or TXT file, or - for stdin")


def input_size(paths: list[str]) -> int | None:
    """Total bytes to read, for the progress bar (None when reading stdin).

    Missing inputs count as empty: check_inputs reports them, once the run starts.
    """
    if "-" in paths:
        return None
    return sum(os.path.getsize(p) for p in paths if Path(p).is_file())


def _raw_lines(path: str) -> Iterator[bytes]:
    """Lines of a file (or stdin) as bytes, each with its newline if it had one."""
    # Iterating the binary stream splits on b"\n" only, in C, and stays linear on huge lines.
    if path == "-" and sys.stdin is None:  # closed (`<&-`), not just empty
        raise InputError("<stdin>: standard input is closed; pipe the input in or name a file")
    try:
        if path == "-":
            yield from sys.stdin.buffer
            return
        with open(path, "rb") as stream:
            yield from stream
    except OSError as exc:
        name = "<stdin>" if path == "-" else path
        raise InputError(
            f"{name}: cannot read ({exc.strerror or exc}); check the file and its permissions"
        ) from exc


class LineError(Exception):
    """A line that cannot be used; message is 'what is wrong; the fix'."""


def _text_field(item: dict, key: str, where: str, required: bool) -> str:
    if key not in item:
        if required:
            raise LineError(
                f"no {key!r} field{where}; add it (it may be empty) or name the field with"
                " --completion-key"
            )
        return ""
    value = item[key]
    if not isinstance(value, str):
        flag = "--completion-key" if required else "--prompt-key"
        raise LineError(
            f"field {key!r}{where} is {type(value).__name__ if value is not None else 'null'},"
            f" not a string; make it a string or pick another field with {flag}"
        )
    return value


def batches(
    paths: list[str],
    formats: list[str],
    options: TokenizeOptions,
    *,
    batch_lines: int = 2048,
    batch_bytes: int = 1 << 20,
    advance: Callable[[int], None] = lambda n: None,
    keep_raw: bool = False,
) -> Iterator[Batch]:
    """Yield batches of checked lines from every input in order."""
    split_pairs = options.packing_boundary == "prompt_completion_pair"
    for path, fmt in zip(paths, formats, strict=True):
        source = "<stdin>" if path == "-" else path
        batch = Batch(source, 1)
        number = 0
        for number, raw in enumerate(_raw_lines(path), start=1):
            index = batch.line_count
            marks = (len(batch.texts), len(batch.pair_line))
            batch.line_count += 1
            batch.nbytes += len(raw)
            if keep_raw:
                batch.raw.append(raw)
            try:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise LineError(
                        f"invalid UTF-8 at byte {exc.start}; convert the file to UTF-8"
                        " (e.g. iconv -f latin1 -t utf-8)"
                    ) from None
                if fmt == "txt":
                    _add_txt(batch, index, text)
                else:
                    _add_jsonl(batch, index, text, options, split_pairs)
            except LineError as exc:
                batch.rejected[index] = (str(exc), raw)
                _drop_line(batch, index, marks)
            if batch.line_count >= batch_lines or batch.nbytes >= batch_bytes:
                advance(batch.nbytes)
                yield batch
                batch = Batch(source, number + 1)
        if number == 0:
            raise InputError(f"{source}: empty input (no lines); check the file or leave it out")
        if batch.line_count:
            advance(batch.nbytes)
            yield batch


def _drop_line(batch: Batch, index: int, marks: tuple[int, int]) -> None:
    """Forget the texts and pairs a rejected line had added."""
    texts, pairs = marks
    del batch.texts[texts:]
    for column in (batch.pair_line, batch.pair_prompt, batch.pair_completion, batch.pair_split):
        del column[pairs:]
    batch.skipped_pairs.pop(index, None)


def _add_txt(batch: Batch, index: int, text: str) -> None:
    # The reference reads text files in universal-newline mode: CRLF counts as LF.
    if text.endswith("\r\n"):
        text = text[:-2] + "\n"
    batch.texts.append(text)
    batch.pair_line.append(index)
    batch.pair_prompt.append(-1)
    batch.pair_completion.append(len(batch.texts) - 1)
    batch.pair_split.append(0)


def _add_jsonl(
    batch: Batch, index: int, text: str, options: TokenizeOptions, split_pairs: bool
) -> None:
    if not text.strip():
        raise LineError("blank line; remove it (every JSONL line must be a JSON object or list)")
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineError(
            f"malformed JSON ({exc.msg} at character {exc.pos + 1}); fix the line"
        ) from None
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
    for position, item in enumerate(items):
        where = f" in list element {position}" if isinstance(loaded, list) else ""
        if not isinstance(item, dict):
            raise LineError(
                f"list element {position} is not an object; each must be"
                ' {"prompt": ..., "completion": ...}'
            )
        completion = _text_field(item, options.completion_key, where, required=True)
        prompt = _text_field(item, options.prompt_key, where, required=False)
        if not completion and not options.keep_prompt_only:
            batch.skipped_pairs[index] = batch.skipped_pairs.get(index, 0) + 1
            continue
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
