"""Text patterns: decode a block's article bodies at once, find text in them, map it back to tokens.

Decoding is vectorised. Every id has its text as UTF-8 bytes in one buffer (a table of offsets and
lengths), so a part's bodies become one byte string by a single gather, with a 0 byte closing each
article; one UTF-8 decode gives the text and the code points give each character's byte length,
from which every token's character span follows by a binary search. A character split between two
tokens (byte-level BPE splits multi-byte characters) belongs to both. Bytes that are not UTF-8
decode as one character each (surrogateescape), so offsets stay exact.

Byte-level BPE vocabularies (GPT-2 and its descendants) give the bytes of every id directly. Any
other tokenizer is asked to decode each id the first time it is seen (a cache): the text an id
adds after another token, with the whitespace a decoder puts between tokens (word-level
vocabularies, WordPiece, SentencePiece's leading space when the token is decoded alone) kept
outside the token's own characters and left out before an article's first token.

A token is inside a character range [a, b) when it has a character there (`inside`), or only when
all of its characters are there (`exact`); the tokens in between are the range's seams.
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import decoders

from tokentype_cli.errors import RuleError
from tokentype_cli.rules.parse import TextPattern
from tokentype_cli.tokenizer_loader import LoadedTokenizer

# Closes every article in a part's text: a match of a pattern without it never spans two.
ARTICLE_END = "\x00"


@functools.cache
def _byte_decoder() -> dict[int, int]:
    """GPT-2's byte-level alphabet: the code point standing for each byte, to that byte."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(chars, printable, strict=True))


