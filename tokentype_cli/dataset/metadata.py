"""`metadata.yaml`, the `tokenizer/` folder and the sha256 manifest of a dataset folder."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import yaml

from tokentype_cli import __version__
from tokentype_cli.dataset.layout import (
    MANIFEST,
    MANIFEST_DIR,
    METADATA,
    TOKENIZER_EXTRA_FILES,
    TOKENIZER_FILES,
    manifest_files,
    manifest_key,
    sha256_of,
)
from tokentype_cli.errors import OptionError, TokenizerError
from tokentype_cli.tokenizer_loader import LoadedTokenizer

# transformers' config class for each model_type, as `str(type(config))` prints it (what the
# trainer compares tokenizer_model_type with). transformers is not a dependency; a test checks
# this table against it where it is installed.
MODEL_CONFIG_CLASSES = {
    "bert": ("bert", "BertConfig"),
    "bloom": ("bloom", "BloomConfig"),
    "codegen": ("codegen", "CodeGenConfig"),
    "cohere": ("cohere", "CohereConfig"),
    "deepseek_v2": ("deepseek_v2", "DeepseekV2Config"),
    "deepseek_v3": ("deepseek_v3", "DeepseekV3Config"),
    "falcon": ("falcon", "FalconConfig"),
    "gemma": ("gemma", "GemmaConfig"),
    "gemma2": ("gemma2", "Gemma2Config"),
    "gemma3_text": ("gemma3", "Gemma3TextConfig"),
    "gpt2": ("gpt2", "GPT2Config"),
    "gpt_bigcode": ("gpt_bigcode", "GPTBigCodeConfig"),
    "gpt_neo": ("gpt_neo", "GPTNeoConfig"),
    "gpt_neox": ("gpt_neox", "GPTNeoXConfig"),
    "gptj": ("gptj", "GPTJConfig"),
    "granite": ("granite", "GraniteConfig"),
    "llama": ("llama", "LlamaConfig"),
    "mistral": ("mistral", "MistralConfig"),
    "mixtral": ("mixtral", "MixtralConfig"),
    "mpt": ("mpt", "MptConfig"),
    "olmo": ("olmo", "OlmoConfig"),
    "olmo2": ("olmo2", "Olmo2Config"),
    "opt": ("opt", "OPTConfig"),
    "phi": ("phi", "PhiConfig"),
    "phi3": ("phi3", "Phi3Config"),
    "qwen2": ("qwen2", "Qwen2Config"),
    "qwen2_moe": ("qwen2_moe", "Qwen2MoeConfig"),
    "qwen3": ("qwen3", "Qwen3Config"),
    "qwen3_moe": ("qwen3_moe", "Qwen3MoeConfig"),
    "roberta": ("roberta", "RobertaConfig"),
    "stablelm": ("stablelm", "StableLmConfig"),
    "starcoder2": ("starcoder2", "Starcoder2Config"),
    "t5": ("t5", "T5Config"),
}


def model_config_path(tokenizer: LoadedTokenizer, given: Path | None) -> Path:
    """The model's config.json: --model-config, else the one beside the tokenizer."""
    if given is not None:
        if not given.is_file():
            raise TokenizerError(f"{given}: no such model config file; check --model-config")
        return given
    beside = tokenizer.path.parent / "config.json"
    if beside.is_file():
        return beside
    raise TokenizerError(
        f"{tokenizer.path.parent}: no config.json beside the tokenizer; the dataset's"
        " metadata.yaml needs the model type: pass --model-config PATH/config.json"
    )


def model_type_string(config_path: Path, override: str | None = None) -> str:
    """What `str(type(AutoConfig.from_pretrained(...)))` prints for this config."""
    if override is not None:
        return override
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{config_path}: not a readable JSON model config ({exc})") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str):
        raise TokenizerError(
            f"{config_path}: no 'model_type' string; it is the model's config.json that is needed"
        )
    known = MODEL_CONFIG_CLASSES.get(model_type)
    if known is None:
        raise TokenizerError(
            f"{config_path}: model_type {model_type!r} is not in tokentype's table; pass"
            " --tokenizer-model-type with what python prints for"
            " type(transformers.AutoConfig.from_pretrained(MODEL))"
        )
    module, name = known
    return f"<class 'transformers.models.{module}.configuration_{module}.{name}'>"


def base_vocab_size(tokenizer: LoadedTokenizer) -> int:
    """The tokenizer's vocabulary without added tokens, as Hugging Face's `vocab_size` reports
    it; for a plain {"TOKEN": id} vocabulary, one more than its largest id."""
    if tokenizer.word_level:
        return tokenizer.vocab_size
    return tokenizer.tokenizer.get_vocab_size(with_added_tokens=False)


