"""The row view and palette every report shares.

A row is split into display segments by token type (`row_segments`) and rendered for a terminal
(`inspect --rows`, `assign-types --dry-run`, `diff --rows`) or as HTML (`inspect --html`) with the
same colours from `PALETTE`. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tokentype_cli.schema.names import PADDING, TOKEN_TYPE_NAMES, TokenType
from tokentype_cli.tokenizer_loader import LoadedTokenizer

# Padding runs at least this long are shown as one "… N × pad" segment.
COLLAPSE_PADDING = 8


@dataclass(frozen=True)
class TypeStyle:
    """How one token type looks in every report.

    Colour alone fails colour-blind readers, so every type also has its own line under the token
    (`underline`, a CSS text-decoration style) and its own fill pattern in charts (`pattern`).
    The web colours are Okabe and Ito's palette, chosen to stay apart for the common colour-vision
    deficiencies, in the hue families of the terminal's ANSI colours.
    """

    ansi: str  # SGR parameters on a terminal
    color: str  # text, line and chart colour
    tint: str  # background of a token
    underline: str  # CSS text-decoration-style, "" for none
    pattern: str  # chart fill: solid, dots, hatch or cross


PALETTE = {
    # blue: context, scaled by prompt_loss_weight
    TokenType.PROMPT: TypeStyle("34", "#0072B2", "#dcebf7", "dotted", "dots"),
    # green: learned
    TokenType.COMPLETION: TypeStyle("32", "#009E73", "#d5f2e9", "solid", "solid"),
    # grey: never learned
    TokenType.PADDING: TypeStyle("90", "#7f7f7f", "#eeeeee", "", "hatch"),
    # magenta: end of article, learned
    TokenType.SEPARATOR: TypeStyle("1;35", "#CC79A7", "#f6e1ee", "double", "cross"),
}
# Types outside 0..3: red on a terminal, vermillion with a wavy line in HTML.
UNKNOWN_STYLE = TypeStyle("1;31", "#D55E00", "#fbe0cc", "wavy", "solid")
_RESET = "\x1b[0m"
# A changed token (`diff --rows`) shows in reverse video on a terminal, between «» without colour.
_CHANGED_SGR = "7"
CHANGED_MARKS = ("«", "»")
# Control characters would break the layout of a row; show them escaped.
_ESCAPES = {i: f"\\x{i:02x}" for i in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}


@dataclass(frozen=True)
class Segment:
    """A run of one row to display: one token, or a collapsed run of identical padding tokens."""

    text: str  # what to show: decoded token (and/or id), or "… N × pad" for a collapsed run
    token_type: int | None  # the type of the tokens (None when the shard has no types)
    column: int  # column of the first token covered
    count: int = 1  # tokens covered; > 1 only for a collapsed padding run
    token_id: int | None = None
    changed: bool = False  # marked by `diff`: the type differs from the other build's


def style_of(token_type: int | None) -> TypeStyle:
    """The palette entry of a type; values outside 0..3 (and None) get UNKNOWN_STYLE."""
    found = None if token_type is None else _as_type(token_type)
    return UNKNOWN_STYLE if found is None else PALETTE[found]


def type_label(token_type: int | None) -> str:
    """`prompt`, `completion`, `padding`, `separator`, or `type N` for a value outside 0..3."""
    if token_type is None:
        return "untyped"
    try:
        return TOKEN_TYPE_NAMES[TokenType(int(token_type))]
    except ValueError:
        return f"type {int(token_type)}"


def row_segments(
    input_ids: Sequence[int] | np.ndarray,
    token_type_ids: Sequence[int] | np.ndarray | None = None,
    *,
    tokenizer: LoadedTokenizer | None = None,
    show_ids: bool = False,
    collapse_padding: int | None = COLLAPSE_PADDING,
    changed: Sequence[bool] | np.ndarray | None = None,
    escape: bool = True,
) -> list[Segment]:
    """Split one row into display segments, one per token, collapsing long padding runs.

    Tokens show as decoded text with `tokenizer`, as ids without one, and as `text(id)` with
    `show_ids`. A run of at least `collapse_padding` padding tokens with the same id becomes one
    segment "… N × pad" (`None` never collapses). `changed` marks tokens (a run never mixes marked
    and unmarked ones); `escape=False` keeps control characters for a renderer that shows them
    its own way.
    """
    ids = np.asarray(input_ids).reshape(-1)
    types = None if token_type_ids is None else np.asarray(token_type_ids).reshape(-1)
    if types is not None and types.shape != ids.shape:
        raise ValueError(f"row has {ids.size} input_ids but {types.size} token_type_ids")
    marks = None if changed is None else np.asarray(changed, dtype=bool).reshape(-1)
    if marks is not None and marks.shape != ids.shape:
        raise ValueError(f"row has {ids.size} input_ids but {marks.size} change marks")
    runs = _padding_runs(ids, types, collapse_padding, marks)
    keep = np.ones(ids.size, dtype=bool)
    for start, length in runs:
        keep[start + 1 : start + length] = False
    # Decode only what is shown: a 2048-token row of mostly padding decodes a handful of tokens.
    shown = np.flatnonzero(keep)
    texts = _token_texts(ids[shown], tokenizer, show_ids, escape)
    lengths = dict(runs)
    segments = []
    for column, text in zip(shown.tolist(), texts, strict=True):
        token_type = None if types is None else int(types[column])
        count = lengths.get(column, 1)
        if count > 1:
            text = f"… {count} × {text}"
        mark = marks is not None and bool(marks[column])
        segments.append(Segment(text, token_type, column, count, int(ids[column]), mark))
    return segments


def render_segments(segments: Sequence[Segment], *, color: bool = False, joiner: str = " ") -> str:
    """Join segments into one line: ANSI-coloured by type, or with `[type]` markers at each change.

    Colour is the caller's decision (a terminal and NO_COLOR unset); without colour a marker such
    as `[completion]` opens every run of one type so the types stay visible in logs and pipes.
    Changed segments show in reverse video, or between «» without colour.
    """
    parts: list[str] = []
    previous: object = object()
    opening, closing = CHANGED_MARKS
    for segment in segments:
        text = segment.text
        if color:
            styles = [] if segment.token_type is None else [style_of(segment.token_type).ansi]
            if segment.changed:
                styles.append(_CHANGED_SGR)
            if styles:
                text = f"\x1b[{';'.join(styles)}m{text}{_RESET}"
        else:
            if segment.changed:
                text = f"{opening}{text}{closing}"
            if segment.token_type is not None and segment.token_type != previous:
                text = f"[{type_label(segment.token_type)}] {text}"
        previous = segment.token_type
        parts.append(text)
    return joiner.join(parts)


def format_row(
    input_ids: Sequence[int] | np.ndarray,
    token_type_ids: Sequence[int] | np.ndarray | None = None,
    *,
    tokenizer: LoadedTokenizer | None = None,
    show_ids: bool = False,
    color: bool = False,
    collapse_padding: int | None = COLLAPSE_PADDING,
    changed: Sequence[bool] | np.ndarray | None = None,
) -> str:
    """One row as a line of text: tokens by type, coloured or with `[type]` markers.

    Example (codon vocabulary, no colour)::

        >>> format_row([9, 5, 6, 10, 7, 8, 2], [0, 0, 0, 1, 1, 1, 3], tokenizer=codons)
        '[prompt] GAA GGC GCC [completion] ATG ATC GAC [separator] SEP'

    Sub-word tokenizers join pieces without spaces (the pieces carry their own); ids, word-level
    vocabularies and `show_ids` join with a space. `changed` marks tokens (see render_segments).
    """
    segments = row_segments(
        input_ids,
        token_type_ids,
        tokenizer=tokenizer,
        show_ids=show_ids,
        collapse_padding=collapse_padding,
        changed=changed,
    )
    spaced = tokenizer is None or tokenizer.word_level or show_ids
    return render_segments(segments, color=color, joiner=" " if spaced else "")


def color_legend(*, color: bool) -> str:
    """The four type names, each in its colour (or plain when not coloured)."""
    names = []
    for token_type in TokenType:
        label = f"{int(token_type)} {TOKEN_TYPE_NAMES[token_type]}"
        names.append(f"\x1b[{PALETTE[token_type].ansi}m{label}{_RESET}" if color else label)
    return "  ".join(names)


def _as_type(value: int) -> TokenType | None:
    try:
        return TokenType(int(value))
    except ValueError:
        return None


def _padding_runs(
    ids: np.ndarray, types: np.ndarray | None, minimum: int | None, marks: np.ndarray | None
) -> list[tuple[int, int]]:
    """(start, length) of each run of >= `minimum` padding tokens sharing one id (and mark)."""
    if types is None or minimum is None or ids.size == 0:
        return []
    pad = types == PADDING  # a plain int: see schema.PROMPT
    # A run starts where padding begins, the padding id changes or a change mark starts or ends.
    boundary = np.empty(ids.size, dtype=bool)
    boundary[0] = True
    boundary[1:] = (~pad[:-1]) | (ids[1:] != ids[:-1])
    if marks is not None:
        boundary[1:] |= marks[1:] != marks[:-1]
    starts = np.flatnonzero(pad & boundary)
    if starts.size == 0:
        return []
    # A run ends before the next boundary or non-padding token.
    stops = np.flatnonzero(~pad | boundary)
    ends = np.append(stops, ids.size)[np.searchsorted(stops, starts, side="right")]
    lengths = ends - starts
    long = lengths >= max(2, minimum)
    return list(zip(starts[long].tolist(), lengths[long].tolist(), strict=True))


def _token_texts(
    ids: np.ndarray, tokenizer: LoadedTokenizer | None, show_ids: bool, escape: bool = True
) -> list[str]:
    if tokenizer is None:
        return [str(i) for i in ids.tolist()]
    texts = tokenizer.decode_each(ids.tolist())
    if escape:
        texts = [text.translate(_ESCAPES) for text in texts]
    if show_ids:
        return [f"{text}({i})" for text, i in zip(texts, ids.tolist(), strict=True)]
    return texts
