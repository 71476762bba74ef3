"""llama.cpp's vocabularies (its models/ggml-vocab-*.gguf: GPT-2, GPT-NeoX, MPT, StarCoder,
Refact, Falcon, DeepSeek, llama-spm, phi-3, ...) converted to tokenizer.json in the test run, by
transformers' GGUF tokenizer mapping over the gguf package's reader: `--encoder auto` must give
`tokenizers`' ids (and offsets) on every one, and take tiktoken on the byte-level ones.

None of those files is shipped or copied here. TOKENTYPE_GGUF_VOCAB_DIR names the folder holding
them or a llama.cpp checkout (its models/ is searched); without it these tests skip.
"""

from __future__ import annotations

import importlib
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import RUNS, TEXTS
from tokentype_cli.errors import OptionError
from tokentype_cli.tokenize.encoders import EncodedTexts, build_encoder
from tokentype_cli.tokenize.fast_bpe import MARK
from tokentype_cli.tokenizer_loader import load_tokenizer

ENV = "TOKENTYPE_GGUF_VOCAB_DIR"
PATTERN = "ggml-vocab-*.gguf"
# Byte-level BPE vocabularies, by llama.cpp's file names: auto must take tiktoken for these. Any
# other file (SentencePiece's llama-spm and phi-3, or one added to llama.cpp later) is held to the
# same ids alone, whichever path auto takes.
BYTE_LEVEL = {
    "gpt-2", "gpt-neox", "mpt", "starcoder", "refact", "falcon", "deepseek-coder", "deepseek-llm",
}  # fmt: skip


def vocabulary_files() -> tuple[list[Path], str]:
    """The files to test and, when there are none, why (naming where it looked)."""
    setting = os.environ.get(ENV, "")
    if not setting:
        return [], (
            f"{ENV} is not set: point it at a llama.cpp checkout or its models/ folder to test"
            f" the encoders on llama.cpp's {PATTERN} (https://github.com/ggml-org/llama.cpp)"
        )
    root = Path(setting).expanduser()
    places = [root, root / "models"]
    for place in places:
        found = sorted(place.glob(PATTERN))
        if found:
            return found, ""
    return [], f"no {PATTERN} in {' or '.join(map(str, places))} ({ENV}={setting})"


def vocabulary_name(path: Path) -> str:
    return path.name.removeprefix("ggml-vocab-").removesuffix(".gguf")


FILES, MISSING = vocabulary_files()
PARAMS = [pytest.param(path, id=vocabulary_name(path)) for path in FILES] or [
    pytest.param(None, id="no-vocabulary-files", marks=pytest.mark.skip(reason=MISSING))
]


# --- conversion: the gguf package reads, transformers' mapping builds tokenizer.json -----------


def gguf_metadata(path: Path) -> dict:
    """Every metadata field of a GGUF file: strings, numbers and arrays of either."""
    gguf = pytest.importorskip(
        "gguf",
        reason="reading llama.cpp's vocabularies needs the gguf package (tokentype[oracles])",
    )
    metadata = {}
    for key, field in gguf.GGUFReader(path).fields.items():
        if not field.types:
            continue
        strings = field.types[-1] == gguf.GGUFValueType.STRING
        values = [
            str(bytes(field.parts[i]), "utf-8") if strings else field.parts[i].tolist()[0]
            for i in field.data
        ]
        metadata[key] = values if field.types[0] == gguf.GGUFValueType.ARRAY else values[0]
    return metadata


def gguf_converter():
    """(metadata key -> tokenizer dict key, convert_gguf_tokenizer) from transformers.

    transformers' own GGUF reader imports torch; the mapping and the builders do not.
    """
    pytest.importorskip(
        "transformers",
        reason="converting GGUF vocabularies needs transformers (tokentype[oracles])",
    )
    tried = (
        "transformers.integrations.gguf.gguf_tokenizer_mapping",  # transformers 5
        "transformers.integrations.ggml",  # transformers 4 (the same mapping; not run here)
    )
    for name in tried:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.GGUF_TOKENIZER_MAPPING["tokenizer"], module.convert_gguf_tokenizer
    pytest.skip(f"this transformers has no GGUF tokenizer mapping (looked for {', '.join(tried)})")


def convert(path: Path, folder: Path) -> Path:
    """tokenizer.json for a GGUF vocabulary, written under `folder`."""
    metadata = gguf_metadata(path)
    renames, convert_gguf_tokenizer = gguf_converter()
    described = {
        name: metadata[f"tokenizer.{key}"]
        for key, name in renames.items()
        if f"tokenizer.{key}" in metadata
    }
    try:
        converted = convert_gguf_tokenizer(metadata["general.architecture"], described)[0]
    except (KeyError, ValueError, NotImplementedError) as exc:
        pytest.skip(f"transformers cannot convert {path.name}: {exc!r}"[:300])
    out = folder / vocabulary_name(path) / "tokenizer.json"
    out.parent.mkdir(parents=True)
    converted.save(str(out))
    return out


