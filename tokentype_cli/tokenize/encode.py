"""Encode a batch's texts into one flat id array, and find the line the tokenizer refuses.

Prompt and completion texts go through the encoder layer (encoders.py: tiktoken or
sentencepiece where it gives the tokenizer's ids). Conversations go through it too, whole and
without the post-processor's ids, with each token's place in its text (byte offsets summed from
the ids where the vocabulary allows, else the tokenizer's own offsets), and each token takes its
type from the characters it covers (chat.type_tokens), here in the encoder threads.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np
from tokenizers import pre_tokenizers

from tokentype_cli.errors import TokenizerError
from tokentype_cli.schema.names import TokenType
from tokentype_cli.schema.storage import DTYPE
from tokentype_cli.tokenize.chat import type_tokens
from tokentype_cli.tokenize.encoders import TextEncoder
from tokentype_cli.tokenize.read import Batch
from tokentype_cli.tokenizer_loader import LoadedTokenizer


@dataclass
class ChatTokens:
    """What a batch's conversations became: per-token results the main thread reports."""

    text_index: np.ndarray  # per conversation (batch text index), in text order
    seams: np.ndarray  # per conversation: tokens straddling prompt and completion characters
    open_turns: np.ndarray  # per conversation: learned turns with no learned end-of-turn token
    reasoning: np.ndarray  # per conversation: learned tokens of reasoning text
    # Every seam token: its conversation's text index, its position in that conversation's
    # tokens, its id, and whether its first character is learned.
    seam_text: np.ndarray
    seam_token: np.ndarray
    seam_id: np.ndarray
    seam_first_learned: np.ndarray


@dataclass
class Encoded:
    batch: Batch
    flat: np.ndarray  # every text's ids, concatenated
    text_start: np.ndarray
    text_len: np.ndarray
    types: np.ndarray | None = None  # per token of flat when the batch holds conversations
    chat: ChatTokens | None = None


@dataclass
class Offsets:
    """Whole texts encoded with no special tokens added, and where each token sits in its text."""

    ids: np.ndarray  # flat
    lengths: np.ndarray  # tokens per text
    spans: np.ndarray  # (tokens, 2): each token's [start, end) in its text
    in_bytes: bool  # spans count UTF-8 bytes, not characters


def byte_lengths(tokenizer) -> np.ndarray | None:
    """Bytes of text behind each id, for vocabularies whose tokens' bytes concatenate to the text
    (byte-level BPE with no normalizer, or NFC: GPT-2, Llama 3, Qwen); None for any other."""
    config = json.loads(tokenizer.to_str())
    normalizer = config.get("normalizer")
    decoder = config.get("decoder") or {}
    if normalizer not in (None, {"type": "NFC"}) or decoder.get("type") != "ByteLevel":
        return None
    added = {t["content"]: t for t in config.get("added_tokens", [])}
    if any(t.get("lstrip") or t.get("rstrip") for t in added.values()):
        return None  # these swallow the whitespace around them
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())  # one character per byte
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    table = np.zeros(max(vocab.values(), default=-1) + 1, np.int64)
    for token, token_id in vocab.items():
        if token in added:
            table[token_id] = len(token.encode("utf-8"))
        elif set(token) <= alphabet:
            table[token_id] = len(token)
        else:
            return None
    return table


def encode_with_offsets(
    encoder: TextEncoder, texts: list[str], table: np.ndarray | None = None
) -> Offsets:
    """Encode whole texts without adding special tokens, with each token's place in its text.

    Everything chat typing needs from the encoder goes through here. With a byte_lengths()
    table, places are byte offsets summed from the ids, so any encoder giving the tokenizer's ids
    gives the same places (and the tokenizer's own offsets cost more to bring into Python than
    the encoding saves); when a text's bytes do not add up (a normalizer changed it), or with no
    table, the tokenizer's character offsets.
    """
    if table is None:
        return _character_offsets(encoder, texts)
    encoded = encoder.encode(texts, add_special_tokens=False)
    ids, lengths = encoded.ids, encoded.length
    if not len(ids) or int(ids.max()) < len(table):
        sizes = table[ids]
        ends = np.cumsum(sizes)
        first = np.cumsum(lengths) - lengths
        before = np.concatenate([[0], ends])[first]  # bytes of the earlier texts
        text_bytes = np.fromiter(
            (len(t) if t.isascii() else len(t.encode("utf-8")) for t in texts),
            np.int64,
            len(texts),
        )
        if np.array_equal(np.concatenate([[0], ends])[first + lengths] - before, text_bytes):
            end = ends - np.repeat(before, lengths)
            return Offsets(ids, lengths, np.stack([end - sizes, end], axis=1), True)
    return _character_offsets(encoder, texts)


