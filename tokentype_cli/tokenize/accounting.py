"""What the metrics say beyond token counts: literal special tokens in the text, articles lost to
packing (and why), and articles whose whole prompt truncation removed. Vectorised per batch."""

from __future__ import annotations

import numpy as np

from tokentype_cli.tokenize.articles import Articles
from tokentype_cli.tokenize.encode import Encoded
from tokentype_cli.tokenize.options import TYPE_MASK
from tokentype_cli.tokenize.pack import Placement
from tokentype_cli.tokenizer_loader import LoadedTokenizer


def special_token_ids(tokenizer: LoadedTokenizer) -> np.ndarray:
    """Ids of the tokenizer's special added tokens (`<|endoftext|>`, `<|im_start|>`, ...)."""
    decoder = getattr(tokenizer.tokenizer, "get_added_tokens_decoder", None)
    if decoder is None:  # an old tokenizers: the special tokens the loader knows
        found = [tokenizer.eos_id, tokenizer.pad_id, tokenizer.bos_id]
        return np.asarray(sorted({t for t in found if t is not None}), np.int64)
    return np.asarray(sorted(i for i, token in decoder().items() if token.special), np.int64)


def lines_with_special_tokens(encoded: Encoded, special_ids: np.ndarray) -> np.ndarray:
    """Batch line indices whose prompt or completion text the tokenizer read a special token out
    of, or whose conversation's messages wrote one (chat.Conversation.writes_special), sorted."""
    batch = encoded.batch
    written = np.empty(0, np.int64)
    if batch.conversations:
        pairs = zip(batch.pair_completion, batch.pair_line, strict=True)
        chats = batch.conversations
        written = np.asarray(
            [line for text, line in pairs if text in chats and chats[text].writes_special], np.int64
        )
    if not len(special_ids) or not len(encoded.flat):
        return np.unique(written)
    text_line = np.full(len(batch.texts), -1, np.int64)
    pair_line = np.asarray(batch.pair_line, np.int64)
    for column in (batch.pair_prompt, batch.pair_completion):
        index = np.asarray(column, np.int64)
        present = index >= 0
        text_line[index[present]] = pair_line[present]
    # A chat template writes special tokens on purpose: conversations count by their messages.
    text_line[list(batch.conversations)] = -1
    if not (text_line >= 0).any():  # a batch of conversations: no token needs looking at
        return np.unique(written)
    # A lookup table over the ids' range, not a sort: one pass over the batch's tokens.
    hits = np.flatnonzero(np.isin(encoded.flat, special_ids, kind="table"))
    if not len(hits):
        return np.unique(written)
    text = np.searchsorted(encoded.text_start, hits, side="right") - 1
    lines = text_line[text]
    return np.unique(np.concatenate([lines[lines >= 0], written]))


def prompts_cut_away(articles: Articles, placement: Placement) -> int:
    """Articles that had prompt tokens, all of which truncation from the left removed."""
    cut = placement.cut_left
    if not len(cut) or not cut.any():
        return 0
    is_prompt = (articles.types & TYPE_MASK) == 0
    prefix = np.concatenate([[0], np.cumsum(is_prompt, dtype=np.int64)])
    start = articles.start.astype(np.int64)
    total = prefix[start + articles.length] - prefix[start]
    in_cut = prefix[start + cut] - prefix[start]
    return int(((cut > 0) & (total > 0) & (in_cut == total) & (placement.kept > 0)).sum())


class DroppedArticles:
    """Counts articles whose every row was dropped for carrying no completion token, and lines
    that put no token in the output at all.

    An article's candidate rows are known when it is packed, whether those rows are kept only
    when they close; articles wait here (three integers each) until all their rows are
    resolved, and a line until all its articles are.
    """

    def __init__(self, seq_len: int, full: bool) -> None:
        self.seq_len = seq_len
        self.full = full
        self.first = np.empty(0, np.int64)
        self.last = np.empty(0, np.int64)
        self.line = np.empty(0, np.int64)  # the line of each waiting article
        self.kept = np.empty(0, bool)  # resolved candidate rows from `base` on: kept or not
        self.base = 0
        self.dropped = 0
        # Lines from line_base on: articles not yet resolved, and whether one has been kept.
        self.line_base = 0
        self.line_waiting = np.empty(0, np.int64)
        self.line_kept = np.empty(0, bool)
        self.lines_dropped = 0

    def add(self, placement: Placement, article_line: np.ndarray, lines: int) -> None:
        """A batch's `lines` lines, its articles (`article_line`: each one's line, counted from
        the batch's first) and where the packer put them."""
        first_line = self.line_base + len(self.line_waiting)
        article_line = article_line.astype(np.int64) + first_line
        placed = (placement.row >= 0) & (placement.kept > 0)
        waiting = np.bincount(article_line[placed] - first_line, minlength=lines)
        self.line_waiting = np.concatenate([self.line_waiting, waiting[:lines]])
        self.line_kept = np.concatenate([self.line_kept, np.zeros(lines, bool)])
        first = placement.row[placed]
        last = first
        if self.full:  # an article may run over several rows
            last = first + (placement.offset[placed] + placement.kept[placed] - 1) // self.seq_len
        self.first = np.concatenate([self.first, first])
        self.last = np.concatenate([self.last, last])
        self.line = np.concatenate([self.line, article_line[placed]])
        self._close_lines()

    def resolve(self, keep: np.ndarray) -> None:
        """The next candidate rows closed: `keep` says which were written."""
        self.kept = np.concatenate([self.kept, keep.astype(bool)])
        resolved = self.base + len(self.kept)
        done = self.last < resolved
        if done.any():
            prefix = np.concatenate([[0], np.cumsum(self.kept, dtype=np.int64)])
            first = self.first[done] - self.base
            last = self.last[done] - self.base
            survived = (prefix[last + 1] - prefix[first]) > 0
            self.dropped += int((~survived).sum())
            line = self.line[done] - self.line_base
            np.subtract.at(self.line_waiting, line, 1)
            self.line_kept[line[survived]] = True
            self.first, self.last = self.first[~done], self.last[~done]
            self.line = self.line[~done]
            self._close_lines()
        needed = int(self.first.min()) if len(self.first) else resolved
        if needed > self.base:
            self.kept = self.kept[needed - self.base :]
            self.base = needed

    def _close_lines(self) -> None:
        """Count the leading lines whose articles are all resolved, and forget them."""
        open_lines = np.flatnonzero(self.line_waiting > 0)
        closed = int(open_lines[0]) if len(open_lines) else len(self.line_waiting)
        if closed:
            self.lines_dropped += int((~self.line_kept[:closed]).sum())
            self.line_waiting = self.line_waiting[closed:]
            self.line_kept = self.line_kept[closed:]
            self.line_base += closed
