"""The encoder layer: tiktoken's ids equal tokenizers' wherever fast_bpe lets it run, and it
declines (auto) or refuses (--encoder tiktoken) wherever one of its checks fails."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import pickle
import random
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer

from tests.helpers import CODON_VOCAB, CONFORMANCE, ROOT, conformance_table, invoke
from tokentype_cli.errors import OptionError
from tokentype_cli.tokenize.encoders import TiktokenEncoder, TokenizersEncoder, build_encoder
from tokentype_cli.tokenize.fast_bpe import (
    _TO_LATIN1,
    PATTERNS,
    _not_self_encoding,
    plan_tiktoken,
)
from tokentype_cli.tokenizer_loader import load_tokenizer

MULTILINGUAL = [
    "Grüße aus München, 1234567 Äpfel und 3.14159 Birnen!",
    "日本語のテキストと中文混合，还有한국어 문장도 있습니다。",
    "Привет, мир! Ελληνικά κείμενα — and العربية text ١٢٣",
    "def f(x):\n    return x ** 2  # square\n\n\tif x:\r\n        pass",
    "emoji 😀👍🏽👨‍👩‍👧🇫🇷 and combining e\u0301 a\u0308\u0301 n\u0303",
    "I'M sure they'll say it's DON'T-stop 'S 'll 've",
    "   leading spaces\u00a0nbsp\u3000ideographic   trailing   ",
]


def _bench_module():
    spec = importlib.util.spec_from_file_location(
        "bench_tokenize", ROOT / "benchmarks" / "bench_tokenize.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def bench_texts(lines: int) -> list[str]:
    """Prompts and completions of the benchmark's generated input, as the reader makes them."""
    texts = []
    for line in _bench_module().markov_lines(lines, 3):
        record = json.loads(line)
        texts += [record["prompt"].rstrip(" "), " " + record["completion"].lstrip(" ")]
    return texts


def conformance_texts() -> list[str]:
    texts = []
    for row in conformance_table().values():
        for line in (CONFORMANCE / row["input"]).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            loaded = json.loads(line)
            for item in loaded if isinstance(loaded, list) else [loaded]:
                texts += [item.get("prompt", "").rstrip(" "), " " + item["completion"].lstrip(" ")]
    return texts


# --- tokenizers under test -------------------------------------------------------------------


def save(tokenizer_json: dict, folder: Path, name: str) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(tokenizer_json), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A byte-level BPE with Llama-3's split regex and BOS template, trained here."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PATTERNS["llama3"]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=2500,
        special_tokens=["<|begin_of_text|>", "<|eot_id|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = bench_texts(1000) + MULTILINGUAL * 20
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 0)]
    )
    return json.loads(tokenizer.to_str())


def variant(base: dict, **changes) -> dict:
    spec = json.loads(json.dumps(base))
    spec.update(changes)
    return spec


