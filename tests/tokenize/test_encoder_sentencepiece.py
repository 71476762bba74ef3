"""The sentencepiece encoder: its ids and offsets equal tokenizers' wherever fast_spm lets it run,
and it declines (auto) or refuses (--encoder sentencepiece) wherever one of its checks fails.

The SentencePiece-style tokenizers are built here: a BPE trained by `tokenizers` on a small
corpus, laid out as a SentencePiece model is (<unk>, <s>, </s>, the 256 byte pieces, then the
pieces by score) with its merges made as transformers' converter makes them from a .model: every
split of every piece into two pieces, by the score of the piece made (pieces of equal score
interleave, as Llama-2's runs of "▁" do).
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from tokenizers.trainers import BpeTrainer

from tests.helpers import invoke
from tokentype_cli.errors import OptionError
from tokentype_cli.tokenize.encoders import TokenizersEncoder, build_encoder
from tokentype_cli.tokenizer_loader import load_tokenizer

SPACE = "\u2581"
CORPUS = [
    "The quick brown fox jumps over the lazy dog, then the dog sleeps again.",
    "def encode(self, text):\n    return [piece for piece in text.split()]  # ids",
    "Grüße aus München: 1234567 Äpfel und 3.14159 Birnen, naïve café façade.",
    "In 2024 the tokenizer was trained on texts like these; it merges pieces by score.",
    "    indented code\n        more indented\n            deeper still\n",
    "Привет, мир! Ελληνικά κείμενα. 日本語のテキスト。",
]
# Characters the corpus never holds: the trained vocabulary has no piece for them, so both
# encoders spell them as byte pieces.
UNSEEN = [
    "😀",
    "👍🏽",
    "👨\u200d👩\u200d👧",
    "🇫🇷",
    "中",
    "\u0301",
    "e\u0301",
    "\x00",
    "\U0010fffd",
    "ñ",
]


BOS_TEMPLATE = {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
               {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
    "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
}  # fmt: skip


def spm_style(prefix: str = "prepend", extra_added: list[dict] | None = None) -> dict:
    """A SentencePiece-style tokenizer.json: `prefix` is prepend (Prepend + Replace normalizer,
    Llama-2's and Phi-3's files), first or always (a Metaspace pre-tokenizer)."""
    trainer_model = Tokenizer(models.BPE())
    trainer_model.normalizer = normalizers.Replace(" ", SPACE)
    trainer_model.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    trainer = BpeTrainer(vocab_size=400, show_progress=False)
    trainer_model.train_from_iterator(CORPUS * 5, trainer)
    trained = json.loads(trainer_model.to_str())["model"]["vocab"]
    learned = [p for p, _ in sorted(trained.items(), key=lambda item: item[1])]
    runs = [SPACE * k for k in range(2, 9)]  # one score for all, as in Llama-2
    pieces = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256))]
    pieces += [p for p in learned if p not in runs] + runs
    vocab = {p: i for i, p in enumerate(pieces)}
    score = {p: -float(i) for i, p in enumerate(pieces)}
    score |= dict.fromkeys(runs, -1000.0)
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            _added(0, "<unk>", special=True),
            _added(1, "<s>", special=True),
            _added(2, "</s>", special=True),
            *(extra_added or []),
        ],
        "normalizer": None,
        "pre_tokenizer": None,
        "post_processor": BOS_TEMPLATE,
        "decoder": None,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": generate_merges(vocab, score),
        },
    }
    if prefix == "prepend":
        spec["normalizer"] = {
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": SPACE},
                {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
            ],
        }
    else:
        spec["pre_tokenizer"] = {
            "type": "Metaspace", "replacement": SPACE, "prepend_scheme": prefix, "split": False,
        }  # fmt: skip
    return spec


def generate_merges(vocab: dict[str, int], score: dict[str, float]) -> list[list[str]]:
    """transformers' generate_merges for a SentencePiece model: every split of every piece into
    two pieces, by the made piece's score, then the longer first part (a stable sort)."""
    merges = []
    for piece, piece_score in score.items():
        local = [
            (piece[:cut], piece[cut:], piece_score)
            for cut in range(1, len(piece))
            if piece[:cut] in vocab and piece[cut:] in vocab
        ]
        merges += sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]]))
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [[a, b] for a, b, _ in merges]


