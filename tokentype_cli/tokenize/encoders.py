"""The encoder layer: a batch of texts to one flat id array, by `tokenizers` or by tiktoken.

`build_encoder(tokenizer, "auto")` returns tiktoken's when `fast_bpe` shows it gives the same ids,
else `tokenizers`'. Both have `encode(texts)` and `encode_with_offsets(texts)` (per-token character
offsets in each text, for work that types text by character), either without the post-processor's
ids (`add_special_tokens=False`, as conversations are encoded), and `for_conversations(tokenizer)`
(the same encoder reading special tokens in text as that tokenizer does), and pickle, so worker
processes can be handed one or build their own: building tiktoken's (checks, ranks and tiktoken's
own set-up) takes about a third of a second for GPT-2's 50k tokens, about a second for 150k, a few
for Llama-3's 280k merges (counting every split of every token).
"""

from __future__ import annotations

import copy
import functools
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tokentype_cli.errors import EncoderCheckError, OptionError
from tokentype_cli.schema.storage import DTYPE
from tokentype_cli.tokenize.fast_bpe import MARK, AddedToken, TiktokenPlan, plan_tiktoken
from tokentype_cli.tokenize.options import ENCODERS
from tokentype_cli.tokenizer_loader import LoadedTokenizer

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
    declined: str | None = None  # under auto: the fast_bpe check tiktoken failed

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
        }

    def __setstate__(self, state: dict) -> None:
        self.tokenizer = state["tokenizer"]
        self.tokenizer.encode_special_tokens = state["split"]
        self.declined = state["declined"]


class _Unsure(Exception):
    """The fast path cannot settle this batch exactly; `tokenizers` encodes it."""


class TiktokenEncoder:
    """tiktoken with the checks of `fast_bpe` passed: the same ids, faster.

    A batch becomes one string, its texts joined by a separator tiktoken treats as a special
    token, so one call (which releases the GIL) encodes it. Added tokens are found here as
    `tokenizers` finds them and handed to tiktoken as special-token markers with ids of their own
    (an added token may share its id with a vocabulary token), mapped back after. A batch this
    cannot settle exactly (text holding the marker characters or lone surrogates, a single_word
    token beside a non-ASCII character; for offsets also text NFC changes) goes to `tokenizers`.
    """

    name = "tiktoken"

    def __init__(self, plan: TiktokenPlan, fallback: TokenizersEncoder) -> None:
        self.plan = plan
        self.fallback = fallback
        self._build()

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

    def __getstate__(self) -> dict:
        return {"plan": self.plan, "fallback": self.fallback}

    def __setstate__(self, state: dict) -> None:
        self.plan = state["plan"]
        self.fallback = state["fallback"]
        self._build()

    def for_conversations(self, loaded: LoadedTokenizer) -> TiktokenEncoder:
        if loaded.tokenizer is self.fallback.tokenizer:
            return self
        sibling = copy.copy(self)  # shares the tiktoken Encoding, which is thread-safe
        sibling.fallback = self.fallback.for_conversations(loaded)
        return sibling

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
        """Add the post-processor's ids around every text (offsets 0, 0), as tokenizers does."""
        before, after = self.plan.prefix, self.plan.suffix
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
        """AddedVocabulary::find_matches: (token or None for plain text, start, stop) in order."""
        end = len(sentence)
        if matcher is None or not end:
            return [(None, 0, end)] if end else []
        regex, by_content = matcher
        out: list[tuple[AddedToken | None, int, int]] = []
        done = 0
        for found in regex.finditer(sentence):
            start, stop = found.span()
            token = by_content[found.group()]
            if token.special and self.fallback.tokenizer.encode_special_tokens:
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
    """The encoder for `choice` (auto, tokenizers or tiktoken); see the module docstring.

    Both follow `tokenizer.tokenizer.encode_special_tokens` (special tokens in text are plain
    text) as it is when they encode.
    """
    if choice not in ENCODERS:
        raise OptionError(f"--encoder {choice!r} is unknown; use one of {', '.join(ENCODERS)}")
    reference = TokenizersEncoder(tokenizer)
    if choice == "tokenizers":
        return reference
    try:
        return TiktokenEncoder(plan_tiktoken(tokenizer), reference)
    except EncoderCheckError as exc:
        if choice == "tiktoken":
            raise OptionError(str(exc)) from exc
        reference.declined = exc.check
        return reference
