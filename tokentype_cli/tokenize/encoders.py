"""The encoder layer: a batch of texts to one flat id array, by `tokenizers`, tiktoken or
sentencepiece.

`build_encoder(tokenizer, "auto")` returns tiktoken's when `fast_bpe` shows it gives the same ids
(byte-level BPE), sentencepiece's when `fast_spm` does (SentencePiece-style BPE with byte
fallback), else `tokenizers`'. All have `encode(texts)` and `encode_with_offsets(texts)` (per-token
character offsets in each text, for work that types text by character), either without the
post-processor's ids (`add_special_tokens=False`, as conversations are encoded), and
`for_conversations(tokenizer)` (the same encoder reading special tokens in text as that tokenizer
does), and pickle, so worker processes can be handed one or build their own: building tiktoken's
(checks, ranks and tiktoken's own set-up) takes about a third of a second for GPT-2's 50k tokens,
about a second for 150k, a few for Llama-3's 280k merges (counting every split of every token);
sentencepiece's about half a second for Llama-2's 32k pieces and 61k merges.
"""

from __future__ import annotations

import copy
import functools
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, Self, TypeVar

import numpy as np

from tokentype_cli.errors import EncoderCheckError, OptionError
from tokentype_cli.schema.storage import DTYPE
from tokentype_cli.tokenize.fast_bpe import MARK, AddedToken, TiktokenPlan, plan_tiktoken
from tokentype_cli.tokenize.fast_spm import SPACE, SentencePiecePlan, plan_sentencepiece
from tokentype_cli.tokenize.options import ENCODERS
from tokentype_cli.tokenizer_loader import LoadedTokenizer

PlanT = TypeVar("PlanT")

# `tokenizers` strips these around lstrip/rstrip tokens: Rust's \s, Unicode White_Space.
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_ASCII_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_SEPARATOR = MARK + "/\x00"  # ends every text in a batch's joined string


@dataclass
class EncodedTexts:
    """The ids of a list of texts, concatenated, and where each text's run is."""

    ids: np.ndarray  # int32
    length: np.ndarray  # int64, one per text
    # With encode_with_offsets: each token's [start, end) in its own text, in characters.
    char_start: np.ndarray | None = None
    char_end: np.ndarray | None = None

    @property
    def start(self) -> np.ndarray:
        return np.cumsum(self.length) - self.length


class TextEncoder(Protocol):
    """What the tokenize pipeline (and chat, and dataset workers) call to turn texts into ids."""

    name: str  # "tokenizers" or "tiktoken", for metrics and provenance

    def encode(self, texts: Sequence[str], add_special_tokens: bool = True) -> EncodedTexts:
        """Every text's ids, as `tokenizers`' encode_batch (with the post-processor's ids unless
        add_special_tokens is False)."""
        ...

    def encode_with_offsets(
        self, texts: Sequence[str], add_special_tokens: bool = True
    ) -> EncodedTexts:
        """The same ids, with each token's character offsets in its text."""
        ...

    def for_conversations(self, loaded: LoadedTokenizer) -> TextEncoder:
        """This encoder reading special tokens in text as `loaded.tokenizer` does (conversations
        keep a template's <|im_end|> one token under --split-special-tokens)."""
        ...