def _added(token_id: int, content: str, **flags) -> dict:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": False} | flags  # fmt: skip


def phi3_style() -> dict:
    """Prepend + Replace with chat tokens past the vocabulary, flags on some of them, and a
    non-special </s> (special tokens read as text keep it one token)."""
    spec = spm_style("prepend")
    n = len(spec["model"]["vocab"])
    spec["added_tokens"][2]["special"] = False
    spec["added_tokens"] += [
        _added(n, "<|user|>", special=True),
        _added(n + 1, "<|end|>", special=True, rstrip=True),
        _added(n + 2, "<|assistant|>", special=True, lstrip=True),
        _added(n + 3, "<|endoftext|>", special=True),
    ]
    return spec


SPECIAL_TEXTS = ["<s>", "</s>", "<unk>", "<|user|>", "<|end|>", "<|assistant|>", "<|endoftext|>"]
VARIANTS = {
    "prepend": lambda: spm_style("prepend"),
    "first": lambda: spm_style("first"),
    "always": lambda: spm_style("always"),
    "never": lambda: spm_style("never"),
    "phi3": phi3_style,
}


def save(spec: dict, folder: Path, name: str) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("spm")
    return {name: save(make(), folder, name) for name, make in VARIANTS.items()}


_BUILT: dict = {}


def both(paths: dict, name: str, split_special: bool = False):
    """sentencepiece's and tokenizers' encoders for one tokenizer, built once per run."""
    pytest.importorskip("sentencepiece")
    key = (name, split_special)
    if key not in _BUILT:
        loaded = load_tokenizer(paths[name], keep_definition=True)
        loaded.tokenizer.encode_special_tokens = split_special
        fast = build_encoder(loaded, "auto")
        assert fast.name == "sentencepiece", getattr(fast, "declined", None)
        _BUILT[key] = fast, TokenizersEncoder(loaded)
    return _BUILT[key]


def assert_same(fast, reference, texts: list[str], add_special_tokens: bool = False) -> None:
    got = fast.encode(texts, add_special_tokens)
    want = reference.encode(texts, add_special_tokens)
    np.testing.assert_array_equal(got.length, want.length)
    np.testing.assert_array_equal(got.ids, want.ids)
    assert got.ids.dtype == np.int32


def assert_same_offsets(fast, reference, texts: list[str], add_special_tokens=False) -> None:
    got = fast.encode_with_offsets(texts, add_special_tokens)
    want = reference.encode_with_offsets(texts, add_special_tokens)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.length, want.length)
    np.testing.assert_array_equal(got.char_start, want.char_start)
    np.testing.assert_array_equal(got.char_end, want.char_end)


FIXED = [
    *CORPUS,
    *UNSEEN,
    "", " ", "  ", "\n", "a", " a", "  a  ", f"{SPACE}x", f" {SPACE} ", "x" * 5000,
    " " * 40, "\t \t", "😀" * 300, "e\u0301\u0301", "中 文", "ab\x00cd",
    "<s>hello</s> world", " <s> </s> ", "<s><s>", "x<|user|>y", "<|end|>   \n next",
    "a   <|assistant|>b", "<|endoftext|>", "</s>😀", "<unk>",
]  # fmt: skip


@pytest.mark.parametrize("split_special", [False, True])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fixed_texts_give_the_same_ids_and_offsets(paths, name, split_special):
    fast, reference = both(paths, name, split_special)
    for add in (False, True):
        assert_same(fast, reference, FIXED, add)
        assert_same(fast, reference, FIXED[::-1], add)
        assert_same_offsets(fast, reference, FIXED, add)
    for text in FIXED:  # one text a batch, as the bad-line search encodes them
        assert_same(fast, reference, [text])