# --- the corpus: fixed texts, every vocabulary's added tokens and look-alikes, random text -----

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 5 o'clock; we'd've LEFT by 17:45!!",
    "import numpy as np\n\n\nclass Foo(Bar):\n\tdef __init__(self, *a, **kw) -> None:\n"
    '\t\tself.x = {"k": [1, 2.5e-3, None]}  # 🙂\r\n',
    '{"key": "value", "n": -0.000123, "list": [true, false, null]}\n',
    '<div class="a">&amp; &lt;b&gt;</div>\n<script>if (a && b || !c) { x += 1; }</script>',
    "SELECT * FROM t WHERE a <> 'b' AND c LIKE '%d_';\n#include <stdio.h>\nint main(){return 0;}",
    r"re.compile(r'(?i:\s+|\p{L}+)\d{1,3}\\n') $ ls -la | grep '^d' > /dev/null 2>&1",
    "हिन्दी देवनागरी লিপি தமிழ் ภาษาไทยไม่มีช่องว่าง ພາສາລາວ ខ្មែរ ᠮᠣᠩᠭᠣᠯ བོད་ཡིག",
    "עברית ‏RTL‏ mark, Հայերեն, ქართული, አማርኛ, ᏣᎳᎩ, Tiếng Việt có dấu, İstanbul ıi",
    "ＦＵＬＬＷＩＤＴＨ １２３ ∀x∈ℝ: x²≥0 ∑∫√∞ 𝐀𝐁𝐂 𝟏𝟐𝟑 𝄞 𐌰𐌱 𠀀𠀁 ١٢٣٤ १२३ ௧௨",
    "zero\u200bwidth\u200cjoin\u200dners\ufeffbom soft\u00adhyphen e\u0301\u0302\u0303 Z\u0351\u0352",
    "👨‍👩‍👧‍👦 👩‍❤️‍💋‍👨 🧑🏽‍💻 🏳️‍🌈 🏴‍☠️ 1️⃣ #️⃣ 🇺🇳🇯🇵 🏴󠁧󠁢󠁳󠁣󠁴󠁿 👍🏻👍🏼👍🏽👍🏾👍🏿",
    "ĠĊĉ Ġhello Ċ▁▁hello ▁ world ‘quotes’ “double” — – … «guillemets» ¿¡",
    "12345678901234567890 3.14159265358979 1,000,000 0x1F600 1e-10 -42",
    "\x00\x01\x02\x03\x07\x08\x0b\x0c\x1b[31mred\x1b[0m\x7f\x80\x9f",
    "\r\n\r\n\n\n\t\t  \t \u00a0\u2003\u3000\u2028\u2029\x85 end",
    "",
]
LOOK_ALIKES = [
    "<|endoftext|>", "<|endoftext|", "|endoftext|>", "<|endoftext|><|endoftext|>", "< |endoftext|>",
    "<s>", "</s>", "<unk>", "<pad>", "<s> </s>", "<<s>>", "[INST]", "[/INST]", "<|im_start|>",
    "<|im_end|>", "<|user|>", "<|assistant|>", "<|end|>", "<fim_prefix>", "<fim_middle>",
    "<fim_suffix>", "<|fim_prefix|>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
    "<｜fim▁hole｜>", "<filename>", "<gh_stars>", "<|padding|>", ">>ABSTRACT<<", ">>INTRODUCTION<<",
]  # fmt: skip
# Code point ranges random text is drawn from: scripts, marks, emoji, planes 1-16 (StarCoder has no
# token for the byte 0xF1 that starts planes 4-7), controls (Falcon lacks some), private use.
RANGES = [
    (0x20, 0x7E), (0x00, 0x1F), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
    (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF),
    (0x2000, 0x206F), (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xF8FF),
    (0xFE00, 0xFE0F), (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF), (0x20000, 0x2A6DF),
    (0x40000, 0x7FFFF), (0xE0000, 0xE007F), (0xF0000, 0x10FFFF),
]  # fmt: skip
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", " \n ", "\n\n\n", "\u200d"]


def added_tokens(tokenizer_json: Path) -> list[str]:
    from tokenizers import Tokenizer

    decoder = Tokenizer.from_file(str(tokenizer_json)).get_added_tokens_decoder()
    return [token.content for _, token in sorted(decoder.items())]


def corpus(tokenizer_json: Path, seed: int = 7) -> list[str]:
    """The fixed texts, this vocabulary's added tokens whole, cut and in company, and random
    text mixing characters of many scripts, whitespace runs and those tokens."""
    rng = random.Random(seed)
    added = added_tokens(tokenizer_json)
    added = added if len(added) <= 40 else [*added[:20], *rng.sample(added[20:], 20)]
    tokens = added + LOOK_ALIKES
    around = [
        variant
        for t in tokens
        for variant in (t, t[:-1], t[1:], f" {t} ", f"a{t}b", t + t, f"\n{t}\n", t.upper())
    ]
    texts = [*TEXTS, *CORPUS, *RUNS[:1500], *RUNS[-300:], *around]
    pieces = [*TEXTS, *CORPUS, *tokens, *SPACES, "'s", "'LL", "'ve", "don't", "😀", "🏽", "\ufdd0"]
    for _ in range(400):
        parts = []
        for _ in range(rng.randint(0, 12)):
            roll = rng.random()
            if roll < 0.45:
                low, high = rng.choice(RANGES)
                parts.append("".join(chr(rng.randint(low, high)) for _ in range(rng.randint(1, 8))))
            elif roll < 0.7:
                parts.append("".join(rng.choices(SPACES, k=rng.randint(1, 6))))
            else:
                parts.append(rng.choice(pieces))
        texts.append("".join(parts))
    return texts