class TokenizersEncoder:
    """`tokenizers` itself: the reference, for every tokenizer."""

    name = "tokenizers"
    declined: str | None = None  # under auto: the check the fast encoder failed
    declined_by: str | None = None  # and that encoder: tiktoken or sentencepiece

    def __init__(self, loaded: LoadedTokenizer) -> None:
        self.tokenizer = loaded.tokenizer
        # The reference encodes without the tokenizer file's truncation or padding settings.
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    def encode(self, texts: Sequence[str], add_special_tokens: bool = True) -> EncodedTexts:
        # encode_batch_fast (tokenizers 0.20+) skips the offsets nobody reads here.
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        return self._flatten(encode(list(texts), add_special_tokens=add_special_tokens))

    def encode_with_offsets(
        self, texts: Sequence[str], add_special_tokens: bool = True
    ) -> EncodedTexts:
        # encode_batch_fast does not track offsets.
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        result = self._flatten(encodings)
        total = len(result.ids)
        offsets = itertools.chain.from_iterable(e.offsets for e in encodings)
        pairs = np.fromiter(itertools.chain.from_iterable(offsets), np.int64, 2 * total)
        result.char_start = pairs[0::2].copy()
        result.char_end = pairs[1::2].copy()
        return result

    def for_conversations(self, loaded: LoadedTokenizer) -> TokenizersEncoder:
        return self if loaded.tokenizer is self.tokenizer else TokenizersEncoder(loaded)

    @staticmethod
    def _flatten(encodings: list) -> EncodedTexts:
        length = np.fromiter((len(e) for e in encodings), np.int64, len(encodings))
        total = int(length.sum())
        ids = np.fromiter(
            itertools.chain.from_iterable(e.ids for e in encodings), dtype=DTYPE, count=total
        )
        return EncodedTexts(ids, length)

    def __getstate__(self) -> dict:
        # The flag lives outside the tokenizer's JSON, which is what pickling keeps.
        return {
            "tokenizer": self.tokenizer,
            "split": self.tokenizer.encode_special_tokens,
            "declined": self.declined,
            "declined_by": self.declined_by,
        }

    def __setstate__(self, state: dict) -> None:
        self.tokenizer = state["tokenizer"]
        self.tokenizer.encode_special_tokens = state["split"]
        self.declined = state["declined"]
        self.declined_by = state.get("declined_by")


class _Unsure(Exception):
    """The fast path cannot settle this batch exactly; `tokenizers` encodes it."""


class _Proven(Generic[PlanT]):
    """A fast encoder whose checks passed, with `tokenizers` for what it cannot settle. It
    pickles as its plan (plain data), and is rebuilt from it in a worker process."""

    def __init__(self, plan: PlanT, fallback: TokenizersEncoder) -> None:
        self.plan = plan
        self.fallback = fallback
        self._build()

    def _build(self) -> None:
        raise NotImplementedError

    def __getstate__(self) -> dict:
        return {"plan": self.plan, "fallback": self.fallback}

    def __setstate__(self, state: dict) -> None:
        self.plan = state["plan"]
        self.fallback = state["fallback"]
        self._build()

    def for_conversations(self, loaded: LoadedTokenizer) -> Self:
        if loaded.tokenizer is self.fallback.tokenizer:
            return self
        # Shares the fast encoder (tiktoken's Encoding, sentencepiece's processor): thread-safe.
        sibling = copy.copy(self)
        sibling.fallback = self.fallback.for_conversations(loaded)
        return sibling