def qwen2_style(base: dict) -> dict:
    """Qwen2's split regex, NFC, no BOS, and a normalized added token NFC changes."""
    spec = variant(
        base,
        normalizer={"type": "NFC"},
        post_processor={"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                        "use_regex": False},
    )  # fmt: skip
    spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = PATTERNS["qwen2"]
    spec["added_tokens"].append(added(len(spec["model"]["vocab"]), "cafe\u0301", normalized=True))
    return spec


def gpt2_flags_style(base: dict) -> dict:
    """GPT-2's ByteLevel regex with a prefix space, and added tokens with every flag set."""
    spec = variant(
        base,
        pre_tokenizer={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                       "use_regex": True},
        post_processor=None,
    )  # fmt: skip
    n = len(spec["model"]["vocab"])
    spec["added_tokens"] += [
        added(n, "<mask>", special=True, lstrip=True),
        added(n + 1, "[R]", special=True, rstrip=True),
        added(n + 2, "word", single_word=True, normalized=True),
        added(n + 3, "<|eot_id|>x", special=True),  # longer than <|eot_id|>: leftmost-longest
        added(n + 4, "ab", normalized=True),
    ]
    return spec


def added(token_id: int, content: str, **flags) -> dict:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": False} | flags  # fmt: skip


SPECIAL_TEXTS = {
    "gpt2": ["<|endoftext|>"],
    "chatml": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im_start|>user\n"],
    "llama3": ["<|begin_of_text|>", "<|eot_id|>"],
    "qwen2": ["<|eot_id|>", "cafe\u0301", "café", "<|begin_of_text|>"],
    "flags": ["<mask>", "  <mask>  ", "[R]", "[R]   \n", "word", " word ", "awordb", "<|eot_id|>x",
              "<|eot_id|>", "ab", "xaby"],
}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizers_under_test(trained, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("tokenizers")
    found = {
        "llama3": save(trained, folder, "llama3"),
        "qwen2": save(qwen2_style(trained), folder, "qwen2"),
        "flags": save(gpt2_flags_style(trained), folder, "flags"),
    }
    if CONFORMANCE.is_dir():
        found["gpt2"] = CONFORMANCE / "tokenizer-gpt2"
        found["chatml"] = CONFORMANCE / "tokenizer-chatml"
    return found


NAMES = ["gpt2", "chatml", "llama3", "qwen2", "flags"]


_BUILT: dict = {}


def both(paths: dict, name: str, split_special: bool = False):
    """tiktoken's and tokenizers' encoders for one tokenizer, built once per test module run."""
    if name not in paths:
        pytest.skip(f"the {name} tokenizer is in ../shared/conformance, absent here")
    key = (paths[name], split_special)
    if key not in _BUILT:
        loaded = load_tokenizer(paths[name], keep_definition=True)
        loaded.tokenizer.encode_special_tokens = split_special
        fast = build_encoder(loaded, "tiktoken")
        assert isinstance(fast, TiktokenEncoder)
        _BUILT[key] = fast, TokenizersEncoder(loaded)
    return _BUILT[key]


def assert_same(fast, reference, texts: list[str]) -> None:
    got, want = fast.encode(texts), reference.encode(texts)
    np.testing.assert_array_equal(got.length, want.length)
    np.testing.assert_array_equal(got.ids, want.ids)
    assert got.ids.dtype == np.int32


# --- the same ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("split_special", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_fixed_texts_give_the_same_ids(tokenizers_under_test, name, split_special):
    fast, reference = both(tokenizers_under_test, name, split_special)
    texts = MULTILINGUAL + SPECIAL_TEXTS[name] + ["", " ", "\n", "a" * 10_000, "😀" * 3000]
    # Text spelling the encoder's own markers, right after a special token or another text.
    texts += [f"{SPECIAL_TEXTS[name][0]}\ufdd0/\x00x", "\ufdd00\x00y", "z\x00", "\ufdd0", "\x00"]
    texts += [f"x{s}y {s} {s}{s}\n{s}" for s in SPECIAL_TEXTS[name]]
    assert_same(fast, reference, texts)
    assert_same(fast, reference, texts[::-1])
    for text in texts:  # one text a batch, as the bad-line search encodes them
        assert_same(fast, reference, [text])


@pytest.mark.parametrize("name", NAMES)
def test_conformance_and_benchmark_inputs_give_the_same_ids(tokenizers_under_test, name):
    fast, reference = both(tokenizers_under_test, name)
    if CONFORMANCE.is_dir():
        assert_same(fast, reference, conformance_texts())
    assert_same(fast, reference, bench_texts(1000))


PIECES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n ", "\u00a0", "\u3000", "\r"]
    ),
    st.from_regex(r"[0-9]{1,7}", fullmatch=True),
    st.sampled_from(["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "🧑🏿‍🚀"]),
    st.sampled_from(["e\u0301", "a\u0308\u0301", "\u0301", "\u0301\u0301", "ñ", "n\u0303", "é"]),
    st.sampled_from(["'s", "'S", "'ll", "don't", "I'M", "'ſ", "'\u212a"]),
    st.from_regex(r"[A-Za-z]{1,10}", fullmatch=True),
)


def long_word(seed: int) -> str:
    """A 10,000-character word: letters, or one repeated character, or mixed scripts."""
    rng = random.Random(seed)
    kind = rng.randrange(3)
    if kind == 0:
        return "".join(rng.choice("abcdefghij") for _ in range(10_000))
    if kind == 1:
        return rng.choice("aé😀-_=") * 10_000
    return "".join(rng.choice("aäß日本ζ") for _ in range(10_000))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.parametrize("split_special", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_generated_text_gives_the_same_ids(tokenizers_under_test, name, split_special, data):
    fast, reference = both(tokenizers_under_test, name, split_special)
    piece = st.one_of(PIECES, st.sampled_from(SPECIAL_TEXTS[name]))
    text = st.lists(piece, max_size=16).map("".join)
    texts = data.draw(st.lists(text, min_size=1, max_size=6))
    if data.draw(st.booleans()):
        texts.append(long_word(data.draw(st.integers(0, 2**32))))
    assert_same(fast, reference, texts)


def test_encode_special_tokens_is_read_at_each_batch(tokenizers_under_test):
    """The flag --split-special-tokens sets may come after the encoder is built."""
    loaded = load_tokenizer(tokenizers_under_test["flags"])
    fast = build_encoder(loaded, "auto")
    texts = SPECIAL_TEXTS["flags"]
    for split in (True, False, True):
        loaded.tokenizer.encode_special_tokens = split
        assert_same(fast, TokenizersEncoder(loaded), texts)
    assert fast.encode(["<mask>"]).ids.tolist() != [loaded.tokenizer.token_to_id("<mask>")]


def test_no_texts_give_no_ids(tokenizers_under_test):
    fast, reference = both(tokenizers_under_test, "llama3")
    for encoder in (fast, reference):
        for encoded in (encoder.encode([]), encoder.encode_with_offsets([])):
            assert len(encoded.ids) == len(encoded.length) == 0


def test_encoders_pickle_and_give_the_same_ids_after(tokenizers_under_test):
    for name in ("llama3", "flags"):
        loaded = load_tokenizer(tokenizers_under_test[name])
        loaded.tokenizer.encode_special_tokens = True
        for encoder in (build_encoder(loaded, "auto"), build_encoder(loaded, "tokenizers")):
            copy = pickle.loads(pickle.dumps(encoder))
            assert copy.name == encoder.name
            assert_same(copy, encoder, MULTILINGUAL + SPECIAL_TEXTS[name])


def assert_same_offsets(fast, reference, texts: list[str]) -> None:
    got, want = fast.encode_with_offsets(texts), reference.encode_with_offsets(texts)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.length, want.length)
    np.testing.assert_array_equal(got.char_start, want.char_start)
    np.testing.assert_array_equal(got.char_end, want.char_end)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.parametrize("name", NAMES)
def test_offsets_are_tokenizers_offsets(tokenizers_under_test, name, data):
    fast, reference = both(tokenizers_under_test, name)
    assert_same_offsets(fast, reference, MULTILINGUAL + SPECIAL_TEXTS[name] + ["", "😀" * 5])
    piece = st.one_of(PIECES, st.sampled_from(SPECIAL_TEXTS[name]))
    texts = data.draw(st.lists(st.lists(piece, max_size=12).map("".join), min_size=1, max_size=5))
    assert_same_offsets(fast, reference, texts)


# --- refusing what cannot be shown equal -----------------------------------------------------


def refused(path: Path, check: str) -> None:
    """auto falls back to tokenizers naming the check; --encoder tiktoken is a usage error."""
    loaded = load_tokenizer(path)
    encoder = build_encoder(loaded, "auto")
    assert encoder.name == "tokenizers"
    assert encoder.declined == check
    with pytest.raises(OptionError, match=f"the {check} check failed"):
        build_encoder(loaded, "tiktoken")


def test_word_piece_is_refused(tmp_path):
    tokenizer = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "wordpiece.json"
    tokenizer.save(str(path))
    refused(path, "model")


def test_the_codon_vocabulary_is_refused():
    refused(CODON_VOCAB, "model")


@pytest.mark.parametrize(
    "normalizer", [{"type": "Lowercase"}, {"type": "NFKC"}, {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]}]
)  # fmt: skip
def test_a_normalizer_it_cannot_mirror_is_refused(trained, tmp_path, normalizer):
    refused(save(variant(trained, normalizer=normalizer), tmp_path, "norm"), "normalizer")


def test_merges_out_of_id_order_are_ranked_by_their_place(trained, tmp_path):
    """tokenizers ranks a merge by its place in the list, not by the id it makes (GPT-NeoX's
    whitespace tokens have the last ids and the first merges)."""
    spec = variant(trained)
    vocab = spec["model"]["vocab"]
    first, second = ("".join(m) for m in spec["model"]["merges"][10:12])
    vocab[first], vocab[second] = vocab[second], vocab[first]
    path = save(spec, tmp_path, "swapped")
    fast = build_encoder(load_tokenizer(path), "auto")
    assert fast.name == "tiktoken"
    assert_same(fast, TokenizersEncoder(load_tokenizer(path)), MULTILINGUAL + bench_texts(1000))


def test_a_merge_of_a_later_merges_result_is_refused(tmp_path):
    path = save(tiny_bpe(["bc", "abc"], ["a bc", "b c"]), tmp_path, "tiny")
    refused(path, "merges order")


@pytest.mark.parametrize(
    "pre_tokenizer",
    [
        {"type": "Whitespace"},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"\s+|\w+"}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
    ],
)  # fmt: skip
def test_a_pre_tokenizer_other_than_the_known_regexes_is_refused(trained, tmp_path, pre_tokenizer):
    refused(save(variant(trained, pre_tokenizer=pre_tokenizer), tmp_path, "pre"), "pre-tokenizer")