def assert_same(got: EncodedTexts, want: EncodedTexts, what: str) -> None:
    np.testing.assert_array_equal(got.length, want.length, err_msg=what)
    np.testing.assert_array_equal(got.ids, want.ids, err_msg=what)
    for name in ("char_start", "char_end"):
        if getattr(want, name) is not None:
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=what)


def hand_over_counter(encoder, monkeypatch) -> list[int]:
    """How many texts the fast encoder hands to `tokenizers`, call by call."""
    handed: list[int] = []
    for method in ("encode", "encode_with_offsets"):
        original = getattr(encoder.fallback, method)

        def counted(batch, *args, original=original):
            handed.append(len(batch))
            return original(batch, *args)

        monkeypatch.setattr(encoder.fallback, method, counted)
    return handed


@pytest.mark.parametrize("path", PARAMS)
def test_auto_gives_tokenizers_ids_on_llama_cpp_vocabularies(path, tmp_path, monkeypatch):
    began = time.perf_counter()
    tokenizer_json = convert(path, tmp_path)
    name = vocabulary_name(path)
    mine, theirs = load_tokenizer(tokenizer_json), load_tokenizer(tokenizer_json)
    auto, reference = build_encoder(mine, "auto"), build_encoder(theirs, "tokenizers")
    if auto.name == "tokenizers":
        # The fallback names the check that failed, and --encoder tiktoken refuses with it.
        assert auto.declined, "auto fell back to tokenizers without naming a check"
        with pytest.raises(OptionError, match=f"the {auto.declined} check failed"):
            build_encoder(load_tokenizer(tokenizer_json), "tiktoken")
    if name in BYTE_LEVEL:
        assert auto.name == "tiktoken", f"{name}: auto declined tiktoken ({auto.declined} check)"

    texts = corpus(tokenizer_json)
    # One text holding U+FDD0 (in the fast path's markers) sends its whole batch to tokenizers,
    # and offsets of a batch holding a byte the vocabulary lacks go there too: the first batches
    # leave those out, so that tiktoken encodes them; later ones have them.
    plain = [t for t in texts if MARK[1] not in t]
    missing = getattr(auto, "missing", None)
    reachable = [t for t in plain if missing is None or not missing[bytearray(t.encode())].any()]
    handed = hand_over_counter(auto, monkeypatch) if auto.name == "tiktoken" else []
    shares: dict[str, list[float]] = {"ids": [], "offsets": []}
    for split in (False, True):  # --split-special-tokens: added special tokens are plain text
        mine.tokenizer.encode_special_tokens = theirs.tokenizer.encode_special_tokens = split
        for add in (True, False):
            handed.clear()
            what = f"{name}, split={split}, add_special_tokens={add}"
            assert_same(auto.encode(plain, add), reference.encode(plain, add), what)
            shares["ids"].append(1 - sum(handed) / len(plain))
            for k, batch in enumerate([plain[::-1], texts, *([t] for t in texts[-60:])]):
                what = f"{name}, split={split}, add_special_tokens={add}, batch {k}"
                assert_same(auto.encode(batch, add), reference.encode(batch, add), what)
        handed.clear()
        what = f"{name} offsets, split={split}"
        got = auto.encode_with_offsets(reachable)
        assert_same(got, reference.encode_with_offsets(reachable), what)
        shares["offsets"].append(1 - sum(handed) / len(reachable))
        assert_same(auto.encode_with_offsets(texts), reference.encode_with_offsets(texts), what)
    # Which path auto took, for `pytest -rP`.
    if auto.name == "tokenizers":
        print(f"{name}: auto took tokenizers (the {auto.declined} check declined tiktoken)")
    else:
        ids, offsets = min(shares["ids"]), min(shares["offsets"])
        print(
            f"{name}: auto took tiktoken; it encoded {ids:.0%} of the texts ({offsets:.0%} offsets)"
        )
    print(f"{name}: {len(texts)} texts, {time.perf_counter() - began:.1f} s")
    if name in BYTE_LEVEL:
        # Not a path taken in name only: tiktoken encodes the texts (byte-level offsets are
        # tiktoken's unless the tokenizer trims them or adds a prefix space).
        assert min(shares["ids"]) >= 0.9, shares
        if not (auto.plan.trim_offsets or auto.plan.add_prefix_space):
            assert min(shares["offsets"]) >= 0.9, shares
