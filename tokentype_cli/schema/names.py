"""Dataset names, token types and provenance: what every shard is made of. Kept free of numpy
and h5py so the CLI can import it at start-up."""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from tokentype_cli import __version__

INPUT_IDS = "input_ids"


TOKEN_TYPE_IDS = "token_type_ids"


CATEGORY_IDS = "category_ids"


ROW_DATASETS = (INPUT_IDS, TOKEN_TYPE_IDS, CATEGORY_IDS)


# Tokens per row tokentype reads or writes: 4 MiB of int32 per row, so a block of rows stays
# bounded; 10^9 asked for 15.6 GB before anything was written.
MAX_SEQ_LENGTH = 1 << 20


PROVENANCE_VERSION_ATTR = "tokentype_version"


PROVENANCE_COMMAND_ATTR = "tokentype_command"


PROVENANCE_OPTIONS_ATTR = "tokentype_options"


class TokenType(IntEnum):
    """What the loss does with a token (see the source document)."""

    PROMPT = 0
    COMPLETION = 1
    PADDING = 2
    SEPARATOR = 3


# Plain ints for comparing blocks in hot paths: numpy looks attributes up on an IntEnum member
# with errors suppressed, and a signal's exception raised there was lost.
PROMPT, COMPLETION, PADDING, SEPARATOR = (int(t) for t in TokenType)


TOKEN_TYPE_NAMES = {t: t.name.lower() for t in TokenType}


_TYPE_ALIASES = {"pad": TokenType.PADDING, "sep": TokenType.SEPARATOR}


MAX_TOKEN_TYPE = max(TokenType)


def parse_token_type(value: str | int) -> TokenType:
    """Accept a token type by name (`prompt`, `pad`, ...) or number (0..3)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if 0 <= int(value) <= MAX_TOKEN_TYPE:
            return TokenType(int(value))
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit() and int(text) <= MAX_TOKEN_TYPE:
            return TokenType(int(text))
        if text in _TYPE_ALIASES:
            return _TYPE_ALIASES[text]
        for token_type, name in TOKEN_TYPE_NAMES.items():
            if text == name:
                return token_type
    names = ", ".join(f"{name} ({int(t)})" for t, name in TOKEN_TYPE_NAMES.items())
    raise ValueError(f"unknown token type {value!r}; use one of {names}")


@dataclass(frozen=True)
class Provenance:
    """Which tokentype command and options produced a dataset; stored as dataset attributes."""

    command: str
    options: Mapping[str, object] = field(default_factory=dict)

    def attrs(self) -> dict[str, str]:
        return {
            PROVENANCE_VERSION_ATTR: __version__,
            PROVENANCE_COMMAND_ATTR: self.command,
            PROVENANCE_OPTIONS_ATTR: json.dumps(dict(self.options), sort_keys=True, default=str),
        }
