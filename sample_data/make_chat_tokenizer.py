"""Build the demo's chat tokenizer folder: a word-level vocabulary of a chat file's words, the
ChatML special tokens and a ChatML chat template in tokenizer_config.json.

Usage: make_chat_tokenizer.py CHAT.jsonl FOLDER   (deterministic: the same file gives the same folder)
"""

import json
import sys
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML without {% generation %} blocks: tokentype learns each assistant turn's content and
# the end-of-turn text after it.
CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def texts(line: object):
    messages = line["messages"] if isinstance(line, dict) else line
    for message in messages:
        yield message["role"]
        content = message["content"]
        yield from ([p["text"] for p in content] if isinstance(content, list) else [content])


def main(source: str, folder: str) -> None:
    split = pre_tokenizers.Whitespace()  # words and punctuation runs
    words = sorted(
        {
            piece
            for line in Path(source).read_text(encoding="utf-8").splitlines()
            if line.strip()
            for text in texts(json.loads(line))
            for piece, _ in split.pre_tokenize_str(text)
        }
    )
    vocab = {token: i for i, token in enumerate([*SPECIALS, *words])}
    # No unknown token: a word outside the vocabulary is an error, not a silent stand-in.
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=None))
    tokenizer.pre_tokenizer = split
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": CHATML}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
