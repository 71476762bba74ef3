"""Everything that decides a tokenize run's arrays, and the choices its options take.

No heavy imports: the CLI reads the choices at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokentype_cli.errors import OptionError

INPUT_FORMATS = ("jsonl", "txt")
BOUNDARIES = ("jsonl", "prompt_completion_pair")  # --packing-boundary, --attention-boundary
OVERFLOWS = ("drop", "truncate_left", "truncate_right")
PACKING_CHOICES = ("full", *(f"{s}::{o}" for s in ("greedy", "single") for o in OVERFLOWS))
# --encoder: which encoder turns text into ids. Not an option of the arrays: all give the same ids.
ENCODERS = ("auto", "tokenizers", "tiktoken")


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

    def check(self) -> None:
        if self.seq_len < 1:
            raise OptionError(f"--max-seq-length must be at least 1, got {self.seq_len}")
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
