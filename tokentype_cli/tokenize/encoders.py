"""The encoder layer: a batch of texts to one flat id array, by `tokenizers` or by tiktoken.

`build_encoder(tokenizer, "auto")` returns tiktoken's when `fast_bpe` shows it gives the same ids,
else `tokenizers`'. Both have `encode(texts)` and `encode_with_offsets(texts)` (per-token character
offsets in each text, for work that types text by character) and pickle, so worker processes can
be handed one; building tiktoken's costs a fraction of a second.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tokentype_cli.errors import EncoderCheckError, OptionError
from tokentype_cli.schema import DTYPE
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

    def encode(self, texts: Sequence[str]) -> EncodedTexts:
        """Every text's ids, as `tokenizers`' encode_batch with special tokens added."""
        ...

    def encode_with_offsets(self, texts: Sequence[str]) -> EncodedTexts:
        """The same ids, with each token's character offsets in its text."""
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

    def encode(self, texts: Sequence[str]) -> EncodedTexts:
        encodings = self.tokenizer.encode_batch_fast(list(texts))
        return self._flatten(encodings)

    def encode_with_offsets(self, texts: Sequence[str]) -> EncodedTexts:
        # encode_batch_fast does not track offsets.
        encodings = self.tokenizer.encode_batch(list(texts))
        result = self._flatten(encodings)
        total = len(result.ids)
        offsets = itertools.chain.from_iterable(e.offsets for e in encodings)
        pairs = np.fromiter(itertools.chain.from_iterable(offsets), np.int64, 2 * total)
        result.char_start = pairs[0::2].copy()
        result.char_end = pairs[1::2].copy()
        return result

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
    `tokenizers` finds them and handed to tiktoken as special-token markers. A batch this cannot
    settle exactly (text holding the marker characters or lone surrogates, a single_word token
    beside a non-ASCII character) is encoded by `tokenizers`.
    """

    name = "tiktoken"

    def __init__(self, plan: TiktokenPlan, fallback: TokenizersEncoder) -> None:
        self.plan = plan
        self.fallback = fallback
        self._build()

    def _build(self) -> None:
        import tiktoken

        plan = self.plan
        self.separator_id = max([*plan.ranks.values(), *(t.id for t in plan.added)]) + 1
        specials = {_marker(t.id): t.id for t in plan.added}
        specials[_SEPARATOR] = self.separator_id
        self.allowed = frozenset(specials)
        self.encoding = tiktoken.Encoding(
            f"tokentype-{plan.pattern_name}",
            pat_str=plan.pattern,
            mergeable_ranks=plan.ranks,
            special_tokens=specials,
        )
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

    def __getstate__(self) -> dict:
        return {"plan": self.plan, "fallback": self.fallback}

    def __setstate__(self, state: dict) -> None:
        self.plan = state["plan"]
        self.fallback = state["fallback"]
        self._build()

    def encode(self, texts: Sequence[str]) -> EncodedTexts:
        texts = list(texts)
        try:
            prepared = self._prepare(texts) if self.rewrites else texts
            joined = _SEPARATOR.join(prepared) + _SEPARATOR
            if not self._marks_only_ours(texts, prepared, joined):
                raise _Unsure
            ids = self.encoding.encode_to_numpy(joined, allowed_special=self.allowed)
        except (_Unsure, UnicodeEncodeError):
            return self.fallback.encode(texts)
        ends = np.flatnonzero(ids == self.separator_id)
        length = np.diff(ends, prepend=-1) - 1
        flat = ids[ids != self.separator_id].astype(DTYPE)
        return self._frame(EncodedTexts(flat, length))

    def encode_with_offsets(self, texts: Sequence[str]) -> EncodedTexts:
        return self.fallback.encode_with_offsets(texts)

    def _marks_only_ours(self, texts: list[str], prepared: list[str], joined: str) -> bool:
        """Whether the marker characters in `joined` are only the ones put there on purpose."""
        if prepared is texts:
            return joined.count(MARK) == len(texts)
        return MARK not in "".join(texts)

    def _frame(self, encoded: EncodedTexts) -> EncodedTexts:
        """Add the post-processor's ids around every text, as `tokenizers` does."""
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
        return EncodedTexts(ids, length)

    # --- added tokens and normalization, as tokenizers does them ------------------------------

    def _prepare(self, texts: list[str]) -> list[str]:
        plan = self.plan
        if not plan.add_prefix_space and not plan.nfc and not self.any_added("".join(texts)):
            return texts
        out = []
        for text in texts:
            if (
                plan.add_prefix_space
                or (plan.nfc and not text.isascii())
                or (self.any_added and self.any_added(text))
            ):
                text = self._rewrite(text)
            out.append(text)
        return out

    def _rewrite(self, text: str) -> str:
        """The text with added tokens replaced by markers, normalized and space-prefixed."""
        plan = self.plan
        out: list[str] = []
        for piece in self._split(text, self.passes[0]):
            if isinstance(piece, int):
                out.append(_marker(piece))
                continue
            if plan.nfc and not piece.isascii():
                piece = self.nfc(piece)
            for part in self._split(piece, self.passes[1]):
                if isinstance(part, int):
                    out.append(_marker(part))
                elif part:
                    out.append(" " + part if plan.add_prefix_space and part[0] != " " else part)
        return "".join(out)

    def _split(self, sentence: str, matcher) -> list[str | int]:
        """AddedVocabulary::find_matches: pieces of text and the ids of added tokens between."""
        if matcher is None or not sentence:
            return [sentence]
        regex, by_content = matcher
        out: list[str | int] = []
        done = 0
        for found in regex.finditer(sentence):
            start, stop = found.span()
            token = by_content[found.group()]
            if self.plan.split_special and token.special:
                continue
            if token.single_word and (_is_word(sentence, start - 1) or _is_word(sentence, stop)):
                continue
            if token.lstrip:
                while start > done and sentence[start - 1] in WHITE_SPACE:
                    start -= 1
            if token.rstrip:
                while stop < len(sentence) and sentence[stop] in WHITE_SPACE:
                    stop += 1
            if done < start:
                out.append(sentence[done:start])
            out.append(token.id)
            done = stop
        if done < len(sentence):
            out.append(sentence[done:])
        return out


def _marker(token_id: int) -> str:
    return f"{MARK}{token_id}\x00"


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

    `tokenizer.tokenizer.encode_special_tokens` is read here: set it before building.
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
