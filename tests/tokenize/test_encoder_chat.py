"""Conversations on the fast encoder: `--encoder auto` (tiktoken where fast_bpe proves it) gives
the arrays, metrics and seam reports `--encoder tokenizers` gives."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import h5py
import numpy as np
import pytest
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers.trainers import BpeTrainer

from tests.helpers import CONFORMANCE, invoke
from tokentype_cli.tokenize.encode import Encoder, byte_lengths, encode_with_offsets
from tokentype_cli.tokenize.encoders import build_encoder
from tokentype_cli.tokenize.fast_bpe import PATTERNS
from tokentype_cli.tokenizer_loader import load_tokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
)
# No newline after the role: a token can straddle the role's prompt text and the learned reply.
SEAMY = "{%- for m in messages %}{{- m.role + ':' + m.content + '<|im_end|>' }}{%- endfor %}"
WORDS = [
    "hello", " world", "Grüße", " 日本語", " Привет", " العربية", " 😀👍🏽", " 👨‍👩‍👧", "e\u0301",
    "  ", "\n\n", "\t", " \u00a0", "\u3000", "1234567", " don't", " I'M", "def f(x):\n    return x",
    " <|im_end|>", "<|im_start|>", "<|endoftext|>x", "<|im_end", "im_end|>", "<|IM_END|>", "Å",
    "\ufdd0", "\x00", "ﬁ", "  \n ",
]  # fmt: skip


def conversations(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        messages = []
        for _ in range(rng.randint(1, 3)):
            for role in ("user", "assistant"):
                words = rng.choices(WORDS, k=rng.randint(0, 12))
                messages.append({"role": role, "content": "".join(words)})
        if rng.random() < 0.3:
            messages.insert(0, {"role": "system", "content": "Be brief."})
        out.append({"messages": messages})
    return out


def trained_folder(folder: Path, template: str, nfc: bool = False) -> Path:
    """A byte-level BPE with Llama-3's regex trained here on the conversations' words, with the
    ChatML special tokens and `template`."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PATTERNS["llama3"]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    if nfc:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=600,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [m["content"] for c in conversations(300, 1) for m in c["messages"]]
    seams = [f"assistant:{w}" for w in WORDS[:9]]  # ":hello" and the like become tokens
    tokenizer.train_from_iterator(corpus + seams * 50, trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    folder.mkdir(parents=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": template}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("chat")
    found = {
        "chatml": trained_folder(root / "chatml", CHATML),
        "seamy": trained_folder(root / "seamy", SEAMY),
        "nfc": trained_folder(root / "nfc", SEAMY, nfc=True),
    }
    if CONFORMANCE.is_dir():
        found["conformance"] = CONFORMANCE / "tokenizer-chatml"
    return found


def run(tmp_path: Path, folder: Path, encoder: str, extra=()) -> dict:
    source = tmp_path / "in.jsonl"
    if not source.exists():
        lines = conversations(400, 7)
        source.write_text("".join(json.dumps(c) + "\n" for c in lines), encoding="utf-8")
    out, seams, ledger = (tmp_path / f"{encoder}.{x}" for x in ("h5", "seams", "ledger"))
    result = invoke(
        "tokenize", source, "-o", out, "--tokenizer", folder, "--max-seq-length", 512,
        "--packing", "greedy::truncate_right", "--seam-report", seams, "--ledger", ledger,
        "--encoder", encoder, "--json", "-q", *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    with h5py.File(out) as shard:
        arrays = {name: shard[name][:] for name in ("input_ids", "token_type_ids")}
    return {
        "metrics": metrics,
        "arrays": arrays,
        "seams": seams.read_text(),
        "ledger": ledger.read_text(),
    }


@pytest.mark.parametrize("split_special", [False, True])
@pytest.mark.parametrize("name", ["chatml", "seamy", "nfc", "conformance"])
def test_auto_and_tokenizers_give_the_same_arrays_and_seams(folders, tmp_path, name, split_special):
    if name not in folders:
        pytest.skip(f"the ChatML tokenizer is in {CONFORMANCE}, absent here")
    extra = ("--split-special-tokens",) if split_special else ()
    fast = run(tmp_path, folders[name], "auto", extra)
    reference = run(tmp_path, folders[name], "tokenizers", extra)
    assert fast["metrics"]["encoder"] == "tiktoken"
    assert reference["metrics"]["encoder"] == "tokenizers"
    for array in fast["arrays"]:
        np.testing.assert_array_equal(fast["arrays"][array], reference["arrays"][array])
    assert fast["seams"] == reference["seams"]
    assert fast["ledger"] == reference["ledger"]
    for key in ("encoder", "output"):
        del fast["metrics"][key], reference["metrics"][key]
    assert fast["metrics"] == reference["metrics"]
    if name == "seamy":
        assert fast["metrics"]["seams"] > 0  # the comparison covers seams


def rendered(folder: Path) -> list[str]:
    from tokentype_cli.tokenize.chat import Chat, chat_line
    from tokentype_cli.tokenize.options import TokenizeOptions

    loaded = load_tokenizer(folder)
    chat = Chat(loaded, TokenizeOptions(), loaded.eos_id)
    return [chat.conversation(chat_line(c)).text for c in conversations(200, 3)]


@pytest.mark.parametrize("name", ["chatml", "nfc", "conformance"])
def test_conversations_take_tiktoken_and_give_tokenizers_places(folders, name):
    if name not in folders:
        pytest.skip(f"the ChatML tokenizer is in {CONFORMANCE}, absent here")
    loaded = load_tokenizer(folders[name])
    encoder = Encoder(loaded, build_encoder(loaded, "auto"))
    assert encoder.chat_encoder.name == "tiktoken"
    reference = build_encoder(loaded, "tokenizers")
    table = byte_lengths(loaded.tokenizer)
    texts = rendered(folders[name])
    for batch in (texts, texts[:1], ["e\u0301<|im_end|>"], ["Å"], []):
        for with_table in (table, None):
            got = encode_with_offsets(encoder.chat_encoder, batch, with_table)
            want = encode_with_offsets(reference, batch, with_table)
            assert got.in_bytes == want.in_bytes
            np.testing.assert_array_equal(got.ids, want.ids)
            np.testing.assert_array_equal(got.lengths, want.lengths)
            np.testing.assert_array_equal(got.spans, want.spans)


def test_split_special_tokens_leaves_the_templates_tokens_whole(folders):
    """Prompt/completion text reads <|im_end|> as text; conversations keep it one token."""
    loaded = load_tokenizer(folders["chatml"])
    copy = Tokenizer.from_str(loaded.tokenizer.to_str())
    copy.encode_special_tokens = True
    text_encoder = build_encoder(dataclasses.replace(loaded, tokenizer=copy), "auto")
    encoder = Encoder(loaded, text_encoder)
    end = loaded.tokenizer.token_to_id("<|im_end|>")
    assert end not in text_encoder.encode(["a<|im_end|>"]).ids.tolist()
    places = encode_with_offsets(encoder.chat_encoder, ["a<|im_end|>"], encoder.byte_lengths)
    assert places.ids.tolist()[-1] == end
