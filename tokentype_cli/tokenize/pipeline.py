"""Tokenize JSONL / TXT into packed HDF5 rows with token_type_ids, as SambaNova's
generative_data_prep does, plus metrics, a per-line ledger and rejected-line handling.

Three stages overlap: a reader thread parses and checks lines; two encoder threads each encode a
batch with the Rust tokenizer (which releases the GIL) and turn its ids into numpy; the calling
thread builds articles, packs rows with numpy and writes them. Batches keep their order, so the
output is deterministic.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import json
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tokentype_cli.errors import InputError, OptionError, TokenizerError
from tokentype_cli.loss import type_counts
from tokentype_cli.schema import (
    DTYPE,
    INPUT_IDS,
    TOKEN_TYPE_IDS,
    Provenance,
    ShardWriter,
    TokenType,
    atomic_path,
)
from tokentype_cli.tokenize.pack import PACKING_CHOICES, Packer, PackResult, Placement
from tokentype_cli.tokenize.read import (
    BOUNDARIES,
    Batch,
    batches,
    check_inputs,
    input_format,
)
from tokentype_cli.tokenizer_loader import LoadedTokenizer


@dataclass(frozen=True)
class TokenizeOptions:
    """Everything that decides the output arrays."""

    seq_len: int = 2048
    packing: str = "full"
    packing_boundary: str = "jsonl"
    attention_boundary: str = "jsonl"
    prompt_key: str = "prompt"
    completion_key: str = "completion"
    space_separator: bool = True
    keep_prompt_only: bool = False
    prompt_prefix: str | None = None
    prompt_postfix: str | None = None
    input_format: str | None = None
    write_types: bool = True
    eos_token: str | None = None  # text or id; None: the tokenizer's
    pad_token: str | None = None  # text or id; None: the tokenizer's pad, else the eos in use

    def check(self) -> None:
        if self.seq_len < 1:
            raise OptionError(f"--max-seq-length must be at least 1, got {self.seq_len}")
        if self.packing not in PACKING_CHOICES:
            raise OptionError(
                f"--packing {self.packing!r} is unknown; use one of {', '.join(PACKING_CHOICES)}"
            )
        for name, value in (
            ("--packing-boundary", self.packing_boundary),
            ("--attention-boundary", self.attention_boundary),
        ):
            if value not in BOUNDARIES:
                raise OptionError(f"{name} {value!r} is unknown; use {' or '.join(BOUNDARIES)}")


@dataclass(frozen=True)
class SpecialTokens:
    eos_id: int
    pad_id: int
    bos_id: int | None


def special_tokens(
    tokenizer: LoadedTokenizer, eos: str | None = None, pad: str | None = None
) -> SpecialTokens:
    """The eos and pad ids to use: the overrides (a token or a number) or the tokenizer's.

    Without a pad token the pad is the eos in use, so --eos-token moves the padding with it.
    """

    def resolve(value: str, flag: str) -> int:
        text = value.strip()
        try:
            return tokenizer.token_id(int(text) if text.isdigit() else value)
        except TokenizerError as exc:  # say which option named the token
            raise TokenizerError(f"{flag} {value!r}: {exc}") from exc

    eos_id = resolve(eos, "--eos-token") if eos is not None else tokenizer.eos_id
    if eos_id is None:
        raise TokenizerError(
            f"{tokenizer.path}: the tokenizer names no end-of-sequence token; pass --eos-token"
        )
    if pad is not None:
        pad_id = resolve(pad, "--pad-token")
    elif tokenizer.pad_id is not None:
        pad_id = tokenizer.pad_id
    else:  # the eos in use: rows pad with the token that ends their articles
        pad_id = eos_id
    return SpecialTokens(eos_id, pad_id, tokenizer.bos_id)


# --- metrics ---------------------------------------------------------------------------------------


@dataclass
class Metrics:
    """What happened to the input, for the summary and --json."""

    seq_len: int = 0
    lines: int = 0
    lines_rejected: int = 0
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

    @property
    def packing_efficiency(self) -> float:
        total = self.rows * self.seq_len
        return (total - self.tokens_by_type[TokenType.PADDING]) / total if total else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "lines": self.lines,
            "lines_rejected": self.lines_rejected,
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
            "packing_efficiency": round(self.packing_efficiency, 6),
        }


# --- encoding --------------------------------------------------------------------------------------


@dataclass
class Encoded:
    batch: Batch
    flat: np.ndarray  # every text's ids, concatenated
    text_start: np.ndarray
    text_len: np.ndarray


class Encoder:
    """Encode a batch's texts at once; find the line when the tokenizer refuses a text."""

    def __init__(self, tokenizer: LoadedTokenizer) -> None:
        self.loaded = tokenizer
        self.tokenizer = tokenizer.tokenizer
        # The reference encodes without the tokenizer file's truncation or padding settings.
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.encode_many = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)

    def __call__(self, batch: Batch) -> Encoded:
        try:
            encodings = self.encode_many(batch.texts)
        except Exception:  # tokenizers raises plain Exception from Rust
            encodings = self._encode_reporting(batch)
        lengths = np.fromiter((len(e) for e in encodings), np.int64, len(encodings))
        total = int(lengths.sum())
        flat = np.fromiter(
            itertools.chain.from_iterable(e.ids for e in encodings), dtype=DTYPE, count=total
        )
        return Encoded(batch, flat, np.cumsum(lengths) - lengths, lengths)

    def _encode_reporting(self, batch: Batch) -> list:
        text_line: dict[int, int] = {}
        for line, p, c in zip(
            batch.pair_line, batch.pair_prompt, batch.pair_completion, strict=True
        ):
            for index in (p, c):
                if index >= 0:
                    text_line[index] = line
        bad: dict[int, str] = {}
        for index, text in enumerate(batch.texts):
            try:
                self.encode_many([text])
            except Exception as exc:
                line = text_line[index]
                bad.setdefault(line, self._why(text, exc))
        if not bad:  # the failure did not repeat text by text; report it as it came
            raise TokenizerError(
                f"{batch.source}:{batch.first_line}-{batch.first_line + batch.line_count - 1}:"
                " the tokenizer failed on this block of lines"
            )
        for line, why in sorted(bad.items()):
            batch.rejected[line] = (why, batch.raw[line] if batch.raw else b"")
        keep = [i for i, line in enumerate(batch.pair_line) if line not in bad]
        for name in ("pair_line", "pair_prompt", "pair_completion", "pair_split"):
            column = getattr(batch, name)
            setattr(batch, name, [column[i] for i in keep])
        for line in bad:
            batch.skipped_pairs.pop(line, None)
        texts = ["" if text_line.get(i) in bad else t for i, t in enumerate(batch.texts)]
        return self.encode_many(texts)

    def _why(self, text: str, exc: Exception) -> str:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.loaded.word_level:
            vocab = self.loaded.vocab
            for word in text.split():
                if word not in vocab:
                    return (
                        f"word {word!r} is not in the vocabulary {self.loaded.path}"
                        f" ({first}); add it to the vocabulary or fix the text"
                    )
        return f"the tokenizer cannot encode this line ({first})"


