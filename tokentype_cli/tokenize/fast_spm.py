"""Show, when a tokenizer is loaded, that Google's sentencepiece gives its ids exactly; build the
model sentencepiece needs.

SentencePiece-style BPE (Llama-2, Mistral v0.1-v0.3, Phi-3) in `tokenizers`: split the added
tokens out of the text, put "▁" before each piece (as its normalizer or Metaspace says) and
"▁" for every space, spell each character as its token, or as its <0xNN> byte tokens when it has
none (byte_fallback), then apply the adjacent pair of lowest rank in the merges list, leftmost
first, until none applies. sentencepiece's BPE spells characters likewise (byte pieces for a
character no piece is) but applies the adjacent pair whose concatenation is a piece of highest
score, leftmost first. The model built here gives each piece a score; the two agree when:

- "model": BPE with byte_fallback, without dropout, ignore_merges or affixes; ids 0..n-1.
- "byte pieces": all 256 <0xNN> tokens, so a character is never unknown to either.
- "merges": each merge joins two pieces into a piece, none of them a byte piece or the unknown
  token, no pair listed twice, and every split of every piece into two pieces listed. Then
  `tokenizers`' candidates (listed pairs) are sentencepiece's (pairs making a piece).
- "alphabet": no piece splits into a piece and a character that is no piece (or two such
  characters): a character spelled as bytes (by `tokenizers`) or unknown (to sentencepiece)
  is then in no candidate of either, nor in any piece either run makes.
- Scores, built, not checked: `tokenizers` makes a piece T from one split only, the one its own
  run on T's characters alone ends with (`_last_merges`), by locality: if its run on a text
  reaches adjacent tokens a, b, its run on the characters of ab alone passes through [a, b] (the
  merges inside the span are the run's own, in the same order: each was the lowest (rank,
  position) pair of the text, so of the span), and that run has one state of two tokens. So in
  every state the run reaches, a candidate making T has the rank of T's last merge; as T's score,
  its negation makes "highest score, leftmost" choose as "lowest rank, leftmost" does, the same
  piece at two adjacent positions included (both take the left one), state after state.
- "normalizer" / "pre-tokenizer": Prepend("▁") + Replace(" ", "▁") (a "▁" before every piece of
  text between added tokens), or no normalizer and Metaspace("▁", split false) with its
  prepend_scheme (always: unless the piece starts with a space; first: the same, only at the
  text's start; never). The encoder puts the "▁" in; sentencepiece's own normalizer is
  identity, escaping spaces only.
- "added tokens": not normalized (found in the raw text), split out by the encoder as
  `tokenizers` does; "post-processor": fixed ids around each text at most.

Each failed check raises EncoderCheckError naming it; `--encoder auto` then uses `tokenizers`.
The ModelProto is written field by field (five message types, a dozen fields), not through the
protobuf package, which sentencepiece does not need at run time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from tokentype_cli.tokenize.fast_bpe import (
    AddedToken,
    Failure,
    bpe_model,
    check_failure,
    definition,
    fixed_post_processor,
    matched_added_tokens,
)
from tokentype_cli.tokenizer_loader import LoadedTokenizer

SPACE = "\u2581"
BYTE_PIECES = tuple(f"<0x{b:02X}>" for b in range(256))
# Where `tokenizers` puts the "▁" before a piece of text (between added tokens):
PREFIX_MODES = (
    "always",  # Prepend normalizer: before every non-empty piece
    "unless_space",  # Metaspace always: unless the piece starts with a space or "▁"
    "first",  # Metaspace first: the same, for the piece at the text's start only
    "never",  # Metaspace never
)
# sentencepiece_model.proto: SentencePiece.Type
_NORMAL, _UNKNOWN, _BYTE = 1, 2, 6
# Scores are float32 in the model: ranks up to 2**24 are exact.
_MAX_RANK = 1 << 24


@dataclass
class SentencePiecePlan:
    """Everything the sentencepiece encoder needs; plain data, so it pickles to worker processes."""

    model_proto: bytes = field(repr=False)
    prefix_mode: str  # one of PREFIX_MODES
    added: tuple[AddedToken, ...]
    prefix: tuple[int, ...]  # the post-processor's ids before each text
    suffix: tuple[int, ...]


def plan_sentencepiece(loaded: LoadedTokenizer) -> SentencePiecePlan:
    """Check that sentencepiece gives `loaded`'s ids and return its plan, else raise
    EncoderCheckError."""
    fail = check_failure(loaded, "sentencepiece")
    if loaded.word_level:
        raise fail("model", "a word-level vocabulary, not SentencePiece-style BPE")
    spec = definition(loaded, fail)
    model = bpe_model(spec, fail, "BPE")
    if not model.get("byte_fallback"):
        raise fail("model", "byte_fallback is not set (not a SentencePiece-style BPE)")
    if model.get("ignore_merges"):
        raise fail("model", "ignore_merges is set (a text that is a token is taken whole)")
    try:
        import sentencepiece
    except ImportError as exc:
        raise fail(
            "sentencepiece",
            f"sentencepiece is not installed ({exc}; pip install 'tokentype[sentencepiece]')",
        ) from exc

    prefix_mode = _prefix_mode(spec.get("normalizer"), spec.get("pre_tokenizer"), fail)
    prefix, suffix, trim_offsets = fixed_post_processor(spec.get("post_processor"), fail)
    if trim_offsets:
        raise fail("post-processor", "a ByteLevel post-processor trims offsets")
    added = matched_added_tokens(spec.get("added_tokens") or [], False, fail)
    normalized = [t.content for t in added if t.normalized]
    if normalized:
        raise fail("added tokens", f"{normalized[0]!r} is matched in normalized text")
    proto = _model_proto(model, fail)
    try:
        sentencepiece.SentencePieceProcessor(model_proto=proto)
    except Exception as exc:  # anything it refuses, we do not run
        raise fail("model", f"sentencepiece refuses the model built from it ({exc})") from exc
    return SentencePiecePlan(proto, prefix_mode, added, prefix, suffix)


def _prefix_mode(normalizer, pre_tokenizer, fail: Failure) -> str:
    """Where `tokenizers` puts "▁" before text (see PREFIX_MODES); anything else is refused."""
    if normalizer is not None:
        steps = normalizer.get("normalizers") if normalizer.get("type") == "Sequence" else None
        kinds = sorted(step.get("type") for step in steps or [normalizer])
        if kinds != ["Prepend", "Replace"]:
            raise fail(
                "normalizer", f"{'+'.join(map(str, kinds))}, not Prepend('▁') + Replace(' ', '▁')"
            )
        for step in steps or []:
            if step["type"] == "Prepend" and step.get("prepend") != SPACE:
                raise fail("normalizer", f"Prepend({step.get('prepend')!r}), not '▁'")
            if step["type"] == "Replace" and (
                step.get("pattern") != {"String": " "} or step.get("content") != SPACE
            ):
                raise fail("normalizer", "a Replace other than ' ' with '▁'")
        if pre_tokenizer is not None:
            raise fail("pre-tokenizer", f"{pre_tokenizer.get('type')} after Prepend + Replace")
        return "always"
    kind = pre_tokenizer.get("type") if isinstance(pre_tokenizer, dict) else None
    if kind != "Metaspace":
        raise fail("pre-tokenizer", f"{kind or 'none'} (with no normalizer), not Metaspace")
    if pre_tokenizer.get("replacement") != SPACE:
        raise fail("pre-tokenizer", f"Metaspace replaces with {pre_tokenizer.get('replacement')!r}")
    if pre_tokenizer.get("split", True):
        raise fail("pre-tokenizer", "Metaspace splits at every '▁' (sentencepiece merges across)")
    scheme = pre_tokenizer.get("prepend_scheme")
    if scheme is None:  # files from before prepend_scheme
        scheme = "always" if pre_tokenizer.get("add_prefix_space", True) else "never"
    modes = {"always": "unless_space", "first": "first", "never": "never"}
    if scheme not in modes:
        raise fail("pre-tokenizer", f"Metaspace prepend_scheme {scheme!r}")
    return modes[scheme]


def _model_proto(model: dict, fail: Failure) -> bytes:
    """The sentencepiece ModelProto of a BPE model whose checks hold (see the module docstring)."""
    vocab: dict[str, int] = model.get("vocab") or {}
    pieces: list[str | None] = [None] * len(vocab)
    for piece, token_id in vocab.items():
        if not 0 <= token_id < len(pieces) or pieces[token_id] is not None:
            raise fail("model", "the vocabulary's ids are not 0..n-1, each once")
        if not piece:
            raise fail("model", "an empty token")
        pieces[token_id] = piece
    absent = [p for p in BYTE_PIECES if p not in vocab]
    if absent:
        raise fail(
            "byte pieces",
            f"{len(absent)} of the 256 byte tokens are missing (e.g. {absent[0]}): a character"
            " could then be unknown",
        )
    unk = model.get("unk_token")
    if unk is not None and (len(unk) < 2 or unk in BYTE_PIECES or unk not in vocab):
        raise fail("model", f"the unknown token {unk!r} is one character, a byte piece or absent")
    reserved = {*BYTE_PIECES, unk}
    normal = vocab.keys() - reserved
    firsts, seconds = _merge_parts(model.get("merges") or [], fail)
    rank_of: dict[tuple[str, str], int] = {}
    for rank, pair in enumerate(zip(firsts, seconds, strict=True)):
        a, b = pair
        if a not in normal or b not in normal or a + b not in normal:
            raise fail(
                "merges",
                f"merge {rank} ({a} {b}) joins or makes a byte piece, the unknown token or no"
                " token",
            )
        if rank_of.setdefault(pair, rank) != rank:
            raise fail("merges", f"merge {rank} ({a} {b}) is listed twice")
    if len(rank_of) >= _MAX_RANK:
        raise fail("merges", f"{len(rank_of)} merges, more than a float32 score tells apart")
    # A symbol of sentencepiece's run is a piece or one character no piece is (unknown; spelled
    # as bytes by tokenizers, which never merges those). Its candidates are the splits of
    # pieces into two such symbols; each must be two pieces, and listed.
    splits = 0
    for piece in normal:
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                splits += 1
            elif (left in normal or len(left) == 1) and (right in normal or len(right) == 1):
                unknown = left if left not in normal else right
                raise fail(
                    "alphabet",
                    f"sentencepiece could join the character {unknown!r}, which is no token, into"
                    f" {piece!r}; tokenizers spells it as bytes and never could",
                )
    if splits != len(rank_of):
        raise fail(
            "merges",
            f"the merges list {len(rank_of)} of the {splits} splits of tokens into two tokens;"
            " sentencepiece merges any",
        )
    last = _last_merges(rank_of)
    lowest = -float(len(rank_of) + 1)  # pieces no run makes: never a candidate, by locality
    out = bytearray()
    for entry in pieces:
        assert entry is not None  # every id was filled above
        piece = entry
        if piece in BYTE_PIECES:
            kind, score = _BYTE, 0.0
        elif piece == unk:
            kind, score = _UNKNOWN, 0.0
        else:
            kind = _NORMAL
            score = -float(last[piece]) if piece in last else lowest
        out += _field(1, _piece(piece, score, kind))
    if unk is None:
        # sentencepiece needs an unknown piece; with every byte piece present it never emits one
        out += _field(1, _piece("<tokentype-unk>", 0.0, _UNKNOWN))
    trainer = _varint_field(3, 2) + _varint_field(35, 1)  # model_type BPE, byte_fallback
    # name, add_dummy_prefix off (the encoder adds it), remove_extra_whitespaces off,
    # escape_whitespaces on; an empty precompiled_charsmap leaves characters as they are.
    normalizer = (
        _field(1, b"identity") + _varint_field(3, 0) + _varint_field(4, 0) + _varint_field(5, 1)
    )
    out += _field(2, trainer) + _field(3, normalizer)
    return bytes(out)


def _last_merges(rank_of: dict[tuple[str, str], int]) -> dict[str, int]:
    """For each token a merge makes, the rank of the merge that `tokenizers`' run on the token's
    characters alone ends with (absent when that run does not end in the token)."""
    last: dict[str, int] = {}
    for a, b in rank_of:
        token = a + b
        if token in last:
            continue
        symbols = list(token)
        final = -1
        while len(symbols) > 1:
            best, at = _MAX_RANK, -1
            for i in range(len(symbols) - 1):
                rank = rank_of.get((symbols[i], symbols[i + 1]), _MAX_RANK)
                if rank < best:
                    best, at = rank, i
            if at < 0:
                break
            symbols[at : at + 2] = [symbols[at] + symbols[at + 1]]
            final = best
        if symbols == [token]:
            last[token] = final
    return last


def _merge_parts(merges: list, fail: Failure) -> tuple[list[str], list[str]]:
    """The first and second parts of every merge ("a b" strings or [a, b] pairs)."""
    if not merges:
        return [], []
    if all(isinstance(m, str) for m in merges):
        flat = " ".join(merges).split(" ")
    else:
        flat = [part for m in merges for part in m]
    if len(flat) != 2 * len(merges):
        raise fail("merges", "a merge that is not two tokens")
    return flat[0::2], flat[1::2]


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | 0x80 if value else low)
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (string, bytes or message)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _piece(piece: str, score: float, kind: int) -> bytes:
    """A ModelProto.SentencePiece: piece (field 1), score (2, float32), type (3, a small enum)."""
    text = piece.encode("utf-8")
    return (
        b"\x0a" + _varint(len(text)) + text + b"\x15" + struct.pack("<f", score) + bytes((24, kind))
    )