PIECES = st.one_of(
    st.text(max_size=10),
    st.sampled_from([" ", "  ", "   ", "    ", " " * 9, "\t", "\n", "\r\n", "\u00a0", SPACE]),
    st.sampled_from(UNSEEN),
    st.sampled_from(CORPUS).map(lambda t: t[: len(t) // 2]),
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    st.from_regex(r"[0-9]{1,5}", fullmatch=True),
    st.sampled_from(SPECIAL_TEXTS),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.parametrize("split_special", [False, True])
@pytest.mark.parametrize("name", ["prepend", "first", "phi3"])
def test_generated_text_gives_the_same_ids_and_offsets(paths, name, split_special, data):
    fast, reference = both(paths, name, split_special)
    text = st.lists(PIECES, max_size=14).map("".join)
    texts = data.draw(st.lists(text, min_size=1, max_size=6))
    assert_same(fast, reference, texts, data.draw(st.booleans()))
    assert_same_offsets(fast, reference, texts)


def test_lone_surrogates_go_to_tokenizers_which_refuses_them(paths):
    fast, reference = both(paths, "prepend")
    with pytest.raises(Exception) as from_fast:
        fast.encode(["fine", "lone \ud800"])
    with pytest.raises(Exception) as from_reference:
        reference.encode(["fine", "lone \ud800"])
    assert type(from_fast.value) is type(from_reference.value)


def test_pickled_encoders_give_the_same_ids(paths):
    for split in (False, True):
        fast, reference = both(paths, "phi3", split)
        copy = pickle.loads(pickle.dumps(fast))
        assert copy.name == "sentencepiece"
        assert_same(copy, reference, FIXED)


def test_encode_special_tokens_is_read_at_each_batch(paths):
    pytest.importorskip("sentencepiece")
    loaded = load_tokenizer(paths["phi3"])
    fast = build_encoder(loaded, "auto")
    for split in (True, False, True):
        loaded.tokenizer.encode_special_tokens = split
        assert_same(fast, TokenizersEncoder(loaded), [*SPECIAL_TEXTS, "a<s>b</s>"])


# --- the proof's one construction: scores from the merges, in any order -----------------------


def tiny(pieces: list[str], merges: list[list[str]]) -> dict:
    """A Prepend + Replace tokenizer of `pieces` (after <unk> and the byte pieces)."""
    spec = spm_style("prepend")
    vocab = {p: i for i, p in enumerate(["<unk>", *(f"<0x{b:02X}>" for b in range(256)), *pieces])}
    spec["model"] |= {"vocab": vocab, "merges": merges}
    spec["added_tokens"] = [_added(0, "<unk>", special=True)]
    spec["post_processor"] = None
    return spec


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    words=st.lists(st.text("ab", min_size=2, max_size=4), min_size=2, max_size=8),
    seed=st.integers(0, 2**32),
    texts=st.lists(st.text("ab", max_size=12) | st.text("ab ▁", max_size=12), max_size=12),
)
# Scores from each piece's first listed merge would give [... 258, 266, 259] for the last text.
@example(words=["abb", "aabb", "aab", "bb", "bbb", "baa"], seed=-1, texts=["aababbbb"])
def test_any_order_of_every_split_gives_the_same_ids(tmp_path_factory, words, seed, texts):
    """Every split of every piece listed, in a random order (so one piece's merges interleave
    with others'): tokenizers makes each piece by one split only, and the scores follow it."""
    pytest.importorskip("sentencepiece")
    pieces = list(dict.fromkeys(["▁", "a", "b", " ", *words]))
    splits = [
        [p[:cut], p[cut:]]
        for p in pieces
        for cut in range(1, len(p))
        if p[:cut] in pieces and p[cut:] in pieces
    ]
    if seed < 0:  # the order that shows first-merge scores wrong
        splits = [["a", "abb"], ["aab", "b"], ["b", "bb"], ["b", "b"], ["a", "bb"], ["bb", "b"]]
    else:
        random.Random(seed).shuffle(splits)
    path = save(tiny(pieces, splits), tmp_path_factory.mktemp("tiny"), "tiny")
    loaded = load_tokenizer(path, keep_definition=True)
    fast = build_encoder(loaded, "sentencepiece")
    assert_same(fast, TokenizersEncoder(loaded), texts)


def test_the_real_files_merge_order_is_not_needed(paths, tmp_path):
    """A shuffled merges list breaks no condition: tokenizers' ids change, and so do the
    sentencepiece encoder's, equally."""
    pytest.importorskip("sentencepiece")
    spec = json.loads(paths["prepend"].read_text(encoding="utf-8"))
    random.Random(7).shuffle(spec["model"]["merges"])
    loaded = load_tokenizer(save(spec, tmp_path, "shuffled"), keep_definition=True)
    fast = build_encoder(loaded, "auto")
    assert fast.name == "sentencepiece"
    reference = TokenizersEncoder(loaded)
    assert_same(fast, reference, FIXED)
    _, original = both(paths, "prepend")
    assert reference.encode(CORPUS).ids.tolist() != original.encode(CORPUS).ids.tolist()


# --- refusing what cannot be shown equal -----------------------------------------------------


def refused(spec: dict, tmp_path: Path, check: str) -> None:
    """auto falls back to tokenizers naming the check; --encoder sentencepiece is a usage error."""
    pytest.importorskip("sentencepiece")
    path = save(spec, tmp_path, "refused")
    encoder = build_encoder(load_tokenizer(path, keep_definition=True), "auto")
    assert encoder.name == "tokenizers"
    assert (encoder.declined, encoder.declined_by) == (check, "sentencepiece")
    with pytest.raises(OptionError, match=f"the {check} check failed"):
        build_encoder(load_tokenizer(path, keep_definition=True), "sentencepiece")


def test_a_missing_split_is_refused(tmp_path):
    spec = spm_style()
    merges = spec["model"]["merges"]
    spec["model"]["merges"] = [m for m in merges if m != ["▁t", "he"]]
    assert len(spec["model"]["merges"]) == len(merges) - 1
    refused(spec, tmp_path, "merges")


def test_a_merge_listed_twice_in_the_file_is_refused(tmp_path):
    """(tokenizers keeps one rank for it; which is not the file's to say.)"""
    spec = spm_style()
    spec["model"]["merges"].append(spec["model"]["merges"][0])
    refused(spec, tmp_path, "merges")


def test_a_missing_byte_piece_is_refused(tmp_path):
    spec = spm_style()
    vocab = spec["model"]["vocab"]
    vocab["<0x41-renamed>"] = vocab.pop("<0x41>")
    refused(spec, tmp_path, "byte pieces")


def test_a_character_of_a_piece_that_is_no_piece_is_refused(tmp_path):
    """sentencepiece would join "▁the" and an unknown "中" into "▁the中"; tokenizers, which spells
    "中" as bytes, never could."""
    spec = spm_style()
    vocab = spec["model"]["vocab"]
    assert "▁the" in vocab
    vocab["▁the中"] = len(vocab)
    refused(spec, tmp_path, "alphabet")


@pytest.mark.parametrize(
    "normalizer",
    [
        {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPACE},
                                             {"type": "NFKC"}]},
        {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "_"},
                                             {"type": "Replace", "pattern": {"String": " "},
                                              "content": SPACE}]},
        {"type": "Lowercase"},
    ],
)  # fmt: skip
def test_a_different_normalizer_is_refused(tmp_path, normalizer):
    refused(spm_style() | {"normalizer": normalizer}, tmp_path, "normalizer")