class TiktokenEncoder(_Proven[TiktokenPlan]):
    """tiktoken with the checks of `fast_bpe` passed: the same ids, faster.

    A batch becomes one string, its texts joined by a separator tiktoken treats as a special
    token, so one call (which releases the GIL) encodes it. Added tokens are found here as
    `tokenizers` finds them and handed to tiktoken as special-token markers with ids of their own
    (an added token may share its id with a vocabulary token), mapped back after. A batch this
    cannot settle exactly (text holding the marker characters or lone surrogates, a single_word
    token beside a non-ASCII character; for offsets also text NFC changes) goes to `tokenizers`.
    """

    name = "tiktoken"

    def _build(self) -> None:
        import tiktoken

        plan = self.plan
        # Marker k stands for added token k; the separator comes last.
        self.base = max([*plan.ranks.values(), *(t.id for t in plan.added)]) + 1
        self.separator_id = self.base + len(plan.added)
        self.added_ids = np.asarray([t.id for t in plan.added], DTYPE)
        # tiktoken's ids (ranks, then markers, then the separator) to tokenizers' ids, in one take.
        ranks = np.asarray(plan.id_of_rank, np.int64) if plan.id_of_rank else np.arange(self.base)
        self.to_id = np.concatenate(
            [np.pad(ranks, (0, self.base - len(ranks)), constant_values=-1), self.added_ids, [-1]]
        ).astype(DTYPE)
        self.missing = None
        if plan.missing_bytes:
            self.missing = np.zeros(256, bool)
            self.missing[list(plan.missing_bytes)] = True
        self.index_of = {t.id: k for k, t in enumerate(plan.added)}
        specials = {_marker(k): self.base + k for k in range(len(plan.added))}
        specials[_SEPARATOR] = self.separator_id
        self.allowed = frozenset(specials)
        self.encoding = tiktoken.Encoding(
            f"tokentype-{plan.pattern_name}",
            pat_str=plan.pattern,
            mergeable_ranks=plan.ranks,
            special_tokens=specials,
        )
        self.byte_length: np.ndarray | None = None  # built on the first offsets request
        self.passes = []  # (regex, content -> token): first the unnormalized tokens, then the rest
        for normalized in (False, True):
            tokens = [t for t in plan.added if t.normalized == normalized]
            self.passes.append(_matcher(tokens) if tokens else None)
        everything = _matcher(list(plan.added)) if plan.added else None
        self.any_added = everything[0].search if everything else None
        if plan.nfc:
            from tokenizers import normalizers

            self.nfc = normalizers.NFC().normalize_str
        self.rewrites = plan.nfc or plan.add_prefix_space or bool(plan.added)
        # Added tokens with no flags, all found in one pass (all normalized or none), in text
        # nothing else rewrites: one regex substitution per text puts their markers in, as a
        # chat template's special tokens need, instead of the piece-by-piece split.
        self.substitute: Callable[[str], str] | None = None
        plain = not any(t.lstrip or t.rstrip or t.single_word for t in plan.added)
        one_pass = len({t.normalized for t in plan.added}) == 1
        if everything and plain and one_pass and not plan.nfc and not plan.add_prefix_space:
            regex, by_content = everything
            markers = {c: _marker(self.index_of[t.id]) for c, t in by_content.items()}
            self.substitute = functools.partial(regex.sub, lambda m: markers[m.group()])

    def encode(self, texts: Sequence[str], add_special_tokens: bool = True) -> EncodedTexts:
        texts = list(texts)
        held = self._holding_missing_bytes(texts)
        if held is not None:
            return _merge_encoded(
                held,
                self.fallback.encode([t for t, h in zip(texts, held, strict=True) if h],
                                     add_special_tokens),
                self.encode([t for t, h in zip(texts, held, strict=True) if not h],
                            add_special_tokens),
            )  # fmt: skip
        try:
            prepared = self._prepare(texts) if self.rewrites else texts
            ids = self._encode_joined(texts, prepared)
        except (_Unsure, UnicodeEncodeError):
            return self.fallback.encode(texts, add_special_tokens)
        keep = ids != self.separator_id
        ends = np.flatnonzero(~keep)
        length = np.diff(ends, prepend=-1) - 1
        encoded = EncodedTexts(self._hf_ids(ids[keep]), length)
        return self._frame(encoded) if add_special_tokens else encoded

    def encode_with_offsets(
        self, texts: Sequence[str], add_special_tokens: bool = True
    ) -> EncodedTexts:
        """The ids with character offsets, tokenizers' way: a token holding part of a character
        spans the whole character; an added token spans the whitespace it strips."""
        texts = list(texts)
        if self.plan.trim_offsets or self.plan.add_prefix_space:
            # offsets tiktoken has no part in
            return self.fallback.encode_with_offsets(texts, add_special_tokens)
        try:
            segments = [self._segments(text, exact=True) for text in texts]
            prepared = ["".join(self._render(p) for p, _, _ in pieces) for pieces in segments]
            ids = self._encode_joined(texts, prepared)
        except (_Unsure, UnicodeEncodeError):
            return self.fallback.encode_with_offsets(texts, add_special_tokens)
        joined = _SEPARATOR.join(prepared) + _SEPARATOR
        starts, ends = self._joined_offsets(ids, joined)
        # Every piece of the joined string: where it starts there and its span in its text.
        at, first, last, marked = [], [], [], []
        position = 0
        for pieces in segments:
            for piece, start, stop in pieces:
                at.append(position)
                first.append(start)
                last.append(stop)
                marked.append(not isinstance(piece, str))
                position += len(self._render(piece))
            position += len(_SEPARATOR)
        at_, first_, last_ = (np.asarray(x, np.int64) for x in (at, first, last))
        keep = ids != self.separator_id
        piece = np.searchsorted(at_, starts[keep], side="right") - 1
        marked_ = np.asarray(marked, bool)[piece]
        char_start = np.where(marked_, first_[piece], first_[piece] + starts[keep] - at_[piece])
        char_end = np.where(marked_, last_[piece], first_[piece] + ends[keep] - at_[piece])
        length = np.diff(np.flatnonzero(~keep), prepend=-1) - 1
        encoded = EncodedTexts(self._hf_ids(ids[keep]), length, char_start, char_end)
        return self._frame(encoded) if add_special_tokens else encoded

    def _holding_missing_bytes(self, texts: list[str]) -> list[bool] | None:
        """Which texts hold a byte the vocabulary has no token for (None: none does)."""
        if self.missing is None or not texts:
            return None
        if not self.missing[:0x80].any() and all(map(str.isascii, texts)):
            return None
        try:
            held = [bool(self.missing[np.frombuffer(t.encode(), np.uint8)].any()) for t in texts]
        except UnicodeEncodeError:
            return None  # lone surrogates: the batch goes to tokenizers anyway
        return held if any(held) else None

    def _encode_joined(self, texts: list[str], prepared: list[str]) -> np.ndarray:
        if not texts:
            raise _Unsure  # nothing to join; tokenizers returns the empty result
        joined = _SEPARATOR.join(prepared) + _SEPARATOR
        # No U+FDD0 may come from the text: with one, text after a marker (which ends in NUL)
        # could spell another marker.
        if (
            (joined.count(MARK[1]) != len(texts))
            if prepared is texts
            else MARK[1] in "".join(texts)
        ):
            raise _Unsure
        if self.missing is not None and (self.missing[:0x80].any() or not joined.isascii()):
            raw = np.frombuffer(joined.encode("utf-8"), np.uint8)
            if self.missing[raw].any():
                raise _Unsure  # tokenizers drops a byte it has no token for; tiktoken cannot
        return self.encoding.encode_to_numpy(joined, allowed_special=self.allowed)

    def _hf_ids(self, ids: np.ndarray) -> np.ndarray:
        """tiktoken's ids as tokenizers': ranks to ids, markers to their added tokens' ids."""
        return self.to_id[ids]

    def _joined_offsets(self, ids: np.ndarray, joined: str) -> tuple[np.ndarray, np.ndarray]:
        """Each token's [start, end) in `joined`, in characters (a split character: all of it)."""
        if self.byte_length is None:
            lengths = np.zeros(self.separator_id + 1, np.int64)
            lengths[np.fromiter(self.plan.ranks.values(), np.int64)] = np.fromiter(
                map(len, self.plan.ranks), np.int64
            )
            for k in range(len(self.plan.added)):
                lengths[self.base + k] = len(_marker(k).encode())
            lengths[self.separator_id] = len(_SEPARATOR.encode())
            self.byte_length = lengths
        size = self.byte_length[ids]
        byte_end = np.cumsum(size)
        raw = np.frombuffer(joined.encode("utf-8"), np.uint8)
        char_of_byte = np.cumsum((raw & 0xC0) != 0x80) - 1
        return char_of_byte[byte_end - size], char_of_byte[byte_end - 1] + 1

    def _frame(self, encoded: EncodedTexts) -> EncodedTexts:
        return _frame(encoded, self.plan.prefix, self.plan.suffix)

    # --- added tokens and normalization, as tokenizers does them ------------------------------

    def _render(self, piece: str | AddedToken) -> str:
        """A segment as tiktoken sees it: plain text as is, an added token as its marker."""
        return piece if isinstance(piece, str) else _marker(self.index_of[piece.id])

    def _prepare(self, texts: list[str]) -> list[str]:
        plan = self.plan
        if self.substitute is not None and not self.fallback.tokenizer.encode_special_tokens:
            return list(map(self.substitute, texts))
        if (
            not plan.add_prefix_space
            and not plan.nfc
            and (self.any_added is None or not self.any_added("".join(texts)))
        ):
            return texts
        out = []
        for text in texts:
            if (
                plan.add_prefix_space
                or (plan.nfc and not text.isascii())
                or (self.any_added and self.any_added(text))
            ):
                text = "".join(
                    self._render(piece) for piece, _, _ in self._segments(text, exact=False)
                )
            out.append(text)
        return out

    def _segments(self, text: str, exact: bool) -> list[tuple[str | AddedToken, int, int]]:
        """The text as tokenizers pre-tokenizes it: plain pieces (normalized, space-prefixed) and
        added tokens, each with its span in the text. `exact`: refuse pieces that differ from
        their span (normalization, prefix spaces), whose offsets are not the text's."""
        plan = self.plan
        out: list[tuple[str | AddedToken, int, int]] = []
        for piece, start, stop in self._split(text, self.passes[0]):
            if piece is not None:
                out.append((piece, start, stop))
                continue
            plain = text[start:stop]
            if plan.nfc and not plain.isascii():
                plain = self.nfc(plain)
                if exact and plain != text[start:stop]:
                    raise _Unsure
            for part, first, last in self._split(plain, self.passes[1]):
                if part is not None:
                    out.append((part, start + first, start + last))
                elif last > first:
                    words = plain[first:last]
                    if plan.add_prefix_space and words[0] != " ":
                        if exact:
                            raise _Unsure
                        words = " " + words
                    out.append((words, start + first, start + last))
        return out

    def _split(self, sentence: str, matcher) -> list[tuple[AddedToken | None, int, int]]:
        return _find_added(sentence, matcher, self.fallback.tokenizer.encode_special_tokens)


