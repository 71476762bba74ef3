"""Load a tokenizer from a tokenizer.json, a folder holding one, a plain {"TOKEN": id} vocabulary,
or a Hugging Face model id (from the local cache, else downloaded)."""

from __future__ import annotations

import json
import os
import re
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
# The keys transformers' add_special_tokens takes (GDP's --special_tokens_dict passes them on).
SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
    "additional_special_tokens",
)
# A Hugging Face model id: NAME or ORG/NAME (the hub's characters); a missing *.json is a path.
MODEL_ID = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$(?<!\.json)", re.ASCII
)
# What a download fetches: every tokenizer file and the model config, never the weights.
DOWNLOAD_PATTERNS = ("*.json", "*.txt", "*.model", "*.jinja", "*.tiktoken")


# Special tokens by transformers' key: a string each, a list of them for
# "additional_special_tokens" (as parse_special_tokens checks).
SpecialTokens = dict[str, str | list[str]]


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
    # Special tokens added on top of the files (--special-tokens), by transformers' key.
    added_special: SpecialTokens = field(default_factory=dict, compare=False)

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


def parse_special_tokens(text: str) -> SpecialTokens:
    """GDP's --special_tokens_dict: a JSON object of transformers' special-token keys.

    Single quotes are read as double quotes, as GDP reads them.
    """
    try:
        data = json.loads(text.replace("'", '"'))
    except json.JSONDecodeError as exc:
        raise TokenizerError(
            f"special tokens {text!r}: not a JSON object ({exc}); write e.g."
            ' \'{"sep_token": "[SEP]"}\''
        ) from exc
    if not isinstance(data, dict) or not data:
        raise TokenizerError(
            f'special tokens {text!r}: write a JSON object, e.g. \'{{"sep_token": "[SEP]"}}\''
        )
    for key, value in data.items():
        if key not in SPECIAL_TOKEN_KEYS:
            raise TokenizerError(
                f"special tokens: {key!r} is not one of {', '.join(SPECIAL_TOKEN_KEYS)}"
            )
        listed = key == "additional_special_tokens"
        if listed and not (
            isinstance(value, list) and all(isinstance(v, str) and v for v in value)
        ):
            raise TokenizerError(f"special tokens: {key} must be a list of non-empty strings")
        if not listed and not (isinstance(value, str) and value):
            raise TokenizerError(f"special tokens: {key} must be a non-empty string")
    return data


def load_tokenizer(
    path: str | os.PathLike,
    keep_definition: bool = False,
    special_tokens: SpecialTokens | None = None,
) -> LoadedTokenizer:
    """Load `path`: a tokenizer.json, a folder holding one, a plain JSON vocabulary, or a Hugging
    Face model id (see resolve_model_id).

    `keep_definition`: hold the parsed tokenizer.json for the first fast-encoder build (see
    LoadedTokenizer.take_definition); 10 MB for GPT-2, 50 MB for 150k tokens, until then.
    `special_tokens`: tokens to add as special ones first, as transformers' add_special_tokens
    does (parse_special_tokens).
    """
    path = Path(path)
    if not path.exists():
        if not MODEL_ID.match(str(path)):
            raise TokenizerError(f"{path}: no such tokenizer file or folder; check the path")
        path = resolve_model_id(str(path))
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
        if special_tokens:
            data = _with_special_tokens(file, data, special_tokens)
            text = json.dumps(data, ensure_ascii=False)
        return _from_tokenizer_json(
            file, folder, text, data, data if keep_definition else None, special_tokens or {}
        )
    if special_tokens:
        raise TokenizerError(
            f"{file}: special tokens can only be added to a tokenizer.json, not a plain vocabulary"
        )
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


