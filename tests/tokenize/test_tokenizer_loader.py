"""The tokenizer loader: tokenizer.json, folders with configs, and plain vocabularies."""

from __future__ import annotations

import json

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