class SentencePieceEncoder(_Proven[SentencePiecePlan]):
    """Google's sentencepiece with the checks of `fast_spm` passed: the same ids, faster.

    Added tokens are found here as `tokenizers` finds them; each piece of text between them gets
    its "▁" here (sentencepiece's own dummy prefix is off) and all go to one batch call, which
    releases the GIL while it encodes. A batch sentencepiece refuses (lone surrogates) goes to
    `tokenizers`, as does one holding a single_word token beside a non-ASCII character.
    """

    name = "sentencepiece"
    # Conversations take these offsets, not tokenizers': with the ids (proven the same) they
    # follow from the pieces' lengths and where the "▁" was put in, as tokenizers aligns it
    # (compared with tokenizers' in tests/tokenize/test_encoder_sentencepiece.py).
    offsets_from_ids = True

    def _build(self) -> None:
        import sentencepiece

        plan = self.plan
        self.processor = sentencepiece.SentencePieceProcessor(model_proto=plan.model_proto)
        self.matcher = _matcher(list(plan.added)) if plan.added else None
        self.piece_bytes: np.ndarray | None = None  # built on the first offsets request

    def encode(self, texts: Sequence[str], add_special_tokens: bool = True) -> EncodedTexts:
        texts = list(texts)
        try:
            layout = self._layout(texts)
            if layout is None:  # no added token in the batch: one piece of text a text
                pieces = self._encode([self._prefixed(t, 0) for t in texts])
            else:
                encoded_pieces = iter(self._encode(self._prepared(texts, layout)))
                pieces = []
                for items in layout:
                    ids: list[int] = []
                    for token, _, _ in items:
                        if token is None:
                            ids += next(encoded_pieces)
                        else:
                            ids.append(token.id)
                    pieces.append(ids)
        except (_Unsure, UnicodeEncodeError):
            return self.fallback.encode(texts, add_special_tokens)
        length = np.fromiter(map(len, pieces), np.int64, len(pieces))
        ids_ = np.fromiter(itertools.chain.from_iterable(pieces), DTYPE, int(length.sum()))
        encoded = EncodedTexts(ids_, length)
        return (
            _frame(encoded, self.plan.prefix, self.plan.suffix) if add_special_tokens else encoded
        )

    def encode_with_offsets(
        self, texts: Sequence[str], add_special_tokens: bool = True
    ) -> EncodedTexts:
        """The ids with character offsets, tokenizers' way: a byte piece spans its whole
        character; the "▁" put before a piece of text counts as that piece's first character."""
        texts = list(texts)
        try:
            layout = self._layout(texts) or [[(None, 0, len(t))] if t else [] for t in texts]
            prepared = [p.replace(" ", SPACE) for p in self._prepared(texts, layout)]
            pieces = self._encode(prepared)
        except (_Unsure, UnicodeEncodeError):
            return self.fallback.encode_with_offsets(texts, add_special_tokens)
        count = np.fromiter(map(len, pieces), np.int64, len(pieces))
        flat = np.fromiter(itertools.chain.from_iterable(pieces), np.int64, int(count.sum()))
        # Each token's [first, last) characters in its piece of text, as the text has them.
        size = self._piece_bytes()[flat]
        byte_end = np.cumsum(size)
        raw = np.frombuffer("".join(prepared).encode("utf-8"), np.uint8)
        if len(byte_end) and byte_end[-1] != len(raw):
            return self.fallback.encode_with_offsets(texts, add_special_tokens)
        char_of_byte = np.cumsum((raw & 0xC0) != 0x80) - 1
        spans = [(start, stop) for items in layout for token, start, stop in items if not token]
        chars = np.fromiter(map(len, prepared), np.int64, len(prepared))
        start_ = np.fromiter((s for s, _ in spans), np.int64, len(spans))
        stop_ = np.fromiter((e for _, e in spans), np.int64, len(spans))
        # The piece's start in the joined text, less its "▁" if one was put in, as the text's.
        base = np.repeat(np.cumsum(chars) - chars + (chars - (stop_ - start_)), count)
        origin = np.repeat(start_, count)
        first = origin + np.maximum(char_of_byte[byte_end - size] - base, 0)
        # A token of the put-in "▁" alone spans the character it stands at, as in tokenizers.
        last = origin + np.maximum(char_of_byte[byte_end - 1] + 1 - base, 1)
        # Added tokens in between: their own spans (with the whitespace they strip).
        total = len(flat) + sum(1 for items in layout for token, _, _ in items if token)
        ids = np.empty(total, DTYPE)
        char_start = np.empty(total, np.int64)
        char_end = np.empty(total, np.int64)
        length = np.zeros(len(texts), np.int64)
        at = done = piece = 0
        for k, items in enumerate(layout):
            for token, start, stop in items:
                if token is not None:
                    ids[at], char_start[at], char_end[at] = token.id, start, stop
                    at += 1
                    length[k] += 1
                    continue
                n = int(count[piece])
                ids[at : at + n] = flat[done : done + n]
                char_start[at : at + n] = first[done : done + n]
                char_end[at : at + n] = last[done : done + n]
                at += n
                done += n
                piece += 1
                length[k] += n
        encoded = EncodedTexts(ids, length, char_start, char_end)
        return (
            _frame(encoded, self.plan.prefix, self.plan.suffix) if add_special_tokens else encoded
        )

    def _encode(self, prepared: list[str]) -> list[list[int]]:
        return self.processor.encode(prepared, num_threads=1) if prepared else []

    def _piece_bytes(self) -> np.ndarray:
        """Each id's UTF-8 length with spaces as "▁": the piece's, 1 for a byte piece."""
        if self.piece_bytes is None:
            processor = self.processor
            size = processor.get_piece_size()
            self.piece_bytes = np.fromiter(
                (
                    1 if processor.is_byte(i) else len(processor.id_to_piece(i).encode("utf-8"))
                    for i in range(size)
                ),
                np.int64,
                size,
            )
        return self.piece_bytes

    def _layout(self, texts: list[str]) -> list[list[tuple[AddedToken | None, int, int]]] | None:
        """Each text as its added tokens and the pieces of text between them (None for plain
        text), with their spans; None when no added token is in the batch (the common case)."""
        if self.matcher is None or not self.matcher[0].search("".join(texts)):
            return None
        split = self.fallback.tokenizer.encode_special_tokens
        return [_find_added(text, self.matcher, split) for text in texts]

    def _prepared(self, texts: list[str], layout) -> list[str]:
        """Every piece of text between added tokens, in order, with its "▁" put in."""
        return [
            self._prefixed(text[start:stop], start)
            for text, items in zip(texts, layout, strict=True)
            for token, start, stop in items
            if token is None
        ]

    def _prefixed(self, text: str, start: int) -> str:
        """A piece of text, starting at `start` in its text, with the "▁" `tokenizers` puts
        before it (spaces stay: sentencepiece makes them "▁" itself)."""
        mode = self.plan.prefix_mode
        if not text or mode == "never" or (mode == "first" and start):
            return text
        if mode != "always" and text[0] in (" ", SPACE):
            return text
        return SPACE + text