# --- articles --------------------------------------------------------------------------------------


@dataclass
class Articles:
    """A batch's token stream and the articles in it."""

    ids: np.ndarray
    types: np.ndarray
    start: np.ndarray  # non-empty articles only
    length: np.ndarray
    line: np.ndarray  # batch line index of each article
    line_tokens: np.ndarray  # tokens per batch line
    pairs: int


def build_articles(encoded: Encoded, special: SpecialTokens, attention_pair: bool) -> Articles:
    """Lay out every pair as prompt (0), completion (1), eos (1) and mark separators (3)."""
    batch = encoded.batch
    flat = encoded.flat
    count = len(batch.pair_line)
    lines = np.zeros(batch.line_count, np.int64)
    if not count:
        empty = np.empty(0, np.int64)
        return Articles(np.empty(0, DTYPE), np.empty(0, DTYPE), empty, empty, empty, lines, 0)
    prompt = np.asarray(batch.pair_prompt, np.int64)
    completion = np.asarray(batch.pair_completion, np.int64)
    pair_line = np.asarray(batch.pair_line, np.int64)

    def segments(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        present = index >= 0
        safe = np.where(present, index, 0)
        if not len(encoded.text_start):
            return np.zeros(count, np.int64), np.zeros(count, np.int64)
        return (
            np.where(present, encoded.text_start[safe], 0),
            np.where(present, encoded.text_len[safe], 0),
        )

    p_start, p_len = segments(prompt)
    c_start, c_len = segments(completion)
    flat_ext = np.append(flat, np.asarray([special.eos_id], DTYPE))

    def last_is(start: np.ndarray, length: np.ndarray, token: int) -> np.ndarray:
        return (length > 0) & (flat_ext[np.maximum(start + length - 1, 0)] == token)

    # A trailing eos of each text goes (one eos is appended per pair); a leading bos of the
    # completion goes when a prompt precedes it.
    p_len = p_len - last_is(p_start, p_len, special.eos_id)
    if special.bos_id is not None:
        lead = (
            (prompt >= 0)
            & (c_len > 0)
            & (flat_ext[np.minimum(c_start, len(flat))] == special.bos_id)
        )
        c_start = c_start + lead
        c_len = c_len - lead
    c_len = c_len - last_is(c_start, c_len, special.eos_id)
    e_len = ((p_len + c_len) > 0).astype(np.int64)

    piece_start = np.stack([p_start, c_start, np.full(count, len(flat), np.int64)], axis=1).ravel()
    piece_len = np.stack([p_len, c_len, e_len], axis=1).ravel()
    piece_type = np.tile(np.asarray([0, 1, 1], DTYPE), count)
    total = int(piece_len.sum())
    out_start = np.cumsum(piece_len) - piece_len
    gather = np.repeat(piece_start - out_start, piece_len) + np.arange(total, dtype=np.int64)
    ids = flat_ext[gather]
    types = np.repeat(piece_type, piece_len)

    pair_len = p_len + c_len + e_len
    pair_end = np.cumsum(pair_len)
    if attention_pair:
        types[pair_end[pair_len > 0] - 1] = TokenType.SEPARATOR
    # An article ends after a pair split off by --packing-boundary and after a line's last pair.
    split = np.asarray(batch.pair_split, bool)
    ends = split.copy()
    ends[:-1] |= pair_line[1:] != pair_line[:-1]
    ends[-1] = True
    article_end = pair_end[ends]
    article_start = np.concatenate([[0], article_end[:-1]])
    article_len = article_end - article_start
    article_line = pair_line[ends]
    nonempty = article_len > 0
    # As in the reference, only a line's last article gets a separator; articles split off by
    # --packing-boundary end in a separator only with --attention-boundary prompt_completion_pair.
    line_final = ~split[ends] & nonempty
    types[article_end[line_final] - 1] = TokenType.SEPARATOR
    np.add.at(lines, pair_line, pair_len)
    return Articles(
        ids,
        types,
        article_start[nonempty],
        article_len[nonempty],
        article_line[nonempty],
        lines,
        count,
    )


# --- ledger ----------------------------------------------------------------------------------------


class Ledger:
    """One JSON line per input line: where its tokens went, or why they did not.

    Every record has the same keys (see the tokenize command's help); a line's record waits until
    the rows it reaches are resolved, since prompt-only rows are dropped only when they close.
    """

    def __init__(self, handle, seq_len: int, full: bool) -> None:
        self.handle = handle
        self.seq_len = seq_len
        self.full = full
        # Candidate row (from final_base on) -> written row, -1 when dropped. Rows that no
        # pending line refers to are forgotten, so memory does not grow with the input.
        self.final_row: list[int] = []
        self.final_base = 0
        self.pending: list[tuple[dict, list[list[int]]]] = []

    def rows_resolved(self, keep: np.ndarray, written_before: int) -> None:
        numbers = np.where(keep, written_before + np.cumsum(keep) - 1, -1)
        self.final_row.extend(numbers.tolist())

    def add_batch(self, batch: Batch, articles: Articles, placement: Placement) -> None:
        per_line: dict[int, list[tuple[int, ...]]] = {}
        columns = (
            placement.row,
            placement.offset,
            placement.kept,
            placement.cut_left,
            placement.cut_right,
            placement.dropped,
        )
        for line, *fate in zip(articles.line.tolist(), *(c.tolist() for c in columns), strict=True):
            per_line.setdefault(line, []).append(fate)
        line_tokens = articles.line_tokens.tolist()
        for index in range(batch.line_count):
            segments: list[list[int]] = []
            cut_left = cut_right = too_long = 0
            for row, offset, kept, left, right, dropped in per_line.get(index, ()):
                cut_left += left
                cut_right += right
                too_long += dropped
                segments.extend(self._segments(row, offset, kept))
            rejected = batch.rejected.get(index)
            # status, reason, rows and dropped_prompt_only_row wait for the rows to resolve.
            record: dict[str, object] = {
                "input": batch.source,
                "line": batch.first_line + index,
                "status": "rejected" if rejected else None,
                "reason": rejected[0] if rejected else None,
                "tokens": line_tokens[index],
                "rows": [],
                "cut_left": cut_left,
                "cut_right": cut_right,
                "dropped_too_long": too_long,
                "dropped_prompt_only_row": 0,
                "pairs_skipped_prompt_only": batch.skipped_pairs.get(index, 0),
            }
            self.pending.append((record, segments))
        self.flush()

    def _segments(self, row: int, offset: int, kept: int) -> list[list[int]]:
        if row < 0 or not kept:
            return []
        if not self.full:
            return [[row, offset, kept]]
        out = []
        while kept:
            count = min(kept, self.seq_len - offset)
            out.append([row, offset, count])
            kept -= count
            row, offset = row + 1, 0
        return out

    def flush(self, final: bool = False) -> None:
        resolved = self.final_base + len(self.final_row)
        done = 0
        for record, segments in self.pending:
            if not final and any(seg[0] >= resolved for seg in segments):
                break
            done += 1
            self._finish(record, segments)
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        del self.pending[:done]
        needed = min(
            (seg[0] for _, segments in self.pending for seg in segments[:1]), default=resolved
        )
        if needed > self.final_base:
            del self.final_row[: needed - self.final_base]
            self.final_base = needed

    def _finish(self, record: dict, segments: list[list[int]]) -> None:
        rows = []
        lost = 0
        for row, offset, count in segments:
            final = self.final_row[row - self.final_base]
            if final < 0:
                lost += count
            else:
                rows.append([final, offset, count])
        record["rows"] = rows
        record["dropped_prompt_only_row"] = lost
        if record["status"] == "rejected":
            return
        placed = sum(r[2] for r in rows)
        tokens = record["tokens"]
        if tokens == 0:
            record["status"] = "dropped"
            record["reason"] = "prompt_only" if record["pairs_skipped_prompt_only"] else "empty"
        elif placed == 0:
            record["status"] = "dropped"
            record["reason"] = "too_long" if record["dropped_too_long"] else "prompt_only_row"
        elif placed == tokens:
            record["status"] = "packed"
        elif lost:
            record["status"] = "partly_dropped"
        else:
            record["status"] = "truncated"


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


def _check_targets(
    inputs: list[str],
    output: str | Path,
    ledger_path: str | Path | None,
    rejects_path: str | Path | None,
) -> None:
    """Refuse to write onto an input, or two outputs onto one file: each output is renamed into
    place at the end, which would replace the input (or the other output) with it."""
    taken = {Path(path).resolve(): f"the input {path}" for path in inputs if path != "-"}
    for flag, path in (
        ("-o", output),
        ("--ledger", ledger_path),
        ("--skip-bad-lines", rejects_path),
    ):
        if path is None:
            continue
        key = Path(path).resolve()
        if key in taken:
            raise OptionError(f"{flag} {path} is also {taken[key]}; write it to another file")
        taken[key] = flag


def tokenize_files(
    inputs: list[str],
    output: str | Path,
    tokenizer: LoadedTokenizer,
    options: TokenizeOptions,
    *,
    provenance: Provenance | None = None,
    ledger_path: str | Path | None = None,
    rejects_path: str | Path | None = None,
    advance: Callable[[int], None] = lambda n: None,
    batch_lines: int = 2048,
    batch_bytes: int = 1 << 19,
    encoders: int = 2,
) -> Metrics:
    """Tokenize `inputs` into the shard `output`; return the metrics.

    Nothing is left at `output` (or the ledger / rejects paths) unless the whole run succeeds.
    Bad lines raise InputError unless `rejects_path` is given, where they are written instead.
    """
    options.check()
    check_inputs(inputs)
    _check_targets(inputs, output, ledger_path, rejects_path)
    formats = [input_format(path, options.input_format) for path in inputs]
    special = special_tokens(tokenizer, options.eos_token, options.pad_token)
    skip_bad = rejects_path is not None
    metrics = Metrics(seq_len=options.seq_len)
    packer = Packer(options.packing, options.seq_len, special.pad_id)
    encoder = Encoder(tokenizer)
    names = (INPUT_IDS, TOKEN_TYPE_IDS) if options.write_types else (INPUT_IDS,)
    attention_pair = options.attention_boundary == "prompt_completion_pair"

    stop = threading.Event()
    parsed: queue.Queue = queue.Queue(maxsize=4)
    encoded_q: queue.Queue = queue.Queue(maxsize=4)
    source = batches(
        inputs,
        formats,
        options,
        batch_lines=batch_lines,
        batch_bytes=batch_bytes,
        advance=advance,
        keep_raw=skip_bad,
    )
    with contextlib.ExitStack() as stack:
        threads = [_stage(source, parsed, stop)]
        encoded = _ordered_map(encoder, _drain(parsed, stop), encoders)
        threads.append(_stage(encoded, encoded_q, stop))

        def shutdown() -> None:
            stop.set()
            for thread in threads:
                thread.join()

        stack.callback(shutdown)
        ledger = rejects = None
        if ledger_path is not None:
            temporary = stack.enter_context(atomic_path(ledger_path))
            handle = stack.enter_context(open(temporary, "w", encoding="utf-8"))
            ledger = Ledger(handle, options.seq_len, packer.style == "full")
        if rejects_path is not None:
            temporary = stack.enter_context(atomic_path(rejects_path))
            rejects = stack.enter_context(open(temporary, "wb"))
        writer = stack.enter_context(
            ShardWriter(output, options.seq_len, datasets=names, provenance=provenance)
        )

        def emit(result: PackResult) -> None:
            ids, types = result.ids, result.types
            if not len(ids):
                return
            if options.keep_prompt_only:
                keep = np.ones(len(ids), bool)
            else:
                keep = (types == TokenType.COMPLETION).any(axis=1)
            if ledger is not None:
                ledger.rows_resolved(keep, metrics.rows)
            if not keep.all():
                gone = types[~keep]
                metrics.rows_dropped_prompt_only += len(gone)
                metrics.tokens_dropped_prompt_only_rows += int((gone != TokenType.PADDING).sum())
                ids, types = ids[keep], types[keep]
            if not len(ids):
                return
            for kind, count in enumerate(type_counts(types)[: len(TokenType)].tolist()):
                metrics.tokens_by_type[kind] += count
            metrics.rows += len(ids)
            if options.write_types:
                writer.append(input_ids=ids, token_type_ids=types)
            else:
                writer.append(input_ids=ids)

        for encoded in _drain(encoded_q, stop):
            batch = encoded.batch
            metrics.lines += batch.line_count
            if batch.rejected:
                if not skip_bad:
                    index = min(batch.rejected)
                    why = batch.rejected[index][0]
                    # The hint is added here, not to the reason: the ledger records reasons
                    # of lines that --skip-bad-lines did set aside.
                    raise InputError(
                        f"{batch.source}:{batch.first_line + index}: {why}"
                        " (or pass --skip-bad-lines REJECTS to set bad lines aside)"
                    )
                metrics.lines_rejected += len(batch.rejected)
                for _, (_, raw) in sorted(batch.rejected.items()):
                    rejects.write(raw if raw.endswith(b"\n") else raw + b"\n")
            metrics.pairs_skipped_prompt_only += sum(batch.skipped_pairs.values())
            articles = build_articles(encoded, special, attention_pair)
            metrics.pairs += articles.pairs
            metrics.articles += len(articles.start)
            metrics.input_tokens += int(articles.length.sum())
            result = packer.add(articles.ids, articles.types, articles.start, articles.length)
            placement = result.placement
            metrics.tokens_truncated_left += int(placement.cut_left.sum())
            metrics.tokens_truncated_right += int(placement.cut_right.sum())
            metrics.tokens_dropped_too_long += int(placement.dropped.sum())
            emit(result)
            if ledger is not None:
                ledger.add_batch(batch, articles, placement)
        emit(packer.finish())
        if ledger is not None:
            ledger.flush(final=True)
        if metrics.rows == 0:
            sources = ", ".join("<stdin>" if path == "-" else path for path in inputs)
            raise InputError(
                f"{sources}: no rows to write (lines: {metrics.lines}, rejected:"
                f" {metrics.lines_rejected}, prompt-only pairs skipped:"
                f" {metrics.pairs_skipped_prompt_only}); check the input, --completion-key, or"
                " pass --keep-prompt-only-sequences"
            )
    return metrics