def test_a_post_processor_adding_pairs_is_refused(trained, tmp_path):
    roberta = {"type": "RobertaProcessing", "sep": ["<|eot_id|>", 1], "cls": ["<|begin_of_text|>", 0],
               "trim_offsets": True, "add_prefix_space": False}  # fmt: skip
    refused(save(variant(trained, post_processor=roberta), tmp_path, "post"), "post-processor")


def tiny_bpe(tokens: list[str], merges: list[str]) -> dict:
    """A byte-level BPE with the 256 byte tokens, then `tokens` (ids in that order)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(alphabet))}
    for token in tokens:
        vocab[token] = len(vocab)
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None, "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges},
    }  # fmt: skip


def test_several_merges_for_one_token_are_refused(tmp_path):
    # Tokenizers converted from tiktoken (Llama-3's) list every split of each token.
    path = save(tiny_bpe(["ab", "bc", "abc"], ["a b", "b c", "a bc", "ab c"]), tmp_path, "tiny")
    refused(path, "merges order")
    with pytest.raises(OptionError, match="both make 'abc'"):
        build_encoder(load_tokenizer(path), "tiktoken")


def test_a_token_the_merges_do_not_rebuild_is_refused_and_would_differ(tmp_path):
    # bc merges first, so "abc" alone stops at a + bc: no merge joins those two, but tiktoken
    # joins any two tokens whose concatenation is a token.
    path = save(tiny_bpe(["bc", "ab", "abc"], ["b c", "a b", "ab c"]), tmp_path, "tiny")
    refused(path, "self-encoding")
    loaded = load_tokenizer(path)
    assert loaded.tokenizer.encode("abc").tokens == ["a", "bc"]
    unchecked = plan_tiktoken(load_tokenizer(save(tiny_bpe(["ab"], ["a b"]), tmp_path, "ok")))
    vocab = loaded.tokenizer.get_vocab()
    unchecked.ranks = {t.translate(_TO_LATIN1).encode("latin-1"): i for t, i in vocab.items()}
    fast = TiktokenEncoder(unchecked, TokenizersEncoder(loaded))
    assert fast.encode(["abc"]).ids.tolist() == [loaded.tokenizer.token_to_id("abc")]


def test_a_consistent_tiny_bpe_is_accepted(tmp_path):
    path = save(tiny_bpe(["ab", "bc", "abc"], ["a b", "b c", "ab c"]), tmp_path, "tiny")
    fast = build_encoder(load_tokenizer(path), "auto")
    assert fast.name == "tiktoken"
    assert_same(fast, TokenizersEncoder(load_tokenizer(path)), ["abc", "abcbc aabc", "bcab"])


# --- the self-encoding check against a literal simulation ------------------------------------


def merge_by_list(symbols: list[int], merges: dict) -> list[int]:
    """tokenizers' BPE: merge the adjacent pair first in the merges list, leftmost first."""
    while True:
        found = [
            (merges[p][0], i) for i, p in enumerate(itertools.pairwise(symbols)) if p in merges
        ]
        if not found:
            return symbols
        _, i = min(found)
        symbols[i : i + 2] = [merges[(symbols[i], symbols[i + 1])][1]]