def _find_added(
    sentence: str, matcher, split_special: bool
) -> list[tuple[AddedToken | None, int, int]]:
    """AddedVocabulary::find_matches: (token or None for plain text, start, stop) in order;
    `split_special`: special tokens are plain text (encode_special_tokens)."""
    end = len(sentence)
    if matcher is None or not end:
        return [(None, 0, end)] if end else []
    regex, by_content = matcher
    out: list[tuple[AddedToken | None, int, int]] = []
    done = 0
    for found in regex.finditer(sentence):
        start, stop = found.span()
        token = by_content[found.group()]
        if token.special and split_special:
            continue
        if token.single_word and (_is_word(sentence, start - 1) or _is_word(sentence, stop)):
            continue
        if token.lstrip:
            while start > done and sentence[start - 1] in WHITE_SPACE:
                start -= 1
        if token.rstrip:
            while stop < end and sentence[stop] in WHITE_SPACE:
                stop += 1
        if done < start:
            out.append((None, done, start))
        out.append((token, start, stop))
        done = stop
    if done < end:
        out.append((None, done, end))
    return out


def _frame(encoded: EncodedTexts, before: tuple[int, ...], after: tuple[int, ...]) -> EncodedTexts:
    """Add the post-processor's ids around every text (offsets 0, 0), as tokenizers does."""
    if not before and not after:
        return encoded
    extra = len(before) + len(after)
    length = encoded.length + extra
    start = np.cumsum(length) - length
    ids = np.empty(int(length.sum()), DTYPE)
    body = np.ones(len(ids), bool)
    for offset, token in itertools.chain(
        enumerate(before), ((k - len(after), t) for k, t in enumerate(after))
    ):
        at = start + offset if offset >= 0 else start + length + offset
        ids[at] = token
        body[at] = False
    ids[body] = encoded.ids
    framed = EncodedTexts(ids, length)
    if encoded.char_start is not None:
        framed.char_start = np.zeros(len(ids), np.int64)
        framed.char_end = np.zeros(len(ids), np.int64)
        framed.char_start[body] = encoded.char_start
        framed.char_end[body] = encoded.char_end
    return framed


