"""Encode a batch's texts into one flat id array, and find the line the tokenizer refuses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokentype_cli.errors import TokenizerError
from tokentype_cli.tokenize.encoders import TextEncoder
from tokentype_cli.tokenize.read import Batch
from tokentype_cli.tokenizer_loader import LoadedTokenizer


@dataclass
class Encoded:
    batch: Batch
    flat: np.ndarray  # every text's ids, concatenated
    text_start: np.ndarray
    text_len: np.ndarray


class Encoder:
    """Encode a batch's texts at once; find the line when the tokenizer refuses a text."""

    def __init__(self, tokenizer: LoadedTokenizer, text_encoder: TextEncoder) -> None:
        self.loaded = tokenizer
        self.text_encoder = text_encoder

    def __call__(self, batch: Batch) -> Encoded:
        try:
            encoded = self.text_encoder.encode(batch.texts)
        except Exception:  # tokenizers raises plain Exception from Rust
            encoded = self._encode_reporting(batch)
        return Encoded(batch, encoded.ids, encoded.start, encoded.length)

    def _encode_reporting(self, batch: Batch):
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
        for name in ("pair_line", "pair_prompt", "pair_completion", "pair_split"):
            column = getattr(batch, name)
            setattr(batch, name, [column[i] for i in keep])
        for line in bad:
            batch.skipped_pairs.pop(line, None)
        texts = ["" if text_line.get(i) in bad else t for i, t in enumerate(batch.texts)]
        return self.text_encoder.encode(texts)

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
