"""The tokenizer loader: tokenizer.json, folders with configs, and plain vocabularies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import CODON_VOCAB, CONFORMANCE, EXAMPLE1_IDS
from tokentype_cli.errors import TokenizerError
from tokentype_cli.tokenizer_loader import load_tokenizer


def test_codon_vocabulary_is_word_level_with_guessed_specials():
    tokenizer = load_tokenizer(CODON_VOCAB)
    assert tokenizer.word_level
    assert (tokenizer.eos_id, tokenizer.pad_id, tokenizer.bos_id) == (2, 69, None)
    assert tokenizer.vocab_size == 70  # ids run to 69, though only 8 are used
    encoded = tokenizer.tokenizer.encode("GAA GGC GCC ATG ATC GAC SEP").ids
    assert encoded == EXAMPLE1_IDS
    assert tokenizer.decode_each(EXAMPLE1_IDS[:2]) == ["GAA", "GGC"]
    assert tokenizer.token_id("ATG") == 10
    assert tokenizer.token_id(69) == 69
    assert tokenizer.pad_or_eos_id == 69


def test_unknown_words_are_errors_not_unk():
    tokenizer = load_tokenizer(CODON_VOCAB)
    with pytest.raises(Exception, match="UNK"):
        tokenizer.tokenizer.encode("GAA TTT")
    with pytest.raises(TokenizerError, match="'TTT' is not in the vocabulary"):
        tokenizer.token_id("TTT")
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tokenizer.token_id(70)


def test_gpt2_folder_reads_its_special_tokens():
    folder = CONFORMANCE / "tokenizer-gpt2"
    if not folder.is_dir():
        pytest.skip(f"GPT-2 tokenizer not present at {folder} (outside the workplace)")
    for given in (folder, folder / "tokenizer.json"):
        tokenizer = load_tokenizer(given)
        assert (tokenizer.eos_id, tokenizer.bos_id, tokenizer.pad_id) == (50256, 50256, None)
        assert tokenizer.pad_or_eos_id == 50256
        assert tokenizer.vocab_size == 50257
        assert not tokenizer.word_level
        assert tokenizer.decode_each([16594, 257]) == ["Write", " a"]


def test_config_names_the_pad_token(tmp_path):
    (tmp_path / "tokenizer.json").write_text(
        json.dumps(
            {
                "version": "1.0",
                "model": {
                    "type": "WordLevel",
                    "vocab": {"a": 0, "<x>": 1, "<y>": 2},
                    "unk_token": "a",
                },
                "pre_tokenizer": {"type": "WhitespaceSplit"},
            }
        )
    )
    (tmp_path / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": {"content": "<x>"}, "pad_token": "<y>"})
    )
    tokenizer = load_tokenizer(tmp_path)
    assert (tokenizer.eos_id, tokenizer.pad_id) == (1, 2)
    assert tokenizer.word_level


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON tokenizer or vocabulary"),
        ('{"a": 1, "b": 1}', "two tokens share one id"),
        ('{"a": "x"}', "neither a tokenizer.json"),
        ("[1, 2]", "neither a tokenizer.json"),
    ],
)
def test_bad_tokenizer_files(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    path.write_text(content)
    with pytest.raises(TokenizerError, match=message) as error:
        load_tokenizer(path)
    assert str(path) in str(error.value)


def test_missing_paths(tmp_path):
    with pytest.raises(TokenizerError, match="no such tokenizer"):
        load_tokenizer(tmp_path / "nope.json")
    with pytest.raises(TokenizerError, match=r"holds no tokenizer\.json"):
        load_tokenizer(tmp_path)


# --- Hugging Face model ids ---------------------------------------------------------------------


def _fake_hub(monkeypatch, source, calls):
    """huggingface_hub with a snapshot_download that copies `source` into the cache layout."""
    import sys
    import types

    from tests.helpers import hub_cache

    def snapshot_download(repo_id, allow_patterns=None, cache_dir=None):
        calls.append((repo_id, tuple(allow_patterns), cache_dir))
        return str(hub_cache(Path(cache_dir), repo_id, source))

    module = types.ModuleType("huggingface_hub")
    module.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)


def test_a_model_id_not_cached_is_downloaded_without_weights(tmp_path, monkeypatch):
    source = tmp_path / "src"
    source.mkdir()
    (source / "tokenizer.json").write_text(
        json.dumps({"model": {"type": "WordLevel", "vocab": {"a": 0, "</s>": 1}, "unk_token": "a"}})
    )
    calls = []
    _fake_hub(monkeypatch, source, calls)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    loaded = load_tokenizer("acme/tiny")
    assert loaded.eos_id == 1
    ((repo, patterns, cache),) = calls
    assert repo == "acme/tiny" and cache == str(tmp_path / "cache")
    assert "*.json" in patterns and not any("safetensors" in p or ".bin" in p for p in patterns)
    load_tokenizer("acme/tiny")  # now cached: no second download
    assert len(calls) == 1


def test_offline_never_downloads(tmp_path, monkeypatch):
    calls = []
    _fake_hub(monkeypatch, tmp_path, calls)
    with pytest.raises(TokenizerError, match="HF_HUB_OFFLINE is set") as error:
        load_tokenizer("acme/tiny")
    assert calls == [] and "hf download acme/tiny" in str(error.value)


def test_a_missing_json_path_is_not_taken_for_a_model_id(tmp_path):
    with pytest.raises(TokenizerError, match="check the path"):
        load_tokenizer("tok/tokenizer.json")