def _merge_encoded(first: list[bool], chosen: EncodedTexts, rest: EncodedTexts) -> EncodedTexts:
    """One batch's result from the texts flagged in `first` (encoded as `chosen`) and the others."""
    flagged = np.asarray(first, bool)
    length = np.zeros(len(flagged), np.int64)
    length[flagged] = chosen.length
    length[~flagged] = rest.length
    token_flagged = np.repeat(flagged, length)
    ids = np.empty(int(length.sum()), DTYPE)
    ids[token_flagged] = chosen.ids
    ids[~token_flagged] = rest.ids
    return EncodedTexts(ids, length)


def _marker(index: int) -> str:
    return f"{MARK}{index}\x00"


def _matcher(tokens: list[AddedToken]) -> tuple[re.Pattern, dict[str, AddedToken]]:
    """A regex finding the leftmost, then longest, added token (as tokenizers' Aho-Corasick)."""
    by_content = {t.content: t for t in tokens}
    ordered = sorted(by_content, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, ordered))), by_content


def _is_word(sentence: str, index: int) -> bool:
    """Whether sentence[index] is a word character (Rust's \\w; False outside the sentence)."""
    if not 0 <= index < len(sentence):
        return False
    char = sentence[index]
    if not char.isascii():
        raise _Unsure  # Rust's Unicode \w and Python's differ; let tokenizers decide
    return char in _ASCII_WORD