def _character_offsets(encoder: TextEncoder, texts: list[str]) -> Offsets:
    # The tokenizer's own offsets: the encoders' offsets are proven equal only where they agree
    # on the ids, so take them from tokenizers (the reference the encoder falls back to), unless
    # the encoder's offsets follow from its ids alone (sentencepiece's: piece lengths).
    reference = encoder
    if not getattr(encoder, "offsets_from_ids", False):
        reference = getattr(encoder, "fallback", encoder)
    encoded = reference.encode_with_offsets(texts, add_special_tokens=False)
    assert encoded.char_start is not None and encoded.char_end is not None  # with offsets
    spans = np.stack([encoded.char_start, encoded.char_end], axis=1)
    return Offsets(encoded.ids, encoded.length, spans, False)


class Encoder:
    """Encode a batch's texts at once; find the line when the tokenizer refuses a text."""

    def __init__(
        self, tokenizer: LoadedTokenizer, text_encoder: TextEncoder, eos_id: int | None = None
    ) -> None:
        """`text_encoder` encodes prompt and completion texts (see text_encoder_for: with
        --split-special-tokens it works on a copy of the tokenizer); conversations go through
        its sibling reading special tokens as `tokenizer` does, for a template writes them on
        purpose."""
        self.loaded = tokenizer
        self.text_encoder = text_encoder
        self.chat_encoder = text_encoder.for_conversations(tokenizer)
        self.tokenizer = tokenizer.tokenizer
        # The reference encodes without the tokenizer file's truncation or padding settings.
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        # Tokens that can end a turn: the special added tokens and the eos in use.
        ends = {i for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special}
        ends.update(i for i in (eos_id, tokenizer.eos_id) if i is not None)
        self.turn_end_ids = np.asarray(sorted(ends), DTYPE)

    @functools.cached_property
    def byte_lengths(self) -> np.ndarray | None:
        # Built at the first conversation: it parses the whole tokenizer (0.2 s for GPT-2), which
        # prompt/completion input, and each split of a dataset, should not pay for.
        return byte_lengths(self.tokenizer)

    def __call__(self, batch: Batch) -> Encoded:
        try:
            encoded = self._encode(batch)
        except Exception:  # tokenizers raises plain Exception from Rust
            self._reject_unencodable(batch)
            encoded = self._encode(batch)
        return encoded

    def _encode(self, batch: Batch) -> Encoded:
        chat = sorted(batch.conversations)
        if not chat:
            encoded = self.text_encoder.encode(batch.texts)
            return Encoded(batch, encoded.ids, encoded.start, encoded.length)
        texts = [batch.texts[i] for i in chat]
        plain = [batch.conversations[i].plain for i in chat]
        if any(plain):
            # Rare (messages that write the template's markers, --split-special-tokens):
            # tokenizers encodes those pieces apart.
            places = self._encode_with_plain(texts, plain)
        else:
            places = encode_with_offsets(self.chat_encoder, texts, self.byte_lengths)
        chat_ids, chat_lengths = places.ids, places.lengths
        is_chat = np.zeros(len(batch.texts), bool)
        is_chat[chat] = True
        others = np.flatnonzero(~is_chat)
        lengths = np.zeros(len(batch.texts), np.int64)
        lengths[chat] = chat_lengths
        other_ids = np.empty(0, DTYPE)
        if len(others):
            encoded = self.text_encoder.encode([batch.texts[i] for i in others])
            lengths[others] = encoded.length
            other_ids = encoded.ids
        starts = np.cumsum(lengths) - lengths
        token_is_chat = np.repeat(is_chat, lengths)
        flat = np.empty(int(lengths.sum()), DTYPE)
        flat[token_is_chat] = chat_ids
        flat[~token_is_chat] = other_ids
        # Types outside conversations are those of prompt and completion texts (articles.py
        # lays those out itself); inside, they come from the characters each token covers.
        role = np.zeros(len(batch.texts), DTYPE)
        completion = [c for c in batch.pair_completion if c >= 0]
        role[completion] = TokenType.COMPLETION
        types = np.repeat(role, lengths)
        typed, chat_tokens = self._type_conversations(batch, chat, places)
        types[token_is_chat] = typed
        return Encoded(batch, flat, starts, lengths, types, chat_tokens)

    def _type_conversations(self, batch: Batch, chat: list[int], places: Offsets):
        conversations = [batch.conversations[i] for i in chat]
        ids, lengths, offsets = places.ids, places.lengths, places.spans
        token_text = np.repeat(np.arange(len(chat)), lengths)
        measured = [c.in_bytes() if places.in_bytes else c.in_chars() for c in conversations]
        text_lengths = np.fromiter((m[0] for m in measured), np.int64, len(chat))
        spans = np.asarray(
            [(k, s, e) for k, m in enumerate(measured) for s, e in m[1]], np.int64
        ).reshape(-1, 3)
        typing = type_tokens(text_lengths, token_text, offsets, spans)
        types = typing.completion.astype(DTYPE)
        thought = np.asarray(
            [(k, s, e) for k, m in enumerate(measured) for s, e in m[3]], np.int64
        ).reshape(-1, 3)
        reasoning = np.zeros(len(chat), np.int64)
        if len(thought):
            inside = type_tokens(text_lengths, token_text, offsets, thought).completion
            reasoning = np.bincount(token_text[inside & typing.completion], minlength=len(chat))
        # A learned turn must end in an end-of-turn token: find the token over each turn's last
        # learned character (a turn with none is open too).
        ends = [(k, c) for k, m in enumerate(measured) for c in m[2]]
        open_turns = np.zeros(len(chat), np.int64)
        if ends and not len(ids):
            open_turns = np.bincount([k for k, _ in ends], minlength=len(chat))
        elif ends:
            end_text, end_char = np.asarray(ends, np.int64).T
            text_start = np.cumsum(text_lengths) - text_lengths
            char = text_start[end_text] + end_char
            token_end = text_start[token_text] + offsets[:, 1]
            token = np.minimum(np.searchsorted(token_end, char, side="right"), len(ids) - 1)
            closed = (
                (end_char >= 0)
                & (token_text[token] == end_text)
                & np.isin(ids[token], self.turn_end_ids)
            )
            open_turns = np.bincount(end_text[~closed], minlength=len(chat))
        seam = np.flatnonzero(typing.seam)
        first = np.cumsum(lengths) - lengths
        chat_tokens = ChatTokens(
            text_index=np.asarray(chat, np.int64),
            seams=np.bincount(token_text[seam], minlength=len(chat)),
            open_turns=open_turns,
            reasoning=reasoning,
            seam_text=np.asarray(chat, np.int64)[token_text[seam]],
            seam_token=seam - first[token_text[seam]],
            seam_id=ids[seam],
            seam_first_learned=typing.first_learned[seam],
        )
        return types, chat_tokens

    @functools.cached_property
    def splitting(self):
        """A copy of the tokenizer that reads special tokens' text as text."""
        from tokenizers import Tokenizer

        copy = Tokenizer.from_str(self.tokenizer.to_str())
        copy.encode_special_tokens = True
        return copy

    def _encode_with_plain(self, texts: list[str], plain: list[list[tuple[int, int]]]) -> Offsets:
        """Conversations whose messages wrote special-token text, under --split-special-tokens:
        that text is encoded apart as text and the rest as usual (a special token splits the
        text around it in the same way), in character offsets."""
        pieces: list[tuple[int, int, bool]] = []  # (text, start, plain) per piece
        normal: list[str] = []
        literal: list[str] = []
        for k, (text, ranges) in enumerate(zip(texts, plain, strict=True)):
            done = 0
            for start, end in [*ranges, (len(text), len(text))]:
                if start > done:
                    pieces.append((k, done, False))
                    normal.append(text[done:start])
                if end > start:
                    pieces.append((k, start, True))
                    literal.append(text[start:end])
                done = end
        encoded = {
            False: iter(self.tokenizer.encode_batch(normal, add_special_tokens=False)),
            True: iter(self.splitting.encode_batch(literal, add_special_tokens=False)),
        }
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        lengths = np.zeros(len(texts), np.int64)
        for k, start, is_plain in pieces:
            encoding = next(encoded[is_plain])
            ids.extend(encoding.ids)
            spans.extend((start + a, start + b) for a, b in encoding.offsets)
            lengths[k] += len(encoding.ids)
        return Offsets(
            np.asarray(ids, DTYPE), lengths, np.asarray(spans, np.int64).reshape(-1, 2), False
        )

    def _reject_unencodable(self, batch: Batch) -> None:
        """Encode text by text to find the lines the tokenizer refuses, and set them aside."""
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
                if index in batch.conversations:
                    encode_with_offsets(self.chat_encoder, [text], self.byte_lengths)
                else:
                    self.text_encoder.encode([text])
            except Exception as exc:
                line = text_line[index]
                bad.setdefault(line, self._why(text, exc))
        if not bad:  # the failure did not repeat text by text; report it as it came
            raise TokenizerError(
                f"{batch.where(0)}..{batch.where(batch.line_count - 1)}: the tokenizer failed on"
                " this block of lines but on none of them alone; retry, and report it if it repeats"
            )
        for line, why in sorted(bad.items()):
            batch.rejected[line] = (why, batch.raw[line] if batch.raw else b"")
        keep = [i for i, line in enumerate(batch.pair_line) if line not in bad]
        for name in ("pair_line", "pair_prompt", "pair_completion", "pair_split", "pair_category"):
            column = getattr(batch, name)
            if column:  # pair_category stays empty without --categories
                setattr(batch, name, [column[i] for i in keep])
        for line in bad:
            batch.skipped_pairs.pop(line, None)
            batch.learns_nothing.discard(line)
            batch.chat_lines.discard(line)
        for index, line in text_line.items():
            if line in bad:
                batch.texts[index] = ""
                batch.conversations.pop(index, None)

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
