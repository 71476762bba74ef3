"""Oracle: our learned tokens equal transformers' assistant mask on generated conversations.

transformers is not a dependency; where it is installed, `apply_chat_template(...,
return_assistant_tokens_mask=True)` with the shared ChatML tokenizer (whose template marks
assistant content and <|im_end|> with {% generation %}) must give the ids we write and a mask
equal to our types 1 and 3, once the trailing "\\n" after the final <|im_end|> is dropped (our
one-separator rule).
"""

from __future__ import annotations

import json
import random
import warnings

import h5py
import pytest

from tests.helpers import CONFORMANCE, invoke

CHATML = CONFORMANCE / "tokenizer-chatml"
WORDS = [
    "the",
    "river",
    "town",
    "woke",
    "slowly",
    "in",
    "grey",
    "light",
    ",",
    "and",
    "boats",
    "pushed",
    "out",
    ".",
    "café",
    "naïve",
    "東京",
    "🙂",
    "Hello",
    "?",
    "!",
    "42",
    "3.14",
    "<b>bold</b>",
    '{"json":',
    "1}",
    "don't",
    "it's",
]


def conversations(count: int, seed: int = 7) -> list[list[dict]]:
    rng = random.Random(seed)

    def text() -> str:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12)))
        return rng.choice(("", " ", "\n", "  ")) + words + rng.choice(("", " ", "\n", "\n\n"))

    out = []
    for _ in range(count):
        messages = [{"role": "system", "content": text()}] if rng.random() < 0.4 else []
        for _ in range(rng.randint(1, 4)):
            messages.append({"role": "user", "content": text()})
            messages.append({"role": "assistant", "content": text()})
        out.append(messages)
    return out


@pytest.fixture(scope="module")
def hf_tokenizer():
    if not CHATML.is_dir():
        pytest.skip(f"the shared ChatML tokenizer is not present at {CHATML}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import transformers
        except ImportError:
            pytest.skip("transformers is not installed (not a dependency): no oracle to compare")
        return transformers.AutoTokenizer.from_pretrained(str(CHATML))


def test_completion_tokens_equal_transformers_assistant_mask(tmp_path, hf_tokenizer, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    chats = conversations(300)
    source = tmp_path / "chat.jsonl"
    source.write_text("".join(json.dumps({"messages": m}) + "\n" for m in chats))
    out = tmp_path / "out.h5"
    result = invoke(
        "tokenize", source, "-o", out, "--tokenizer", CHATML, "--max-seq-length", 1024,
        "--packing", "single::drop", "--keep-prompt-only-sequences", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        ids, types = f["input_ids"][:], f["token_type_ids"][:]
    assert len(ids) == len(chats)
    eos = hf_tokenizer.convert_tokens_to_ids("<|im_end|>")
    mismatches = []
    for row, messages in enumerate(chats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = hf_tokenizer.apply_chat_template(
                messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
            )
        hf_ids, mask = list(expected["input_ids"]), list(expected["assistant_masks"])
        while hf_ids and hf_tokenizer.decode(hf_ids[-1:]).strip() == "" and hf_ids[-1] != eos:
            hf_ids.pop()
            mask.pop()
        keep = types[row] != 2
        ours = ids[row][keep].tolist()
        learned = [int(t in (1, 3)) for t in types[row][keep].tolist()]
        if ours != hf_ids or learned != mask:
            mismatches.append(row)
    assert not mismatches, f"rows differing from transformers: {mismatches[:10]}"


TOJSON_AND_LOOP_CONTROLS = (
    "{%- for m in messages %}{%- if m.role == 'system' %}{%- continue %}{%- endif %}"
    "{{- m | tojson }}{{- m.content | tojson(indent=2, sort_keys=true) }}"
    "{%- if loop.index > 5 %}{%- break %}{%- endif %}{%- endfor %}{{- eos_token }}"
)


@pytest.mark.parametrize(
    "name", ["CHATML", "CHATML_MARKED", "DROP_REASONING", "DEFAULT_SYSTEM", "TOJSON"]
)
def test_rendering_equals_transformers(tmp_path, hf_tokenizer, name):
    from tests.tokenize import test_chat as templates
    from tokentype_cli.tokenize.chat import Chat, chat_line
    from tokentype_cli.tokenize.options import TokenizeOptions
    from tokentype_cli.tokenizer_loader import load_tokenizer

    source = TOJSON_AND_LOOP_CONTROLS if name == "TOJSON" else getattr(templates, name)
    path = tmp_path / "template.jinja"
    path.write_text(source)
    loaded = load_tokenizer(CHATML)
    chat = Chat(loaded, TokenizeOptions(chat_template=str(path)), loaded.eos_id)
    rng = random.Random(3)
    for messages in conversations(100, seed=5):
        for message in messages:  # some reasoning for the template that drops it
            if message["role"] == "assistant" and rng.random() < 0.5:
                message["content"] = "<think>plan</think>\n\n" + message["content"]
        ours = chat.conversation(chat_line({"messages": messages})).text
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = hf_tokenizer.apply_chat_template(
                messages, tokenize=False, chat_template=source
            )
        if theirs.rstrip().endswith("<|im_end|>"):  # our one-separator rule
            theirs = theirs.rstrip()
        assert ours == theirs