def test_a_metaspace_that_splits_is_refused(tmp_path):
    spec = spm_style("first")
    spec["pre_tokenizer"]["split"] = True
    refused(spec, tmp_path, "pre-tokenizer")


@pytest.mark.parametrize("change", [{"ignore_merges": True}, {"dropout": 0.1}])
def test_model_settings_it_cannot_mirror_are_refused(tmp_path, change):
    spec = spm_style()
    spec["model"] |= change
    refused(spec, tmp_path, "model")


def test_a_normalized_added_token_is_refused(tmp_path):
    n = len(spm_style()["model"]["vocab"])
    refused(spm_style(extra_added=[_added(n, "x y", normalized=True)]), tmp_path, "added tokens")


def test_without_sentencepiece_auto_falls_back_naming_it(paths, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # import raises ImportError
    loaded = load_tokenizer(paths["prepend"])
    encoder = build_encoder(loaded, "auto")
    assert (encoder.name, encoder.declined) == ("tokenizers", "sentencepiece")
    with pytest.raises(OptionError, match="tokentype\\[sentencepiece\\]"):
        build_encoder(load_tokenizer(paths["prepend"]), "sentencepiece")


def test_byte_level_tokenizers_still_go_to_tiktoken(tmp_path):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
    tokenizer.train_from_iterator(
        CORPUS,
        BpeTrainer(
            vocab_size=300,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    path = tmp_path / "bytelevel.json"
    tokenizer.save(str(path))
    assert build_encoder(load_tokenizer(path), "auto").name == "tiktoken"
    with pytest.raises(OptionError, match="the model check failed: byte_fallback is not set"):
        build_encoder(load_tokenizer(path), "sentencepiece")


# --- through the command -----------------------------------------------------------------------


def test_tokenize_writes_the_same_arrays_and_names_the_encoder(paths, tmp_path):
    pytest.importorskip("sentencepiece")
    import h5py

    lines = [{"prompt": a, "completion": b} for a, b in zip(FIXED, FIXED[::-1], strict=True)]
    data = "".join(json.dumps(line) + "\n" for line in lines)
    arrays = {}
    for encoder in ("auto", "tokenizers"):
        out = tmp_path / f"{encoder}.h5"
        result = invoke(
            "tokenize", "-", "-o", out, "--tokenizer", paths["phi3"], "--max-seq-length", 64,
            "--encoder", encoder, "--json", input=data,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        want = "sentencepiece" if encoder == "auto" else "tokenizers"
        assert json.loads(result.stdout)["encoder"] == want
        with h5py.File(out) as shard:
            arrays[encoder] = {name: shard[name][:] for name in ("input_ids", "token_type_ids")}
    for name in ("input_ids", "token_type_ids"):
        np.testing.assert_array_equal(arrays["auto"][name], arrays["tokenizers"][name])


def test_the_summary_says_why_sentencepiece_was_not_used(tmp_path):
    spec = spm_style()
    spec["model"]["merges"] = spec["model"]["merges"][:-1]
    path = save(spec, tmp_path, "short")
    result = invoke(
        "tokenize", "-", "-o", tmp_path / "x.h5", "--tokenizer", path,
        input='{"prompt": "a b", "completion": "c d"}\n',
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    check = "merges" if importlib.util.find_spec("sentencepiece") else "sentencepiece"
    assert f"encoder tokenizers (sentencepiece not used: its {check} check failed)" in result.stderr


PHI3_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m.role + '|>\n' + m.content + '<|end|>\n' }}{% endfor %}"
)


def test_conversations_take_sentencepiece_and_give_the_same_arrays_and_seams(tmp_path):
    pytest.importorskip("sentencepiece")
    import h5py

    folder = tmp_path / "phi3"
    folder.mkdir()
    spec = phi3_style()
    n = len(spec["model"]["vocab"])
    spec["added_tokens"].append(_added(n + 4, "<|system|>", special=True))
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    config = {"eos_token": "<|end|>", "chat_template": PHI3_TEMPLATE}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    rng = random.Random(5)
    lines = []
    for _ in range(150):
        messages = [
            {"role": role, "content": "".join(rng.choices(FIXED, k=rng.randint(0, 4)))}
            for _ in range(rng.randint(1, 3))
            for role in ("user", "assistant")
        ]
        lines.append(json.dumps({"messages": messages}) + "\n")
    source = tmp_path / "chat.jsonl"
    source.write_text("".join(lines), encoding="utf-8")
    runs = {}
    for encoder in ("auto", "tokenizers"):
        out, seams = tmp_path / f"{encoder}.h5", tmp_path / f"{encoder}.seams"
        result = invoke(
            "tokenize", source, "-o", out, "--tokenizer", folder, "--max-seq-length", 256,
            "--packing", "greedy::truncate_right", "--seam-report", seams, "--encoder", encoder,
            "--json", "-q",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        metrics = json.loads(result.stdout)
        with h5py.File(out) as shard:
            arrays = {name: shard[name][:] for name in ("input_ids", "token_type_ids")}
        runs[encoder] = metrics, arrays, seams.read_text()
    (fast, fast_arrays, fast_seams), (reference, want_arrays, want_seams) = runs.values()
    assert (fast.pop("encoder"), reference.pop("encoder")) == ("sentencepiece", "tokenizers")
    for name, array in fast_arrays.items():
        np.testing.assert_array_equal(array, want_arrays[name])
    assert fast_seams == want_seams
    del fast["output"], reference["output"]
    assert fast == reference
    assert fast["tokens_by_type"]["completion"] > 0