def merge_by_rank(symbols: list[int], spelled: list[str]) -> list[int]:
    """tiktoken's BPE: merge the adjacent pair whose concatenation has the lowest rank."""
    rank = {text: i for i, text in enumerate(spelled)}
    while True:
        found = [
            (rank[spelled[a] + spelled[b]], i)
            for i, (a, b) in enumerate(itertools.pairwise(symbols))
            if spelled[a] + spelled[b] in rank
        ]
        if not found:
            return symbols
        made, i = min(found)
        symbols[i : i + 2] = [made]


@settings(max_examples=150, deadline=None)
@given(
    letters=st.integers(1, 3),
    picks=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), max_size=14),
    texts=st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=16), max_size=20),
)
def test_self_encoding_check_matches_a_literal_simulation(letters, picks, texts):
    spelled = [chr(97 + i) for i in range(letters)]
    merges: dict[tuple[int, int], tuple[int, int]] = {}  # (a, b) -> (position, result)
    for x, y in picks:
        a, b = x % len(spelled), y % len(spelled)
        if spelled[a] + spelled[b] not in spelled:
            spelled.append(spelled[a] + spelled[b])
            merges[(a, b)] = (len(merges), len(spelled) - 1)
    if not merges:
        return
    u, v = (np.array([p[k] for p in merges]) for k in (0, 1))
    z = np.array([made for _, made in merges.values()])
    leaves = {i: [i] for i in range(letters)}
    for (a, b), (_, made) in merges.items():
        leaves[made] = leaves[a] + leaves[b]
    literal = {made for made in z.tolist() if merge_by_list(list(leaves[made]), merges) != [made]}
    assert set(_not_self_encoding(u, v, z, len(spelled)).tolist()) == literal
    if not literal:  # the check passes: both merge orders give the same tokens on any text
        for text in texts:
            symbols = [s % letters for s in text]
            assert merge_by_list(list(symbols), merges) == merge_by_rank(list(symbols), spelled)