def hub_cache() -> Path:
    """The Hugging Face hub cache, found as huggingface_hub finds it (without importing it)."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "huggingface" / "hub"


def cached_model(model_id: str, cache: Path | None = None) -> Path | None:
    """The cached snapshot of `model_id` holding a tokenizer.json: the one refs/main names, else
    the newest; None when there is none."""
    root = (cache or hub_cache()) / ("models--" + model_id.replace("/", "--"))
    snapshots = root / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = root / "refs" / "main"
    if ref.is_file():
        named = snapshots / ref.read_text(encoding="utf-8").strip()
        if (named / "tokenizer.json").is_file():
            return named
    found = [s for s in snapshots.iterdir() if (s / "tokenizer.json").is_file()]
    return max(found, key=lambda s: s.stat().st_mtime, default=None)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_model_id(model_id: str) -> Path:
    """The folder of a Hugging Face model id: its cached snapshot, else its tokenizer files and
    config downloaded into the cache (never the weights), unless HF_HUB_OFFLINE is set."""
    cache = hub_cache()
    cached = cached_model(model_id, cache)
    if cached is not None:
        return cached
    fetch = (
        f"run `hf download {model_id} --include '*.json' '*.txt' '*.model' '*.jinja'` where there"
        " is network, or pass a folder holding tokenizer.json"
    )
    if _offline():
        raise TokenizerError(
            f"{model_id}: no such tokenizer file or folder, nor a model in the Hugging Face cache"
            f" {cache} (HF_HUB_OFFLINE is set); {fetch}"
        )
    try:
        # Imported on use: a few hundred milliseconds, and only an id that is not cached pays.
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise TokenizerError(
            f"{model_id}: no such tokenizer file or folder, not cached in {cache}, and"
            f" huggingface_hub is not installed to download it; {fetch}"
        ) from exc
    try:
        folder = Path(
            snapshot_download(
                model_id, allow_patterns=list(DOWNLOAD_PATTERNS), cache_dir=str(cache)
            )
        )
    except Exception as exc:  # the hub raises many kinds: network, 401, 404, disk
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TokenizerError(
            f"{model_id}: no such tokenizer file or folder, not cached in {cache}, and the download"
            f" failed ({reason}); check the id, or {fetch}"
        ) from exc
    if not (folder / "tokenizer.json").is_file():
        raise TokenizerError(
            f"{model_id}: the model on the hub has no tokenizer.json; convert its tokenizer with"
            " transformers (save_pretrained of a fast tokenizer) and pass that folder"
        )
    return folder


def _with_special_tokens(file: Path, data: dict, special: SpecialTokens) -> dict:
    """`data` with the tokens of `special` marked special, new ones given the next ids, as
    transformers' add_special_tokens does."""
    data = dict(data)
    added = [dict(token) for token in data.get("added_tokens") or []]
    model = data["model"] if isinstance(data["model"], dict) else {}
    found = model.get("vocab")
    vocab: dict = found if isinstance(found, dict) else {}
    by_content = {token.get("content"): token for token in added}
    ids = [token.get("id", -1) for token in added]
    if vocab:
        ids.extend(v for v in vocab.values() if isinstance(v, int))
    elif isinstance(model.get("vocab"), list):  # Unigram: [[piece, score], ...]
        ids.append(len(model["vocab"]) - 1)
    next_id = max(ids, default=-1) + 1
    for value in special.values():
        for content in value if isinstance(value, list) else [value]:
            if content in by_content:
                by_content[content]["special"] = True
                continue
            if content in vocab:
                token_id = vocab[content]
            else:
                token_id, next_id = next_id, next_id + 1
            if token_id > MAX_ID:
                raise TokenizerError(f"{file}: no id left for special token {content!r}")
            token = {
                "id": token_id,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            added.append(token)
            by_content[content] = token
    data["added_tokens"] = added
    return data


# config.json keys naming how many positions a model has (GPT-2's, then most others').
POSITION_KEYS = ("n_positions", "max_position_embeddings")


def model_positions(config: Path) -> tuple[int, str] | None:
    """The positions the model of `config` (a config.json) has, and the key naming them; None
    when the file is absent, unreadable or names none."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    for key in POSITION_KEYS:
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, key
    return None


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
    file: Path,
    folder: Path,
    text: str,
    data: dict,
    keep: dict | None,
    special_tokens: SpecialTokens,
) -> LoadedTokenizer:
    model = data["model"] if isinstance(data["model"], dict) else {}
    try:
        # From the text already read, so the tokenizer and `data` are the same definition.
        tokenizer = Tokenizer.from_str(text)
    except Exception as exc:  # tokenizers raises plain Exception subclasses from Rust
        raise TokenizerError(f"{file}: cannot load tokenizer ({str(exc).splitlines()[0]})") from exc
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    config = _special_tokens_config(folder)
    config.update((k, v) for k, v in special_tokens.items() if isinstance(v, str))

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
        added_special=dict(special_tokens),
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
