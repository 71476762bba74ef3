"""Everything that decides a tokenize run's arrays, and the choices its options take.

No heavy imports: the CLI reads the choices at start-up.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from tokentype_cli.errors import OptionError

INPUT_FORMATS = ("jsonl", "txt", "chat", "sharegpt", "alpaca")
# Record shapes a JSON line or a Parquet/Arrow row may take beside prompt/completion (shapes.py).
SHAPES = ("chat", "sharegpt", "alpaca")
# Inputs read by pyarrow a record batch at a time: their rows are records as JSON lines are.
COLUMNAR = ("parquet", "arrow")


def input_units(formats: list[str] | tuple[str, ...]) -> tuple[str, str]:
    """What the summaries call one input record and many: a Parquet/Arrow file has rows, not
    lines (the --json fields keep the name `lines` whatever the format)."""
    columnar = {fmt in COLUMNAR for fmt in formats}
    if columnar == {True}:
        return "row", "rows"
    if columnar == {True, False}:
        return "line or row", "lines and rows"
    return "line", "lines"


DEFAULT_ALPACA_TEMPLATE = "{instruction}\n\n{input}"
DEFAULT_ALPACA_TEMPLATE_NO_INPUT = "{instruction}"
TRAIN_ON = ("assistant", "last", "all")  # --train-on: which assistant turns of a conversation learn
BOUNDARIES = ("jsonl", "prompt_completion_pair")  # --packing-boundary, --attention-boundary
OVERFLOWS = ("drop", "truncate_left", "truncate_right")
PACKING_CHOICES = ("full", *(f"{s}::{o}" for s in ("greedy", "single") for o in OVERFLOWS))
# --encoder: which encoder turns text into ids. Not an option of the arrays: all give the same ids.
ENCODERS = ("auto", "tokenizers", "tiktoken", "sentencepiece")


DEFAULT_MAX_LINE_BYTES = 8 << 20

# With --categories, a token's type and its pair's category travel through packing as one int32
# label, type + 4 * (category + 1), so the packer moves one array as before; padding (2) comes out
# as category -1. The pipeline splits the label again before it writes.
CATEGORY_SHIFT = 2
TYPE_MASK = (1 << CATEGORY_SHIFT) - 1


@dataclass(frozen=True)
class TokenizeOptions:
    """Everything that decides the output arrays."""

    seq_len: int = 2048
    packing: str = "full"
    packing_boundary: str = "jsonl"
    attention_boundary: str = "jsonl"
    prompt_key: str = "prompt"
    completion_key: str = "completion"
    space_separator: bool = True
    keep_prompt_only: bool = False
    prompt_prefix: str | None = None
    prompt_postfix: str | None = None
    input_format: str | None = None
    write_types: bool = True
    eos_token: str | None = None  # text or id; None: the tokenizer's
    pad_token: str | None = None  # text or id; None: the tokenizer's pad, else the eos in use
    # --categories: the names a pair's "category" may take; its index goes to category_ids.
    categories: tuple[str, ...] | None = None
    # --split-special-tokens: `<|endoftext|>` written in the text is encoded as plain text.
    split_special_tokens: bool = False
    # A longer line is a bad line: the tokenizer needs about 130 bytes per byte of one text.
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    # Chat conversations (see tokenize/chat.py).
    apply_chat_template: bool = False  # prompt/completion pairs become user/assistant turns
    chat_template: str | None = None  # a .jinja file; None: the tokenizer's
    chat_template_name: str | None = None  # one of the tokenizer's named templates
    train_on: str = "assistant"
    # --role-map FROM=TO pairs, and the Alpaca prompt templates (shapes.py; None: the defaults,
    # so provenance records a choice only when one was made).
    role_map: tuple[tuple[str, str], ...] = ()
    alpaca_template: str | None = None
    alpaca_template_no_input: str | None = None

    def check(self) -> None:
        if self.max_line_bytes < 1:
            raise OptionError(f"--max-line-bytes must be at least 1, got {self.max_line_bytes}")
        from tokentype_cli.schema.names import (
            MAX_SEQ_LENGTH,  # heavy (h5py): only when a run starts
        )

        if not 1 <= self.seq_len <= MAX_SEQ_LENGTH:
            raise OptionError(
                f"--max-seq-length must be 1..{MAX_SEQ_LENGTH:,} tokens per row, got {self.seq_len:,}"
            )
        if self.packing not in PACKING_CHOICES:
            raise OptionError(
                f"--packing {self.packing!r} is unknown; use one of {', '.join(PACKING_CHOICES)}"
            )
        for name, value in (
            ("--packing-boundary", self.packing_boundary),
            ("--attention-boundary", self.attention_boundary),
        ):
            if value not in BOUNDARIES:
                raise OptionError(f"{name} {value!r} is unknown; use {' or '.join(BOUNDARIES)}")
            # A conversation is one article with one separator, whatever its number of turns.
            if value != "jsonl" and self.chats:
                raise OptionError(
                    f"{name} {value} splits prompt/completion pairs; a chat conversation is one"
                    f" article, so leave {name} at jsonl"
                )
        if self.train_on not in TRAIN_ON:
            raise OptionError(f"--train-on {self.train_on!r} is unknown; use {', '.join(TRAIN_ON)}")
        for flag, template, fields in (
            ("--alpaca-template", self.alpaca_template, ("instruction", "input")),
            ("--alpaca-template-no-input", self.alpaca_template_no_input, ("instruction",)),
        ):
            if template is not None:
                check_alpaca_template(template, flag, fields)

    @property
    def chats(self) -> bool:
        """Every line is a conversation (--input-format chat or sharegpt, --apply-chat-template)."""
        return self.input_format in ("chat", "sharegpt") or self.apply_chat_template


def check_alpaca_template(template: str, flag: str, fields: tuple[str, ...]) -> None:
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise OptionError(
            f"{flag} {template!r}: {exc}; write {{instruction}} and {{input}}, and {{{{ }}}} for"
            " a literal brace"
        ) from exc
    unknown = sorted(used - set(fields))
    if unknown or "instruction" not in used:
        what = f"names {unknown[0]!r}" if unknown else "has no {instruction}"
        raise OptionError(
            f"{flag} {template!r} {what}; use {' and '.join('{' + f + '}' for f in fields)}"
            " (and {{ }} for a literal brace)"
        )