def write_tokenizer_folder(
    tokenizer: LoadedTokenizer, config_path: Path, folder: Path
) -> list[str]:
    """Copy every tokenizer file of the source folder and the model config; return their names.

    Special tokens added with --special-tokens go into tokenizer.json and the configs, so the
    folder loads as the tokenizer that tokenized the data.
    """
    folder.mkdir(parents=True, exist_ok=True)
    source = tokenizer.path.parent
    from_folder = tokenizer.path.name == "tokenizer.json"
    written = []
    for name in TOKENIZER_FILES + TOKENIZER_EXTRA_FILES:
        if name == "config.json":
            shutil.copyfile(config_path, folder / name)
        elif name == "tokenizer.json":
            if from_folder and not tokenizer.added_special:
                shutil.copyfile(tokenizer.path, folder / name)
            else:  # a plain vocabulary, another file name, or added tokens: the loaded tokenizer
                (folder / name).write_text(tokenizer.tokenizer.to_str(), encoding="utf-8")
        elif from_folder and (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
        else:
            continue
        written.append(name)
    if tokenizer.added_special:
        written.extend(_record_special_tokens(tokenizer, folder, written))
    return sorted(set(written), key=written.index)


def _record_special_tokens(tokenizer: LoadedTokenizer, folder: Path, written: list[str]):
    """Name the added special tokens in tokenizer_config.json and special_tokens_map.json (and
    added_tokens.json beside a slow tokenizer's vocabulary), as save_pretrained writes them."""
    special = tokenizer.added_special
    ids = {
        content: tokenizer.vocab[content]
        for value in special.values()
        for content in (value if isinstance(value, list) else [value])
    }
    names = []
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = folder / name
        data = _json_object(path) if path.is_file() else {}
        for key, value in special.items():
            if key == "additional_special_tokens":
                current = data.get(key)
                listed = current if isinstance(current, list) else []
                data[key] = listed + [token for token in value if token not in listed]
            else:
                data[key] = value
        if name == "tokenizer_config.json":
            decoder = data.get("added_tokens_decoder")
            decoder = decoder if isinstance(decoder, dict) else {}
            for content, token_id in ids.items():
                decoder.setdefault(
                    str(token_id),
                    {
                        "content": content,
                        "lstrip": False,
                        "normalized": False,
                        "rstrip": False,
                        "single_word": False,
                        "special": True,
                    },
                )
            data["added_tokens_decoder"] = decoder
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        names.append(name)
    if "vocab.json" in written or "vocab.txt" in written:
        path = folder / "added_tokens.json"
        data = _json_object(path) if path.is_file() else {}
        base = base_vocab_size(tokenizer)
        data.update({content: i for content, i in ids.items() if i >= base})
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        names.append("added_tokens.json")
    return names


def _json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path}: not valid JSON ({exc}); fix or remove it") from exc
    return data if isinstance(data, dict) else {}


def write_metadata(folder: Path, metadata: Mapping[str, object]) -> Path:
    path = folder / METADATA
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(dict(metadata), handle, default_flow_style=False, sort_keys=True)
    return path


def base_metadata(
    *,
    seq_len: int,
    vocab_size: int,
    model_type: str,
    train: int,
    dev: int,
    test: int,
    max_batch_size_train: int,
    max_batch_size_dev: int | None,
    seed: int,
    shuffle: bool,
) -> dict[str, object]:
    return {
        "max_seq_length": seq_len,
        "token_type_ids": True,
        "vocab_size": vocab_size,
        "tokenizer_model_type": model_type,
        "number_of_training_files": train,
        "number_of_dev_files": dev,
        "number_of_test_files": test,
        "max_batch_size_train": max_batch_size_train,
        "max_batch_size_dev": max_batch_size_dev,
        "shuffle": shuffle,
        "seed": seed,
        "tokentype_version": __version__,
    }


def source_date_epoch() -> int | None:
    """SOURCE_DATE_EPOCH (reproducible-builds.org): the time a build stamps instead of now."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 12:
        raise OptionError(
            f"SOURCE_DATE_EPOCH={value!r}: not a whole number of seconds since 1970; set it to"
            " e.g. $(git log -1 --format=%ct) or unset it"
        )
    return int(value)


def write_manifest(folder: Path) -> Path:
    """sha256, size and modified time of every file but the manifest's own folder; written last.

    With SOURCE_DATE_EPOCH set, every file's and folder's modified time is clamped to it first,
    so two builds of the same data are byte-identical, manifest included."""
    epoch = source_date_epoch()
    if epoch is not None:
        _clamp_times(folder, epoch)
    entries = {}
    for path in manifest_files(folder):
        stat = path.stat()
        entries[manifest_key(path.relative_to(folder))] = {
            "sha256": sha256_of(path),
            "size": stat.st_size,
            "modified_time": stat.st_mtime,
        }
    (folder / MANIFEST_DIR).mkdir(exist_ok=True)
    target = folder / MANIFEST
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(entries, handle, indent=1, sort_keys=True)
        handle.write("\n")
    if epoch is not None:
        _clamp_times(folder, epoch)
    return target


def _clamp_times(folder: Path, epoch: int) -> None:
    # Deepest first: setting a file's time does not touch its folder's, but making one does.
    for path in [*sorted(folder.rglob("*"), key=lambda p: -len(p.parts)), folder]:
        if path.is_symlink():
            continue
        if path.stat().st_mtime > epoch:
            os.utime(path, (epoch, epoch))
