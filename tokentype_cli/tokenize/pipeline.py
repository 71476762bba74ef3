"""Tokenize JSONL / TXT into packed HDF5 rows with token_type_ids, as SambaNova's
generative_data_prep does, plus metrics, a per-line ledger and rejected-line handling.

Three stages overlap: a reader thread parses and checks lines and renders chat conversations
(for conversations, where a fork is safe, it hands on the batches a child process made:
reader_process); two encoder threads each encode a batch with a native encoder (tiktoken or
sentencepiece where encoders.build_encoder shows it gives the tokenizer's ids, else tokenizers;
all release the GIL) and turn its ids (and a conversation's character types) into numpy; the
calling thread builds articles, packs rows with numpy and writes them. Batches keep their
order, so the output is deterministic.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import itertools
import json
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from tokentype_cli import processes
from tokentype_cli.errors import InputError, OptionError
from tokentype_cli.loss import type_counts
from tokentype_cli.schema.names import (
    CATEGORY_IDS,
    INPUT_IDS,
    TOKEN_TYPE_IDS,
    Provenance,
    TokenType,
)
from tokentype_cli.schema.write import ShardWriter, atomic_path, same_file
from tokentype_cli.tokenize import columnar
from tokentype_cli.tokenize.accounting import (
    DroppedArticles,
    lines_with_special_tokens,
    prompts_cut_away,
    special_token_ids,
)
from tokentype_cli.tokenize.articles import build_articles, special_tokens
from tokentype_cli.tokenize.chat import Chat, is_conversation
from tokentype_cli.tokenize.encode import Encoded, Encoder
from tokentype_cli.tokenize.encoders import TextEncoder, build_encoder
from tokentype_cli.tokenize.ledger import Ledger
from tokentype_cli.tokenize.options import (
    CATEGORY_SHIFT,
    COLUMNAR,
    TYPE_MASK,
    TokenizeOptions,
    input_units,
)
from tokentype_cli.tokenize.pack import Packer, PackResult
from tokentype_cli.tokenize.read import (
    Batch,
    InputLine,
    batches,
    check_inputs,
    columnar_lines,
    display_name,
    expand_inputs,
    input_format,
    input_lines,
)
from tokentype_cli.tokenize.reader_process import ReaderProcess
from tokentype_cli.tokenize.shapes import missing_columns
from tokentype_cli.tokenizer_loader import LoadedTokenizer


@dataclass
class Metrics:
    """What happened to the input, for the summary and --json."""

    seq_len: int = 0
    encoder: str = ""  # the encoder that ran: tokenizers, tiktoken or sentencepiece
    lines: int = 0
    lines_blank: int = 0
    lines_rejected: int = 0
    lines_dropped: int = 0  # read, but no token of them in the output (blank lines included)
    pairs: int = 0
    pairs_skipped_prompt_only: int = 0
    articles: int = 0
    input_tokens: int = 0
    rows: int = 0
    rows_dropped_prompt_only: int = 0
    tokens_by_type: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    tokens_truncated_left: int = 0
    tokens_truncated_right: int = 0
    tokens_dropped_too_long: int = 0
    tokens_dropped_prompt_only_rows: int = 0
    articles_dropped_too_long: int = 0
    articles_dropped_prompt_only_row: int = 0
    articles_prompt_cut_away: int = 0  # every prompt token removed by truncate_left
    special_tokens_in_text: int = 0  # lines with a special token written in their text
    special_tokens_first: str | None = None  # file:line of the first
    conversations: int = 0
    conversations_learning_nothing: int = 0
    conversations_with_open_turns: int = 0
    conversations_with_seams: int = 0
    seams: int = 0
    assistant_turns: int = 0  # learned assistant turns
    tool_call_turns: int = 0  # learned assistant turns that call tools
    reasoning_tokens: int = 0  # learned tokens of reasoning text
    first_seam: str | None = None  # where, for the --max-seams message

    def absorb(self, other: Metrics) -> None:
        """Add another run's counts to these (a dataset's split files into their split)."""
        for item in fields(self):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            if item.name == "seq_len":
                continue
            if isinstance(mine, list):
                setattr(self, item.name, [a + b for a, b in zip(mine, theirs, strict=True)])
            elif not isinstance(mine, int) or isinstance(mine, bool):
                # Where something first happened, or which encoder ran: the first one given.
                setattr(self, item.name, mine or theirs)
            else:
                setattr(self, item.name, mine + theirs)

    @property
    def packing_efficiency(self) -> float:
        total = self.rows * self.seq_len
        return (total - self.tokens_by_type[TokenType.PADDING]) / total if total else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "encoder": self.encoder,
            "lines": self.lines,
            "lines_blank": self.lines_blank,
            "lines_rejected": self.lines_rejected,
            "lines_dropped": self.lines_dropped,
            "pairs": self.pairs,
            "pairs_skipped_prompt_only": self.pairs_skipped_prompt_only,
            "articles": self.articles,
            "input_tokens": self.input_tokens,
            "rows": self.rows,
            "max_seq_length": self.seq_len,
            "output_tokens": self.rows * self.seq_len,
            "tokens_by_type": {
                TokenType(t).name.lower(): n for t, n in enumerate(self.tokens_by_type)
            },
            "tokens_truncated_left": self.tokens_truncated_left,
            "tokens_truncated_right": self.tokens_truncated_right,
            "tokens_dropped_too_long": self.tokens_dropped_too_long,
            "tokens_dropped_prompt_only_rows": self.tokens_dropped_prompt_only_rows,
            "rows_dropped_prompt_only": self.rows_dropped_prompt_only,
            "articles_dropped": {
                "too_long": self.articles_dropped_too_long,
                "prompt_only_row": self.articles_dropped_prompt_only_row,
            },
            "articles_prompt_cut_away": self.articles_prompt_cut_away,
            "special_tokens_in_text": self.special_tokens_in_text,
            "special_tokens_first": self.special_tokens_first,
            "packing_efficiency": round(self.packing_efficiency, 6),
            "conversations": self.conversations,
            "conversations_learning_nothing": self.conversations_learning_nothing,
            "conversations_with_open_turns": self.conversations_with_open_turns,
            "conversations_with_seams": self.conversations_with_seams,
            "seams": self.seams,
            "assistant_turns": self.assistant_turns,
            "tool_call_turns": self.tool_call_turns,
            "reasoning_tokens": self.reasoning_tokens,
        }


# --- pipeline --------------------------------------------------------------------------------------

_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _stage(source: Iterator, out: queue.Queue, stop: threading.Event) -> threading.Thread:
    """Drain `source` in a thread into `out`, so its work overlaps the consumer's."""

    def put(item) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def run() -> None:
        try:
            for item in source:
                if stop.is_set():
                    return
                put(item)
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_Failed(exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _ordered_map(work: Callable, source: Iterator, workers: int) -> Iterator:
    """work(item) for each item on `workers` threads, results in the order of `source`.

    Two encodes in flight keep every core busy: one batch's slowest texts no longer leave the
    other cores idle, and one batch's ids are converted while the next is being encoded.
    """
    pending: collections.deque[concurrent.futures.Future] = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="encode") as pool:
        for item in source:
            pending.append(pool.submit(work, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _drain(q: queue.Queue, stop: threading.Event) -> Iterator:
    while True:
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return
            continue
        if item is _DONE:
            return
        if isinstance(item, _Failed):
            raise item.exc
        yield item


def check_targets(inputs: list[str], targets: dict[str, str | Path | None]) -> None:
    """Refuse to write onto an input, or two outputs onto one file (by inode or resolved path,
    schema.same_file): each output is renamed into place at the end, which would replace the
    input (or the other output) with it. `targets` maps each writing option to its path."""
    taken = [(Path(path), f"the input {path}") for path in inputs if path != "-"]
    for flag, path in targets.items():
        if path is None:
            continue
        for other, what in taken:
            if same_file(path, other):
                raise OptionError(f"{flag} {path} is also {what}; write it to another file")
        taken.append((Path(path), flag))


def tokenize_files(
    inputs: list[str],
    output: str | Path,
    tokenizer: LoadedTokenizer,
    options: TokenizeOptions,
    *,
    provenance: Provenance | None = None,
    ledger_path: str | Path | None = None,
    rejects_path: str | Path | None = None,
    seam_report_path: str | Path | None = None,
    max_seams: int | None = None,
    advance: Callable[[int], None] = lambda n: None,
    batch_lines: int = 2048,
    batch_bytes: int = 1 << 19,
    encoders: int = 2,
    encoder: str | TextEncoder = "auto",
) -> Metrics:
    """Tokenize `inputs` (files, folders or -) into the shard `output`; return the metrics.

    Nothing is left at `output` (or the ledger / rejects / seam report paths) unless the whole
    run succeeds. Bad lines raise InputError unless `rejects_path` is given, where they are
    written instead.
    `encoder` is a choice for build_encoder (options.ENCODERS) or a built encoder.
    """
    options.check()
    inputs = expand_inputs(inputs)
    check_inputs(inputs)
    check_targets(
        inputs,
        {
            "-o": output,
            "--ledger": ledger_path,
            "--skip-bad-lines": rejects_path,
            "--seam-report": seam_report_path,
        },
    )
    formats = [input_format(path, options.input_format) for path in inputs]
    check_columns(inputs, formats, options)
    sources = [
        (
            columnar_lines(path, max_bytes=options.max_line_bytes)
            if fmt in COLUMNAR
            else input_lines(path),
            fmt,
        )
        for path, fmt in zip(inputs, formats, strict=True)
    ]
    return tokenize_lines(
        sources,
        output,
        tokenizer,
        options,
        describe=", ".join(display_name(path) for path in inputs),
        provenance=provenance,
        ledger_path=ledger_path,
        rejects_path=rejects_path,
        seam_report_path=seam_report_path,
        max_seams=max_seams,
        advance=advance,
        batch_lines=batch_lines,
        batch_bytes=batch_bytes,
        encoders=encoders,
        encoder=encoder,
        reader_process=renders_chat(inputs, formats, options),
    )


def tokenize_lines(
    sources: Sequence[tuple[Iterable[InputLine], str]],
    output: str | Path,
    tokenizer: LoadedTokenizer,
    options: TokenizeOptions,
    *,
    describe: str,
    advance: Callable[[int], None] = lambda n: None,
    batch_lines: int = 2048,
    batch_bytes: int = 1 << 19,
    provenance: Provenance | None = None,
    ledger_path: str | Path | None = None,
    rejects_path: str | Path | None = None,
    seam_report_path: str | Path | None = None,
    max_seams: int | None = None,
    encoders: int = 2,
    allow_empty: bool = False,
    encoder: str | TextEncoder = "auto",
    reader_process: bool = False,
) -> Metrics:
    """The one way lines become a shard, for `tokenize -o` (each input's lines) and a dataset
    build (one split's lines): conversations rendered, lines batched in order (a batch never
    spans two sources), then encoded, packed and written by tokenize_batches (which says what
    the other arguments do). `sources` pairs each source's lines with its format.

    With `reader_process`, the lines are read, checked and rendered in a child process where a
    fork is safe (reader_process.ReaderProcess): worth it when conversations are rendered, a
    cost when lines are only parsed (their texts then cross a pipe for little work saved)."""
    chat = chat_renderer(tokenizer, options, any(fmt == "chat" for _, fmt in sources))

    def produce(advance: Callable[[int], None]) -> Iterator[Batch]:
        return itertools.chain.from_iterable(
            batches(
                lines,
                fmt,
                options,
                batch_lines=batch_lines,
                batch_bytes=batch_bytes,
                advance=advance,
                keep_raw=rejects_path is not None,
                chat=chat,
            )
            for lines, fmt in sources
        )

    with contextlib.ExitStack() as stack:
        if reader_process and processes.fork_is_safe():
            reader = ReaderProcess(lambda: produce(lambda n: None), advance)
            batched = iter(stack.enter_context(reader))
        else:
            batched = produce(advance)
        return tokenize_batches(
            batched,
            output,
            tokenizer,
            options,
            describe=describe,
            provenance=provenance,
            ledger_path=ledger_path,
            rejects_path=rejects_path,
            seam_report_path=seam_report_path,
            max_seams=max_seams,
            encoders=encoders,
            allow_empty=allow_empty,
            encoder=encoder,
            units=input_units([fmt for _, fmt in sources]),
        )


def renders_chat(inputs: list[str], formats: list[str], options: TokenizeOptions) -> bool:
    """Whether a run will render chat conversations, told before it reads: --apply-chat-template,
    a chat or ShareGPT input, or a first JSONL file (a regular file: stdin or a FIFO cannot be
    read twice) whose first line is a conversation."""
    if options.apply_chat_template or any(fmt in _RENDERED for fmt in formats):
        return True
    if options.input_format in _RENDERED and any(fmt in COLUMNAR for fmt in formats):
        return True
    first = next((p for p, fmt in zip(inputs, formats, strict=True) if fmt == "jsonl"), None)
    # Only a regular file can be read twice: a FIFO's or a process substitution's first line
    # would be taken from the run.
    if first is None or first == "-" or not _regular_file(first):
        return False
    try:
        with contextlib.closing(input_lines(first)) as lines:
            raw = next((line.raw for line in lines if line.raw.strip()), b"")
            if len(raw) > options.max_line_bytes:
                return False
            return is_conversation(json.loads(raw))
    except Exception:  # the run itself reads the file, and says what is wrong with it
        return False


def _regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


_RENDERED = ("chat", "sharegpt")  # formats and row shapes whose records are conversations


def check_columns(paths: list[str], formats: list[str], options: TokenizeOptions) -> None:
    """Open every Parquet/Arrow input and fail, before any row is read, on one that lacks the
    columns these options read."""
    for path, fmt in zip(paths, formats, strict=True):
        if fmt in COLUMNAR:
            columnar.check_columns(
                path, display_name(path), lambda names: missing_columns(names, options)
            )


def text_encoder_for(
    tokenizer: LoadedTokenizer, options: TokenizeOptions, choice: str = "auto"
) -> TextEncoder:
    """The encoder of prompt and completion texts (`choice`: one of options.ENCODERS).

    With --split-special-tokens it encodes from a copy of the tokenizer whose special tokens read
    as text: the flag is the tokenizer's own, and conversations, which the encoder threads encode
    with the tokenizer at the same time, must keep a template's <|im_end|> one token.
    """
    source = tokenizer.tokenizer
    if not hasattr(source, "encode_special_tokens"):
        if options.split_special_tokens:
            raise OptionError("--split-special-tokens needs tokenizers 0.19 or newer")
        return build_encoder(tokenizer, choice)
    source.encode_special_tokens = False
    if not options.split_special_tokens:
        return build_encoder(tokenizer, choice)
    copy = Tokenizer.from_str(source.to_str())
    copy.encode_special_tokens = True
    return build_encoder(dataclasses.replace(tokenizer, tokenizer=copy), choice)


def chat_renderer(tokenizer: LoadedTokenizer, options: TokenizeOptions, chat_input: bool) -> Chat:
    """The Chat that renders conversations for read.batches(chat=...).

    Its template is checked now when every line is a conversation (`chat_input`, --input-format
    chat or --apply-chat-template) or --chat-template names one; otherwise at the first
    conversation, so prompt/completion input never needs a template.
    """
    special = special_tokens(tokenizer, options.eos_token, options.pad_token)
    chat = Chat(tokenizer, options, special.eos_id)
    if chat_input or options.chats or options.chat_template is not None:
        chat.check()
    return chat


def tokenize_batches(
    source: Iterator[Batch],
    output: str | Path,
    tokenizer: LoadedTokenizer,
    options: TokenizeOptions,
    *,
    describe: str,
    provenance: Provenance | None = None,
    ledger_path: str | Path | None = None,
    rejects_path: str | Path | None = None,
    seam_report_path: str | Path | None = None,
    max_seams: int | None = None,
    encoders: int = 2,
    allow_empty: bool = False,
    encoder: str | TextEncoder = "auto",
    units: tuple[str, str] = ("line", "lines"),
) -> Metrics:
    """Encode, pack and write the batches of `source` (from read.batches) into `output`.

    `describe` names the input in the message when no row results (an error unless
    `allow_empty`: a dataset split may be filled by balancing). Batches carry the lines' `raw`
    bytes when `rejects_path` is given. More than `max_seams` seams in conversations fail the
    run. `encoder`: as for tokenize_files; a worker process can be handed a built one (they
    pickle) or build its own. `units` names an input record and many in that message
    (options.input_units).
    """
    special = special_tokens(tokenizer, options.eos_token, options.pad_token)
    if isinstance(encoder, str):
        encoder = text_encoder_for(tokenizer, options, encoder)
    metrics = Metrics(seq_len=options.seq_len, encoder=encoder.name)
    packer = Packer(options.packing, options.seq_len, special.pad_id)
    encode = Encoder(tokenizer, encoder, special.eos_id)
    special_ids = special_token_ids(tokenizer)
    dropped = DroppedArticles(options.seq_len, packer.style == "full")
    names = (INPUT_IDS, TOKEN_TYPE_IDS) if options.write_types else (INPUT_IDS,)
    if options.categories is not None:
        names = (*names, CATEGORY_IDS)
    attention_pair = options.attention_boundary == "prompt_completion_pair"

    stop = threading.Event()
    parsed: queue.Queue = queue.Queue(maxsize=4)
    encoded_q: queue.Queue = queue.Queue(maxsize=4)
    with contextlib.ExitStack() as stack:
        threads = [_stage(source, parsed, stop)]
        encoded = _ordered_map(encode, _drain(parsed, stop), encoders)
        threads.append(_stage(encoded, encoded_q, stop))

        def shutdown() -> None:
            stop.set()
            for thread in threads:
                # A reader blocked on an open stdin pipe never returns: after an error or a
                # signal it is left behind (a daemon thread) instead of holding the exit.
                thread.join(timeout=1.0)

        stack.callback(shutdown)
        ledger = rejects = None
        if ledger_path is not None:
            temporary = stack.enter_context(atomic_path(ledger_path))
            handle = stack.enter_context(open(temporary, "w", encoding="utf-8"))
            ledger = Ledger(handle, options.seq_len, packer.style == "full")
        # The outputs but the ledger have a stack of their own: a run with no row abandons
        # them, and the ledger still says what became of each line.
        shard_stack = stack.enter_context(contextlib.ExitStack())
        if rejects_path is not None:
            temporary = shard_stack.enter_context(atomic_path(rejects_path))
            rejects = shard_stack.enter_context(open(temporary, "wb"))
        seam_report = None
        if seam_report_path is not None:
            temporary = shard_stack.enter_context(atomic_path(seam_report_path))
            seam_report = shard_stack.enter_context(open(temporary, "w", encoding="utf-8"))
        writer = shard_stack.enter_context(
            ShardWriter(output, options.seq_len, datasets=names, provenance=provenance)
        )
        no_rows = None

        def emit(result: PackResult) -> None:
            ids, types = result.ids, result.types
            if not len(ids):
                return
            categories = None
            if options.categories is not None:
                categories = (types >> CATEGORY_SHIFT) - 1
                types = types & TYPE_MASK
            if options.keep_prompt_only:
                keep = np.ones(len(ids), bool)
            else:
                keep = (types == TokenType.COMPLETION).any(axis=1)
            if ledger is not None:
                ledger.rows_resolved(keep, metrics.rows)
            dropped.resolve(keep)
            if not keep.all():
                gone = types[~keep]
                metrics.rows_dropped_prompt_only += len(gone)
                metrics.tokens_dropped_prompt_only_rows += int((gone != TokenType.PADDING).sum())
                ids, types = ids[keep], types[keep]
                if categories is not None:
                    categories = categories[keep]
            if not len(ids):
                return
            for kind, count in enumerate(type_counts(types)[: len(TokenType)].tolist()):
                metrics.tokens_by_type[kind] += count
            metrics.rows += len(ids)
            blocks = {INPUT_IDS: ids}
            if options.write_types:
                blocks[TOKEN_TYPE_IDS] = types
            if categories is not None:
                blocks[CATEGORY_IDS] = categories
            writer.append(**blocks)

        for encoded in _drain(encoded_q, stop):
            batch = encoded.batch
            metrics.lines += batch.line_count
            metrics.lines_blank += len(batch.blank)
            if batch.rejected:
                if rejects is None:  # no --skip-bad-lines
                    index = min(batch.rejected)
                    why = batch.rejected[index][0]
                    # The hint is added here, not to the reason: the ledger records reasons
                    # of lines that --skip-bad-lines did set aside.
                    raise InputError(
                        f"{batch.where(index)}: {why}"
                        " (or pass --skip-bad-lines REJECTS to set bad lines aside)"
                    )
                metrics.lines_rejected += len(batch.rejected)
                for _, (_, raw) in sorted(batch.rejected.items()):
                    rejects.write(raw if raw.endswith(b"\n") else raw + b"\n")
            metrics.pairs_skipped_prompt_only += sum(batch.skipped_pairs.values())
            found = lines_with_special_tokens(encoded, special_ids)
            if len(found):
                metrics.special_tokens_in_text += len(found)
                if metrics.special_tokens_first is None:
                    metrics.special_tokens_first = batch.where(int(found[0]))
            chat_lines = _count_conversations(encoded, metrics, seam_report, tokenizer.decode_each)
            if max_seams is not None and metrics.seams > max_seams:
                raise InputError(
                    f"{describe}: more than --max-seams {max_seams} tokens straddle prompt and"
                    f" completion text (the first at {metrics.first_seam}); list them with"
                    " --seam-report FILE.jsonl, then fix the template or data or raise --max-seams"
                )
            articles = build_articles(encoded, special, attention_pair)
            metrics.pairs += articles.pairs
            metrics.articles += len(articles.start)
            metrics.input_tokens += int(articles.length.sum())
            result = packer.add(articles.ids, articles.types, articles.start, articles.length)
            placement = result.placement
            metrics.tokens_truncated_left += int(placement.cut_left.sum())
            metrics.tokens_truncated_right += int(placement.cut_right.sum())
            metrics.tokens_dropped_too_long += int(placement.dropped.sum())
            metrics.articles_dropped_too_long += int((placement.dropped > 0).sum())
            metrics.articles_prompt_cut_away += prompts_cut_away(articles, placement)
            dropped.add(placement, articles.line, batch.line_count)
            emit(result)
            if ledger is not None:
                ledger.add_batch(batch, articles, placement, chat_lines)
        emit(packer.finish())
        metrics.articles_dropped_prompt_only_row = dropped.dropped
        # Lines read that put no token in the output (set-aside bad lines are counted apart).
        metrics.lines_dropped = dropped.lines_dropped - metrics.lines_rejected
        if ledger is not None:
            ledger.flush(final=True)
        if metrics.rows == 0 and not allow_empty:
            no_rows = InputError(
                f"{describe}: no rows to write: {no_rows_cause(metrics, options, units)}"
            )
            shard_stack.__exit__(InputError, no_rows, None)
    if no_rows is not None:
        raise no_rows
    return metrics


def no_rows_cause(
    m: Metrics, options: TokenizeOptions, units: tuple[str, str] = ("line", "lines")
) -> str:
    """Why a run wrote no row, with its count and the fix: the first cause that explains it."""
    one, many = units
    read = m.lines - m.lines_blank
    if read == 0:
        return f"no non-blank {one} in the input ({m.lines:,} {many} read); check the input"
    if m.lines_rejected == read:
        return f"every one of the {read:,} {many} was rejected (see the rejects file); fix them"
    if m.conversations and m.conversations_learning_nothing == m.conversations:
        return (
            f"none of the {m.conversations:,} conversations has a turn that learns: no"
            " 'assistant' turn, or every assistant turn has weight 0; check the roles"
            " (--role-map FROM=assistant renames one) or --train-on"
        )
    if m.pairs_skipped_prompt_only and not m.pairs:
        return (
            f"every one of the {m.pairs_skipped_prompt_only:,} pairs has an empty completion; check"
            f" --completion-key (now {options.completion_key!r}), or pass"
            " --keep-prompt-only-sequences"
        )
    if m.articles and m.articles_dropped_too_long == m.articles:
        return (
            f"every one of the {m.articles:,} articles is longer than --max-seq-length"
            f" {options.seq_len:,} and --packing {options.packing} drops it; raise"
            " --max-seq-length or use a ::truncate_right packing"
        )
    if m.rows_dropped_prompt_only:
        return (
            f"all {m.rows_dropped_prompt_only:,} rows held prompt tokens only and were dropped;"
            " check --completion-key, or pass --keep-prompt-only-sequences"
        )
    return (
        f"{many}: {m.lines:,}, rejected: {m.lines_rejected:,}, articles dropped as too long:"
        f" {m.articles_dropped_too_long:,}, prompt-only pairs skipped:"
        f" {m.pairs_skipped_prompt_only:,}; check the input"
    )


def _count_conversations(
    encoded: Encoded, metrics: Metrics, report, decode: Callable
) -> dict[int, tuple[int, int]] | None:
    """Add a batch's conversations to the metrics and the seam report; return, per batch line,
    (seams, learned turns without a learned end-of-turn token) for the ledger."""
    batch = encoded.batch
    metrics.conversations += len(batch.chat_lines)
    metrics.conversations_learning_nothing += len(batch.learns_nothing)
    for conversation in batch.conversations.values():
        metrics.assistant_turns += conversation.assistant_turns
        metrics.tool_call_turns += conversation.tool_call_turns
    chat = encoded.chat
    if chat is None:
        return None
    metrics.reasoning_tokens += int(chat.reasoning.sum())
    line_of = dict(zip(batch.pair_completion, batch.pair_line, strict=True))
    metrics.seams += int(chat.seams.sum())
    metrics.conversations_with_seams += int(np.count_nonzero(chat.seams))
    metrics.conversations_with_open_turns += int(np.count_nonzero(chat.open_turns))
    if metrics.first_seam is None and len(chat.seam_text):
        line = line_of[int(chat.seam_text[0])]
        metrics.first_seam = f"{batch.where(line)} token {int(chat.seam_token[0])}"
    if report is not None:
        names = ("prompt", "completion")
        for text, token, token_id, first in zip(
            chat.seam_text.tolist(),
            chat.seam_token.tolist(),
            chat.seam_id.tolist(),
            chat.seam_first_learned.tolist(),
            strict=True,
        ):
            line = line_of[text]
            record = {
                "input": batch.line_source[line],
                batch.unit: batch.line_number[line],
                "token": token,
                "id": token_id,
                "text": decode([token_id])[0],
                "types": [names[first], names[not first]],
                "type": "completion",
            }
            report.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {
        line_of[text]: (seams, open_turns)
        for text, seams, open_turns in zip(
            chat.text_index.tolist(), chat.seams.tolist(), chat.open_turns.tolist(), strict=True
        )
    }