def build_encoder(tokenizer: LoadedTokenizer, choice: str = "auto") -> TextEncoder:
    """The encoder for `choice` (auto, tokenizers, tiktoken or sentencepiece); see the module
    docstring. auto tries sentencepiece for a BPE with byte_fallback, tiktoken for any other.

    All follow `tokenizer.tokenizer.encode_special_tokens` (special tokens in text are plain
    text) as it is when they encode.
    """
    if choice not in ENCODERS:
        raise OptionError(f"--encoder {choice!r} is unknown; use one of {', '.join(ENCODERS)}")
    reference = TokenizersEncoder(tokenizer)
    if choice == "tokenizers":
        return reference
    if choice == "auto":
        # Only one plan runs: each takes the parsed definition, which is then dropped.
        model = getattr(tokenizer.tokenizer, "model", None)
        choice = "sentencepiece" if getattr(model, "byte_fallback", False) else "tiktoken"
        forced = False
    else:
        forced = True
    try:
        if choice == "sentencepiece":
            return SentencePieceEncoder(plan_sentencepiece(tokenizer), reference)
        return TiktokenEncoder(plan_tiktoken(tokenizer), reference)
    except EncoderCheckError as exc:
        if forced:
            raise OptionError(str(exc)) from exc
        reference.declined = exc.check
        reference.declined_by = choice
        return reference