# --- through the command ---------------------------------------------------------------------


def test_conformance_runs_tiktoken_under_auto_and_says_so(conformance_dir, tmp_path):
    for encoder in ("auto", "tokenizers"):
        out = tmp_path / f"{encoder}.h5"
        result = invoke(
            "tokenize", conformance_dir / "pretraining" / "input.jsonl", "-o", out,
            "--tokenizer", conformance_dir / "tokenizer-gpt2", "--max-seq-length", 1024,
            "--keep-prompt-only-sequences", "--encoder", encoder, "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        want = "tiktoken" if encoder == "auto" else "tokenizers"
        assert json.loads(result.stdout)["encoder"] == want
        with h5py.File(out) as shard:
            assert json.loads(shard["input_ids"].attrs["tokentype_options"])["encoder"] == want


def test_encoder_tiktoken_on_the_codon_vocabulary_is_exit_2_naming_the_check(tmp_path):
    result = invoke(
        "tokenize", "-", "-o", tmp_path / "x.h5", "--tokenizer", CODON_VOCAB,
        "--encoder", "tiktoken", input='{"prompt": "GAA", "completion": "ATG"}\n',
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "the model check failed: a word-level vocabulary" in result.stderr
    assert not (tmp_path / "x.h5").exists()


def test_summary_names_the_encoder_and_why_not_tiktoken(tmp_path):
    result = invoke(
        "tokenize", "-", "-o", tmp_path / "x.h5", "--tokenizer", CODON_VOCAB,
        input='{"prompt": "GAA", "completion": "ATG"}\n',
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "encoder tokenizers (tiktoken not used: its model check failed)" in result.stderr


def test_a_line_the_tokenizer_refuses_is_reported_the_same_by_both(conformance_dir, tmp_path):
    lines = '{"completion": "fine"}\n{"completion": "lone \\ud800 surrogate"}\n'
    errors = set()
    for encoder in ("auto", "tokenizers"):
        result = invoke(
            "tokenize", "-", "-o", tmp_path / "x.h5", "--tokenizer",
            conformance_dir / "tokenizer-gpt2", "--encoder", encoder, "--max-seq-length", 1024,
            input=lines,
        )  # fmt: skip
        assert result.exit_code == 1
        errors.add(result.stderr)
    (error,) = errors
    assert error.startswith("Error: <stdin>:2: the tokenizer cannot encode this line")


@pytest.mark.skipif(
    not __import__("os").environ.get("TOKENTYPE_EXHAUSTIVE"),
    reason="every code point through both encoders takes minutes; set TOKENTYPE_EXHAUSTIVE=1"
    " (worth it after upgrading tokenizers or tiktoken: their regex engines' Unicode tables)",
)
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_every_code_point_splits_alike(conformance_dir, tmp_path, pattern):
    spec = json.loads((conformance_dir / "tokenizer-gpt2" / "tokenizer.json").read_text())
    if pattern != "gpt2":
        spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": PATTERNS[pattern]}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]}  # fmt: skip
        spec["normalizer"] = {"type": "NFC"} if pattern == "qwen2" else None
    loaded = load_tokenizer(save(spec, tmp_path, pattern))
    fast, reference = build_encoder(loaded, "tiktoken"), TokenizersEncoder(loaded)
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for first in range(0, len(points), 4096):
        texts = [
            f"a{c}a {c}1{c}\n{c} {c}{c}'{c}s '{c} x{c}\u0301 {c}\u00a0\n\n{c}"
            # case classes (o200k, tekken), a contraction after a word, '/' after punctuation
            f" A{c}b{c}B{c}'S {c}/\n{c}\r/ 1234{c}"
            for c in map(chr, points[first : first + 4096])
        ]
        assert_same(fast, reference, texts)


def test_the_kept_definition_gives_the_plan_serialising_gives(tokenizers_under_test):
    for name in ("llama3", "qwen2", "flags"):
        kept = load_tokenizer(tokenizers_under_test[name], keep_definition=True)
        assert kept.take_definition() is not None and kept.take_definition() is None
        kept = load_tokenizer(tokenizers_under_test[name], keep_definition=True)
        assert plan_tiktoken(kept) == plan_tiktoken(load_tokenizer(tokenizers_under_test[name]))


def test_tokens_added_after_loading_are_seen(tokenizers_under_test):
    """The checks read the loaded file's definition only while it still describes the tokenizer."""
    loaded = load_tokenizer(tokenizers_under_test["llama3"], keep_definition=True)
    loaded.tokenizer.add_special_tokens(["<|new|>"])
    loaded.tokenizer.add_tokens(["zebra crossing"])
    fast = build_encoder(loaded, "tiktoken")
    texts = ["a <|new|> b", "the zebra crossing here", *MULTILINGUAL]
    assert_same(fast, TokenizersEncoder(loaded), texts)
    assert loaded.tokenizer.token_to_id("<|new|>") in fast.encode(texts[:1]).ids.tolist()
