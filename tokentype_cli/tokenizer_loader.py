"""Load a tokenizer from a tokenizer.json, a folder holding one, or a plain {"TOKEN": id} vocabulary."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers

from tokentype_cli.errors import TokenizerError

# Names a plain vocabulary (no tokenizer config) may use for its end-of-sequence and padding
# tokens, most specific first.
EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|eos|>", "[SEP]", "<sep>", "SEP", "EOS", "<|end|>")
PAD_NAMES = ("<pad>", "[PAD]", "<|pad|>", "PAD", "<|padding|>")
# Shards hold int32 ids: a vocabulary id beyond this cannot be stored (10^20 was a TypeError).
MAX_ID = (1 << 31) - 1
BOS_NAMES = ("<s>", "<bos>", "<|bos|>", "[CLS]", "BOS", "<|startoftext|>")


@dataclass(frozen=True)
class LoadedTokenizer:
    """A `tokenizers.Tokenizer` with the special tokens the toolkit needs."""

    tokenizer: Tokenizer
    path: Path
    eos_id: int | None
    pad_id: int | None
    bos_id: int | None
    word_level: bool
    # The parsed tokenizer.json the tokenizer was built from, held for take_definition.
    _definition: list[dict] = field(default_factory=list, repr=False, compare=False)

    def take_definition(self) -> dict | None:
        """The parsed tokenizer.json this was built from, once: the fast encoder's checks read it
        (serialising the tokenizer again and parsing that costs as much as loading), then it is
        dropped to free its memory. None after that, and for a plain vocabulary."""
        return self._definition.pop() if self._definition else None

    @cached_property
    def vocab(self) -> dict[str, int]:
        return self.tokenizer.get_vocab(with_added_tokens=True)

    @cached_property
    def vocab_size(self) -> int:
        """One more than the largest id: valid ids are 0..vocab_size-1."""
        return max(self.vocab.values(), default=-1) + 1

    @property
    def pad_or_eos_id(self) -> int | None:
        return self.pad_id if self.pad_id is not None else self.eos_id

    def token_id(self, token: str | int) -> int:
        """An id for a vocabulary string, or an integer id checked against the vocabulary."""
        if isinstance(token, (int, np.integer)) and not isinstance(token, bool):
            if not 0 <= int(token) < self.vocab_size:
                raise TokenizerError(
                    f"{self.path}: token id {token} is outside the vocabulary (0..{self.vocab_size - 1})"
                )
            return int(token)
        # A bool is not an id (it is an int to Python) and is no vocabulary string either.
        found = self.vocab.get(token) if isinstance(token, str) else None
        if found is None:
            raise TokenizerError(
                f"{self.path}: token {token!r} is not in the vocabulary; check its spelling or give its id"
            )
        return found

    def token_text(self, token_id: int) -> str:
        """The vocabulary string of one id (`<id N>` for a gap in the vocabulary, `<bad id N>`
        outside it)."""
        token_id = int(token_id)
        if not 0 <= token_id < self.vocab_size:
            return f"<bad id {token_id}>"
        text = self.tokenizer.id_to_token(token_id)
        return f"<id {token_id}>" if text is None else text

    def decode_each(self, ids: np.ndarray | list[int]) -> list[str]:
        """Readable text of each token on its own (byte-level pieces decoded, specials kept).

        An id outside the vocabulary shows as `<bad id N>` (the Rust decoder overflows on ids
        beyond 32 bits and says nothing useful about the others).
        """
        if self.word_level:
            return [self.token_text(i) for i in ids]
        size = self.vocab_size
        return [
            self.tokenizer.decode([i], skip_special_tokens=False)
            if 0 <= i < size
            else f"<bad id {i}>"
            for i in map(int, ids)
        ]


def load_tokenizer(path: str | os.PathLike, keep_definition: bool = False) -> LoadedTokenizer:
    """Load `path`: a tokenizer.json, a folder holding one, or a plain JSON vocabulary.

    `keep_definition`: hold the parsed tokenizer.json for the first fast-encoder build (see
    LoadedTokenizer.take_definition); 10 MB for GPT-2, 50 MB for 150k tokens, until then.
    """
    path = Path(path)
    if not path.exists():
        raise TokenizerError(f"{path}: no such tokenizer file or folder; check the path")
    folder = path if path.is_dir() else path.parent
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise TokenizerError(f"{path}: folder holds no tokenizer.json; pass the file or its folder")
    try:
        text = file.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{file}: not a JSON tokenizer or vocabulary ({exc})") from exc
    except RecursionError as exc:
        raise TokenizerError(
            f"{file}: JSON nested too deeply to be a tokenizer or vocabulary"
        ) from exc
    if isinstance(data, dict) and "model" in data:
        return _from_tokenizer_json(file, folder, text, data, data if keep_definition else None)
    if isinstance(data, dict) and data and all(_is_id(v) for v in data.values()):
        too_big = next((k for k, v in data.items() if v > MAX_ID), None)
        if too_big is not None:
            raise TokenizerError(
                f"{file}: token {too_big!r} has id {data[too_big]}, beyond the int32 ids a shard"
                f" holds (at most {MAX_ID}); fix the vocabulary"
            )
        return _from_vocabulary(file, data)
    raise TokenizerError(
        f"{file}: neither a tokenizer.json (no 'model') nor a vocabulary of {{\"TOKEN\": id}}"
    )


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _from_vocabulary(file: Path, vocab: dict[str, int]) -> LoadedTokenizer:
    if len(set(vocab.values())) != len(vocab):
        raise TokenizerError(f"{file}: two tokens share one id; every id must be unique")
    # No unknown token: a word outside the vocabulary must be an error, not a silent <unk>.
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return LoadedTokenizer(
        tokenizer=tokenizer,
        path=file,
        eos_id=_first_present(vocab, EOS_NAMES),
        pad_id=_first_present(vocab, PAD_NAMES),
        bos_id=_first_present(vocab, BOS_NAMES),
        word_level=True,
    )


def _from_tokenizer_json(
    file: Path, folder: Path, text: str, data: dict, keep: dict | None
) -> LoadedTokenizer:
    model = data["model"] if isinstance(data["model"], dict) else {}
    try:
        # From the text already read, so the tokenizer and `data` are the same definition.
        tokenizer = Tokenizer.from_str(text)
    except Exception as exc:  # tokenizers raises plain Exception subclasses from Rust
        raise TokenizerError(f"{file}: cannot load tokenizer ({str(exc).splitlines()[0]})") from exc
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    config = _special_tokens_config(folder)

    def special(key: str, names: tuple[str, ...]) -> int | None:
        name = config.get(key)
        if name is not None:
            if name not in vocab:
                raise TokenizerError(
                    f"{folder}: {key} {name!r} of the config is not in {file.name}"
                )
            return vocab[name]
        return _first_present(vocab, names)

    return LoadedTokenizer(
        tokenizer=tokenizer,
        path=file,
        eos_id=special("eos_token", EOS_NAMES),
        pad_id=special("pad_token", PAD_NAMES),
        bos_id=special("bos_token", BOS_NAMES),
        word_level=model.get("type") == "WordLevel",
        _definition=[keep] if keep is not None and model.get("type") == "BPE" else [],
    )


def _special_tokens_config(folder: Path) -> dict[str, str]:
    """Special tokens named by tokenizer_config.json, then special_tokens_map.json (later wins)."""
    found: dict[str, str] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        config_file = folder / name
        if not config_file.is_file():
            continue
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TokenizerError(f"{config_file}: not valid JSON ({exc})") from exc
        except RecursionError as exc:
            raise TokenizerError(f"{config_file}: JSON nested too deeply") from exc
        if not isinstance(config, dict):
            continue
        for key in ("eos_token", "pad_token", "bos_token"):
            value = config.get(key)
            if isinstance(value, dict):  # AddedToken serialised as {"content": ...}
                value = value.get("content")
            if isinstance(value, str):
                found[key] = value
    return found


def _first_present(vocab: dict[str, int], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in vocab:
            return vocab[name]
    return None
