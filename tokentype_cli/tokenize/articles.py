"""Lay a batch's encoded pairs out as articles: prompt, completion and eos tokens with their types."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokentype_cli.errors import TokenizerError
from tokentype_cli.schema.names import TokenType
from tokentype_cli.schema.storage import DTYPE
from tokentype_cli.tokenize.encode import Encoded
from tokentype_cli.tokenize.options import CATEGORY_SHIFT, TYPE_MASK
from tokentype_cli.tokenizer_loader import LoadedTokenizer


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
    """Lay out every pair as prompt (0), completion (1), eos (1) and mark separators (3).

    A conversation is a pair with no prompt whose completion tokens carry their own types
    (`encoded.types`); its trailing eos goes and one eos is appended, as for a completion, so
    it ends in exactly one separator.
    """
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
    total = int(piece_len.sum())
    out_start = np.cumsum(piece_len) - piece_len
    gather = np.repeat(piece_start - out_start, piece_len) + np.arange(total, dtype=np.int64)
    ids = flat_ext[gather]
    if encoded.types is None:
        piece_type = np.tile(np.asarray([0, 1, 1], DTYPE), count)
        types = np.repeat(piece_type, piece_len)
    else:  # a conversation's tokens carry their own types; the appended eos is completion
        types = np.append(encoded.types, np.asarray([TokenType.COMPLETION], DTYPE))[gather]
    if batch.pair_category:  # --categories: the label carries the category too (see options)
        category = (np.asarray(batch.pair_category, DTYPE) + 1) << CATEGORY_SHIFT
        types += np.repeat(np.repeat(category, 3), piece_len)

    pair_len = p_len + c_len + e_len
    pair_end = np.cumsum(pair_len)
    if attention_pair:
        _mark_separators(types, pair_end[pair_len > 0] - 1)
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
    _mark_separators(types, article_end[line_final] - 1)
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


def _mark_separators(types: np.ndarray, at: np.ndarray) -> None:
    """Type 3 at `at`, keeping any category carried in the label's upper bits."""
    types[at] = (types[at] & ~TYPE_MASK) | TokenType.SEPARATOR