class TokenTexts:
    """The UTF-8 bytes of every id, as a table a whole block is gathered through."""

    def __init__(
        self,
        vocab_size: int,
        describe: str = "the tokenizer",
        fill: Callable[[list[int]], list[tuple[bytes, int]]] | None = None,
    ) -> None:
        self.vocab_size = vocab_size
        self.describe = describe  # for messages: which tokenizer could not decode an id
        self._fill = fill
        self._length = np.zeros(vocab_size, dtype=np.int64)
        self._offset = np.zeros(vocab_size, dtype=np.int64)
        self._lead = np.zeros(vocab_size, dtype=np.int64)
        # Characters starting in each piece (UTF-8 bytes other than continuation bytes), in its
        # joiner, and whether the token's own bytes start inside a character: with them a
        # valid UTF-8 part needs no work per byte.
        self._starts = np.zeros(vocab_size, dtype=np.int64)
        self._lead_starts = np.zeros(vocab_size, dtype=np.int64)
        self._inside_char = np.zeros(vocab_size, dtype=bool)
        # Valid UTF-8 on its own and starting a character: then its bytes decode to its own
        # characters whatever stands around it (a decoder never joins a lead byte to what came
        # before). Only runs of the other pieces (byte-level BPE's split characters and stray
        # bytes) need decoding byte by byte.
        self._whole = np.ones(vocab_size, dtype=bool)
        self._known = np.zeros(vocab_size, dtype=bool)
        self._chunks: list[bytes] = []
        self._size = 0
        self._buffer = np.zeros(0, dtype=np.uint8)

    @classmethod
    def from_pieces(
        cls, pieces: Sequence[bytes], lead: Sequence[int] | None = None, describe: str = "pieces"
    ) -> TokenTexts:
        """Id i is `pieces[i]`, whose first `lead[i]` bytes join it to the token before."""
        texts = cls(len(pieces), describe)
        leads = [0] * len(pieces) if lead is None else list(lead)
        texts._add(list(range(len(pieces))), list(zip(pieces, leads, strict=True)))
        return texts

    @classmethod
    def for_tokenizer(cls, loaded: LoadedTokenizer) -> TokenTexts:
        """Byte strings from a byte-level vocabulary, else each id decoded when first seen."""
        tokenizer = loaded.tokenizer
        describe = str(loaded.path)
        if not isinstance(tokenizer.decoder, decoders.ByteLevel):
            return cls(loaded.vocab_size, describe, functools.partial(_decode_each, loaded))
        texts = cls(loaded.vocab_size, describe)
        added = tokenizer.get_added_tokens_decoder()
        plain = sorted((i, token) for token, i in loaded.vocab.items() if i not in added)
        # One translate for the whole vocabulary: each byte-level character becomes its byte.
        joined = "".join(token for _, token in plain).translate(_byte_decoder())
        try:
            data = joined.encode("latin-1")
        except UnicodeEncodeError:  # not byte-level after all: what the tokenizer makes of it
            texts._add([i for i, _ in plain], _decode_each(loaded, [i for i, _ in plain]))
        else:
            lengths = np.fromiter((len(t) for _, t in plain), np.int64, len(plain))
            texts._add_joined(np.array([i for i, _ in plain], np.int64), data, lengths)
        texts._add(list(added), [(token.content.encode(), 0) for token in added.values()])
        return texts

    def _add(self, ids: list[int], pieces: list[tuple[bytes, int]]) -> None:
        lengths = np.fromiter((len(piece) for piece, _ in pieces), np.int64, len(pieces))
        leads = np.fromiter((lead for _, lead in pieces), np.int64, len(pieces))
        self._add_joined(np.asarray(ids, np.int64), b"".join(p for p, _ in pieces), lengths, leads)

    def _add_joined(
        self, ids: np.ndarray, data: bytes, lengths: np.ndarray, leads: np.ndarray | None = None
    ) -> None:
        """Ids whose pieces are `data` cut into `lengths`, the first `leads` bytes a joiner."""
        offsets = np.cumsum(lengths) - lengths
        leads = np.zeros_like(lengths) if leads is None else np.minimum(leads, lengths)
        self._offset[ids] = self._size + offsets
        self._length[ids] = lengths
        self._lead[ids] = leads
        raw = np.frombuffer(data, dtype=np.uint8)
        starts = np.zeros(raw.size + 1, dtype=np.int64)
        np.cumsum((raw & 0xC0) != 0x80, out=starts[1:])
        self._starts[ids] = starts[offsets + lengths] - starts[offsets]
        self._lead_starts[ids] = starts[offsets + leads] - starts[offsets]
        own = leads < lengths
        self._inside_char[ids] = own & ((np.append(raw, 0)[offsets + leads] & 0xC0) == 0x80)
        self._whole[ids] = ~self._inside_char[ids] & np.fromiter(
            (
                _valid(data[a : a + n])
                for a, n in zip(offsets.tolist(), lengths.tolist(), strict=True)
            ),
            bool,
            len(ids),
        )
        self._known[ids] = True
        self._chunks.append(data)
        self._size += len(data)
        # One trailing byte keeps gathers in range when every id is empty.
        self._buffer = np.frombuffer(b"".join(self._chunks) + b"\0", dtype=np.uint8)

    @staticmethod
    def _offsets_per_byte(
        text: str,
        total: int,
        at: np.ndarray,
        joiner: np.ndarray,
        size: np.ndarray,
        last: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Token character offsets when some byte decoded as a character of its own.

        `at` is where each token's bytes start, `joiner` how many of them are not its own, and
        an article's closing byte follows each token marked `last`.
        """
        points = _code_points(text)
        widths = _widths(points)
        char_of_byte = np.repeat(np.arange(points.size, dtype=np.int64), widths)
        own_start = at + joiner
        own_end = at + size
        own = own_end > own_start
        start = char_of_byte[np.minimum(own_start, total - 1)]
        end = char_of_byte[np.maximum(own_end - 1, 0)] + 1
        return start, end, own, char_of_byte[own_end[last]]

    @staticmethod
    def _count_broken_runs(
        data: np.ndarray,
        broken: np.ndarray,
        at: np.ndarray,
        size: np.ndarray,
        last: np.ndarray,
        counted: np.ndarray,
        inside_char: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Characters starting in each token of the runs of broken pieces, found by decoding
        just those bytes (a 0 byte ends each run, as a whole piece or an article end would)."""
        tokens = np.flatnonzero(broken)
        sizes = size[tokens]
        ends = np.cumsum(sizes)
        begins = ends - sizes
        source = np.repeat(at[tokens] - begins, sizes) + np.arange(int(ends[-1]), dtype=np.int64)
        run_end = last[tokens] | np.append(tokens[1:] != tokens[:-1] + 1, True)
        local = np.insert(data[source], ends[run_end], 0)
        points = _code_points(local.tobytes().decode("utf-8", "surrogateescape"))
        widths = _widths(points)
        starts_char = np.zeros(local.size + 1, dtype=bool)
        starts_char[np.cumsum(widths) - widths] = True
        shift = np.cumsum(run_end) - run_end  # run ends (0 bytes) before each token
        first_byte = begins + shift
        cumulative = np.zeros(local.size + 1, dtype=np.int64)
        np.cumsum(starts_char[:-1], out=cumulative[1:])
        counted = counted.copy()
        inside_char = inside_char.copy()
        counted[tokens] = cumulative[first_byte + sizes] - cumulative[first_byte]
        inside_char[tokens] = (sizes > 0) & ~starts_char[first_byte]
        return counted, inside_char

    def text_of(self, token: int) -> str:
        """One id's text (its bytes as UTF-8, undecodable bytes escaped), for messages."""
        if not 0 <= token < self.vocab_size:
            return ""
        if not self._known[token] and self._fill is not None:
            self._add([token], self._fill([token]))
        start = int(self._offset[token] + self._lead[token])
        piece = self._buffer[start : int(self._offset[token] + self._length[token])].tobytes()
        return piece.decode("utf-8", "backslashreplace")

    def _check(self, ids: np.ndarray, row_of: Callable[[int], int]) -> None:
        if not ids.size:
            return
        if ids.min() >= 0 and ids.max() < self.vocab_size:
            bad = None
        else:
            bad = (ids < 0) | (ids >= self.vocab_size)
        if bad is not None:
            first = int(np.argmax(bad))
            raise RuleError(
                f"row {row_of(first)}: id {int(ids[first])} is outside the vocabulary of"
                f" {self.describe} (0..{self.vocab_size - 1}), so text patterns cannot decode it;"
                " pass the tokenizer the shard was made with"
            )
        if self._fill is not None and not self._known[ids].all():
            new = np.unique(ids[~self._known[ids]]).tolist()
            self._add(new, self._fill(new))

    def decode(
        self, ids: np.ndarray, article: np.ndarray, row_of: Callable[[int], int] = lambda t: t
    ) -> Decoded:
        """The text of consecutive article bodies, `article[t]` numbering token t's article.

        `row_of(t)` names the row of token t in the message about an id outside the vocabulary.
        """
        ids = np.asarray(ids)
        self._check(ids, row_of)
        count = ids.size
        if not count:
            empty = np.empty(0, dtype=np.int64)
            return Decoded("", empty, empty, empty, empty, empty)
        first = np.ones(count, dtype=bool)
        np.not_equal(article[1:], article[:-1], out=first[1:])
        last = np.append(first[1:], True)
        # Byte-level vocabularies have no joiners: no work for them.
        joined = bool(self._lead.any())
        lead = self._lead[ids] if joined else np.zeros(count, dtype=np.int64)
        skip = np.where(first, lead, 0) if joined else lead  # the joiner before an article
        size = self._length[ids] - skip
        ends = np.cumsum(size)
        begins = ends - size
        total = int(ends[-1])
        # One gather of every token's bytes, then a 0 byte closing each article; int32 indexes
        # when they fit halve the memory this pass moves.
        index = np.int32 if max(total, self._buffer.size) < 2**31 else np.int64
        source = np.repeat((self._offset[ids] + skip - begins).astype(index), size)
        source += np.arange(total, dtype=index)
        data = np.insert(self._buffer[source], ends[last], 0)
        text = data.tobytes().decode("utf-8", "surrogateescape")
        closed = np.cumsum(last) - last  # article closers before each token
        lead_starts = self._lead_starts[ids] if joined else lead
        skipped = np.where(first, lead_starts, 0) if joined else lead
        counted = self._starts[ids] - skipped  # characters starting in each token's bytes
        inside_char = self._inside_char[ids]
        broken = ~self._whole[ids]
        if broken.any():
            counted, inside_char = self._count_broken_runs(
                data, broken, begins + closed, size, last, counted, inside_char
            )
        before = np.cumsum(counted) - counted + closed
        if len(text) == int(counted.sum()) + int(np.count_nonzero(last)):
            # Counting where characters start per token places every token; a token starting
            # inside a character shares it with the token before.
            start = before + lead_starts - skipped - inside_char
            end = before + counted
            own = size > lead - skip
            closers = (before + counted)[last]
        else:
            start, end, own, closers = self._offsets_per_byte(
                text, data.size, begins + closed, lead - skip, size, last
            )
        # A token without bytes of its own takes the character its position falls in; the
        # searches in `inside` and `exact` need starts and ends that never decrease.
        end = np.where(own, end, start)
        np.maximum.accumulate(end, out=end)
        start = np.minimum.accumulate(start[::-1])[::-1]
        return Decoded(
            text=text,
            start=start,
            end=end,
            article_start=np.append(0, closers[:-1] + 1),
            article_end=closers,
            article_first=np.flatnonzero(first),
        )


def _valid(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _widths(points: np.ndarray) -> np.ndarray:
    """UTF-8 length of each code point; escaped bytes (U+DC80..U+DCFF) stand for one byte."""
    widths = (points >= 0x80).view(np.int8) + np.int8(1)
    widths += (points >= 0x800).view(np.int8)
    widths += (points >= 0x10000).view(np.int8)
    widths[(points >= 0xDC80) & (points <= 0xDCFF)] = 1
    return widths


def _code_points(text: str) -> np.ndarray:
    """The code points of `text`, escaped bytes (lone surrogates) included.

    numpy copies a str's code points as they are; encoding to UTF-32 instead calls the error
    handler once per lone surrogate, 150 times slower on text full of stray bytes.
    """
    points = np.array(text).reshape(1).view(np.uint32)
    if points.size != len(text):  # never seen; the slow way is always right
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return points


def _decode_each(loaded: LoadedTokenizer, ids: list[int]) -> list[tuple[bytes, int]]:
    """Each id's text after an anchor token, and how much of its start is the decoder's joiner."""
    decode = loaded.tokenizer.decode
    anchor = _anchor(loaded)
    before = decode([anchor], skip_special_tokens=False) if anchor is not None else ""
    pieces = []
    for i in ids:
        alone = decode([i], skip_special_tokens=False)
        piece = alone
        if anchor is not None:
            joined = decode([anchor, i], skip_special_tokens=False)
            if joined.startswith(before):
                piece = joined[len(before) :]
        lead = len(piece) - len(alone)
        joiner = piece[:lead] if lead > 0 and piece.endswith(alone) else ""
        pieces.append((piece.encode(), len(joiner.encode()) if joiner.isspace() else 0))
    return pieces


def _anchor(loaded: LoadedTokenizer) -> int | None:
    """An ordinary token to decode others after: a decoder treats an article's first token apart."""
    added = set(loaded.tokenizer.get_added_tokens_decoder())
    for i in sorted(set(loaded.vocab.values()) - added):
        if loaded.tokenizer.decode([i]).strip().isalnum():
            return i
    return None


@dataclass
class Decoded:
    """A part's article bodies as one text, and where each token and article sits in it."""

    text: str
    start: np.ndarray  # per body token: its first character
    end: np.ndarray  # per body token: one past its last character
    article_start: np.ndarray  # per article with a body, in order: its first character
    article_end: np.ndarray  # ... and the ARTICLE_END closing it
    article_first: np.ndarray  # ... and its first body token

    def inside(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token ranges [lo, hi) having a character in [a, b) (an empty token: sitting there)."""
        lo = np.searchsorted(np.maximum(self.end, self.start + 1), a, side="right")
        hi = np.searchsorted(self.start, b, side="left")
        # An empty range (an empty regular-expression match) has no character to be inside.
        return lo, np.where(b > a, np.maximum(hi, lo), lo)

    def exact(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token ranges [lo, hi) with every character in [a, b)."""
        lo = np.searchsorted(self.start, a, side="left")
        hi = np.minimum(
            np.searchsorted(self.end, b, side="right"), np.searchsorted(self.start, b, side="left")
        )
        return lo, np.maximum(hi, lo)


@functools.cache
def compile_patterns(patterns: tuple[TextPattern, ...]) -> tuple[Matcher, bool]:
    """One expression finding any of `patterns`, and whether it is plain text (fast path).

    `^` and `$` match at line starts and ends (MULTILINE), as the article text is multi-line.
    Regular expressions run on RE2 (linear time: no pattern can hang) where it means what
    Python's `re` means; the rest (backreferences, lookarounds, Unicode classes such as `\\w`)
    run on `re` with a time limit per article.
    """
    expression = "|".join(p.expression() for p in patterns)
    literal = all(not p.regex and ARTICLE_END not in p.source for p in patterns)
    compiled = re.compile(expression, re.MULTILINE)
    if literal:
        return Matcher(compiled), literal
    described = ", ".join(p.describe() for p in patterns if p.regex)
    # After an empty match Python's finditer still takes a non-empty one at the same place
    # ("a*|:" on ":" finds (0, 0) then (0, 1)); RE2's steps past it. A pattern that can match
    # nothing keeps Python's meaning, under the time limit.
    linear = None if compiled.match("") is not None else _linear_time(expression)
    return Matcher(compiled, linear, described), literal


# Escapes and classes whose meaning in RE2 differs from Python's (ASCII \w, \b, \d, \s;
# POSIX classes): such patterns keep Python's meaning, under a time limit.
_NOT_FOR_RE2 = re.compile(r"\\[wWbBdDsS]|\[:")
REGEX_SECONDS = 5.0  # the longest one regular expression may search one article


def _linear_time(expression: str):
    """`expression` compiled by RE2, or None where RE2 lacks it or would read it otherwise."""
    if _NOT_FOR_RE2.search(expression):
        return None
    import re2  # heavy, and only rules with regular expressions need it

    options = re2.Options()
    options.log_errors = False  # an unsupported pattern falls back; nothing for stderr
    options.max_mem = 64 << 20
    try:
        return re2.compile("(?m)" + expression, options)
    except (re2.error, UnicodeEncodeError):  # RE2 reads UTF-8: no lone surrogates
        return None


class _Expired(Exception):
    """A regular expression's time on one article ran out."""


class Matcher:
    """search/finditer over a compiled pattern: RE2's where there is one, else Python's, bounded
    in time when it is a regular expression (`(a+)+$` on a run of a's would never return)."""

    def __init__(self, pattern: re.Pattern[str], linear=None, bounded: str | None = None) -> None:
        self.pattern = pattern
        self.linear = linear
        self.bounded = bounded  # the patterns as written, for the message; None: unbounded

    def search(self, text: str, pos: int = 0, endpos: int | None = None):
        endpos = len(text) if endpos is None else endpos
        if self.linear is not None:
            with contextlib.suppress(UnicodeEncodeError):  # text holding undecodable bytes
                return self.linear.search(text, pos, endpos)
        with self._limit():
            return self.pattern.search(text, pos, endpos)

    def spans(self, text: str) -> list[tuple[int, int]]:
        if self.linear is not None:
            with contextlib.suppress(UnicodeEncodeError):
                return [m.span() for m in self.linear.finditer(text)]
        with self._limit():
            return [m.span() for m in self.pattern.finditer(text)]

    @contextlib.contextmanager
    def _limit(self) -> Iterator[None]:
        if self.bounded is None or threading.current_thread() is not threading.main_thread():
            yield
            return

        def expire(signum, frame) -> None:
            raise _Expired

        # Python's matcher checks for signals as it runs, so a timer's signal stops it.
        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, REGEX_SECONDS)
        try:
            yield
        except _Expired:
            raise RuleError(
                f"{self.bounded}: the regular expression ran past {REGEX_SECONDS:g} s on one"
                " article (it backtracks without end on this text); rewrite it without nested"
                " repeats or backreferences, or without \\w, \\b, \\d, \\s (then it runs"
                " in linear time)"
            ) from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def find_text(
    patterns: tuple[TextPattern, ...], decoded: Decoded, *, first_only: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, stop, article) of the matches, left to right without overlap, in every article.

    Articles are positions in `decoded`'s article arrays. `first_only` keeps one per article.
    """
    expression, literal = compile_patterns(patterns)
    text = decoded.text
    bounds = zip(decoded.article_start.tolist(), decoded.article_end.tolist(), strict=True)
    spans: list[tuple[int, int]]
    articles: list[int] | np.ndarray
    if literal and not first_only:
        # Plain text never matches the ARTICLE_END between articles: one scan of the whole part.
        spans = expression.spans(text)
        starts = np.array([s for s, _ in spans], dtype=np.int64)
        articles = np.searchsorted(decoded.article_start, starts, side="right") - 1
    elif literal:
        spans, articles = [], []
        for number, (a, b) in enumerate(bounds):
            found = expression.search(text, a, b)
            if found is not None:
                spans.append(found.span())
                articles.append(number)
    else:
        # A regular expression sees one article at a time, so ^, \A, $, \Z and lookarounds
        # stop at its edges.
        spans, articles = [], []
        for number, (a, b) in enumerate(bounds):
            body = text[a:b]
            if first_only:
                found = expression.search(body)
                hits = [] if found is None else [found.span()]
            else:
                hits = expression.spans(body)
            spans.extend((a + s, a + e) for s, e in hits)
            articles.extend([number] * len(hits))
    found_spans = np.array(spans, dtype=np.int64).reshape(-1, 2)
    return found_spans[:, 0], found_spans[:, 1], np.asarray(articles, dtype=np.int64)
