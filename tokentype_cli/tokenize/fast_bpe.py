"""Show, when a tokenizer is loaded, that tiktoken gives its ids exactly; build what tiktoken needs.

`tokenizers` encodes byte-level BPE as: split the added tokens out of the text, normalize the rest,
split it with a regex, spell each piece's bytes as characters, then merge the adjacent pair that
comes first in the merges list until none applies. tiktoken splits with the same kind of regex,
takes a piece that is a token whole, and otherwise merges the adjacent pair whose concatenation
has the lowest rank. With the token ids as ranks the two are the same algorithm when:

- "merges order": one merge per token, each merge's parts bytes or earlier merges' results, and
  each merge's place in the list as its result's rank (the ids when the list is in id order,
  else mapped back to ids after encoding). Then "first in the list" is "lowest rank", and
  `tokenizers` applies the merges rule by rule, in list order, each left to right. Or, for
  tokenizers converted from tiktoken: ignore_merges, every split of every token listed, by the
  id made; see `_every_split_ranks` for why ties then break alike (no further checks needed).
- "self-encoding": every token of the ranks comes out of the merges as itself when its bytes are
  encoded alone (`_not_self_encoding`). Two adjacent tokens of a `tokenizers` state never merged
  across their joint, so encoding their concatenation alone stops at those two; hence, when the
  concatenation is a token, they are its merge. tiktoken's candidates are then exactly the merges,
  and a piece that is a token encodes as that token both ways.
- "vocabulary": with ignore_merges, no token that no merge makes (tiktoken could not emit it
  whole); otherwise such tokens stay out of the ranks, as no merge reaches them.
- Everything around the model is mirrored or refused: "pre-tokenizer", one of the regexes below
  (Oniguruma in `tokenizers` and fancy-regex in tiktoken split every code point alike with
  them: tests/tokenize/test_encoders.py, TOKENTYPE_EXHAUSTIVE=1); "normalizer", none or NFC (applied with
  `tokenizers`' own NFC); "byte-level alphabet", tokens spelled in byte-level characters (a
  missing byte token is no matter when no UTF-8 text holds the byte; a text holding another goes
  to `tokenizers`, which drops the byte); "model", BPE without dropout, byte fallback or affixes;
  "added tokens", split out by the encoder as `tokenizers` does; "post-processor", fixed ids
  around each text at most.

Each failed check raises EncoderCheckError naming it; `--encoder auto` then uses `tokenizers`.
"""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tokentype_cli.errors import EncoderCheckError
from tokentype_cli.tokenizer_loader import LoadedTokenizer

# The pre-tokenizer regexes tiktoken is trusted with, exactly as tokenizer.json spells them.
PATTERNS = {
    "gpt2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    # Llama-4's (tiktoken's o200k_base, GPT-4o's).
    "o200k": r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
    r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    # Mistral's tekken (Nemo, Pixtral, Mistral Small 3 and later).
    "tekken": r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}

# Bytes no UTF-8 text holds (overlong lead bytes, and lead bytes past U+10FFFF): a vocabulary may
# lack their tokens, as GPT-NeoX's and MPT's do, for no str can reach them.
UNREACHABLE_BYTES = frozenset([0xC0, 0xC1, *range(0xF5, 0x100)])

# The encoder marks text boundaries and added tokens for tiktoken with strings starting with MARK;
# its U+FDD0 is a noncharacter, not something text carries, and text that does carry one never
# takes the fast path, so every MARK tiktoken sees was put there.
MARK = "\x00\ufdd0"


def _byte_chars() -> list[str]:
    """GPT-2's byte-level alphabet: the character `tokenizers` writes for each byte value."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


BYTE_CHARS = _byte_chars()
# str.translate table to spell a byte-level token as latin-1 (one character per byte). Other
# characters up to U+01FF become U+FFFF, which latin-1 refuses, as it refuses anything above.
_TO_LATIN1 = {code: 0xFFFF for code in range(0x200)} | {ord(c): b for b, c in enumerate(BYTE_CHARS)}


@dataclass(frozen=True)
class AddedToken:
    """An added token as `tokenizers` matches it in text."""

    id: int
    content: str  # for a normalized token: its normalized form, which is what gets matched
    special: bool
    single_word: bool
    lstrip: bool
    rstrip: bool
    normalized: bool


@dataclass
class TiktokenPlan:
    """Everything the tiktoken encoder needs; plain data, so it pickles to worker processes."""

    pattern_name: str
    pattern: str
    ranks: dict[bytes, int] = field(repr=False)
    added: tuple[AddedToken, ...]
    nfc: bool  # normalize with NFC (as `tokenizers` does, piece by piece)
    add_prefix_space: bool  # ByteLevel's: a space before every piece not starting with one
    prefix: tuple[int, ...]  # the post-processor's ids before each text
    suffix: tuple[int, ...]
    trim_offsets: bool  # the post-processor trims whitespace from offsets
    # The tokenizers id of each tiktoken rank when they differ (merges not in id order), else ().
    id_of_rank: tuple[int, ...] = field(default=(), repr=False)
    # Bytes text can hold that have no token: a batch holding one goes to tokenizers.
    missing_bytes: tuple[int, ...] = ()


Failure = Callable[[str, str], EncoderCheckError]


def check_failure(loaded: LoadedTokenizer, encoder: str) -> Failure:
    """`fail(check, detail)`: the error a fast encoder's failed check raises, naming the check
    (which `auto` reports as what it declined) and the way out."""
    where = str(loaded.path)

    def fail(check: str, detail: str) -> EncoderCheckError:
        return EncoderCheckError(
            f"{where}: {encoder} cannot be shown to give this tokenizer's ids; the {check} check"
            f" failed: {detail}; use --encoder tokenizers (or auto, which falls back to it)",
            check,
        )

    return fail


def definition(loaded: LoadedTokenizer, fail: Failure) -> dict:
    """The tokenizer.json the checks read: as loaded, or as the tokenizer serialises itself
    where the file does not describe it (added tokens, a converted vocabulary)."""
    spec = loaded.take_definition()
    if spec is None or not spec_describes(spec, loaded.tokenizer):
        try:
            spec = json.loads(loaded.tokenizer.to_str())
        except Exception as exc:  # tokenizers raises plain Exception from Rust
            raise fail("model", f"cannot read the tokenizer's definition ({exc})") from exc
    return spec


def bpe_model(spec: dict, fail: Failure, kind: str) -> dict:
    """The definition's model, checked to be a plain BPE (`kind` names what was wanted)."""
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise fail("model", f"a {model.get('type')} model, not {kind}")
    if model.get("dropout") not in (None, 0, 0.0):
        raise fail("model", f"BPE dropout {model['dropout']} makes the ids random")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise fail("model", f"{key} {model[key]!r} is set")
    return model


def _spell(tokens: list[str], fail: Failure) -> tuple[bytes, np.ndarray, np.ndarray, list[bytes]]:
    """Byte-level tokens as bytes: the whole vocabulary spelled, each token's start and end in
    it, and each token's bytes. One translate and one encode for all, then a slice per token:
    byte-level characters are one byte each."""
    try:
        spelled = "".join(tokens).translate(_TO_LATIN1).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise fail(
            "byte-level alphabet", "a token is not spelled in byte-level characters"
        ) from exc
    lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    pieces = list(map(spelled.__getitem__, map(slice, starts.tolist(), ends.tolist())))
    return spelled, starts, ends, pieces


def plan_tiktoken(loaded: LoadedTokenizer) -> TiktokenPlan:
    """Check that tiktoken gives `loaded`'s ids and return its plan, else raise EncoderCheckError."""
    fail = check_failure(loaded, "tiktoken")
    if loaded.word_level:
        raise fail("model", "a word-level vocabulary, not byte-level BPE")
    try:
        import tiktoken  # noqa: F401
    except ImportError as exc:
        raise fail("tiktoken", f"tiktoken is not installed ({exc})") from exc
    spec = definition(loaded, fail)
    model = bpe_model(spec, fail, "byte-level BPE")
    if model.get("byte_fallback"):
        raise fail("model", "byte_fallback is set (a SentencePiece-style BPE, not byte-level)")

    pattern_name, pattern, add_prefix_space = _pre_tokenizer(spec.get("pre_tokenizer"), fail)
    nfc = _normalizer(spec.get("normalizer"), fail)
    prefix, suffix, trim_offsets = fixed_post_processor(spec.get("post_processor"), fail)
    ranks, id_of_rank, missing_bytes = _ranks(model, fail)
    added = matched_added_tokens(spec.get("added_tokens") or [], nfc, fail)
    return TiktokenPlan(
        pattern_name=pattern_name,
        pattern=pattern,
        ranks=ranks,
        added=added,
        nfc=nfc,
        add_prefix_space=add_prefix_space,
        prefix=prefix,
        suffix=suffix,
        trim_offsets=trim_offsets,
        id_of_rank=id_of_rank,
        missing_bytes=missing_bytes,
    )


def spec_describes(spec: dict, tokenizer) -> bool:
    """Whether the loaded file's `spec` still describes `tokenizer`: added tokens, normalizer,
    pre-tokenizer, post-processor and the model's kind, size and settings all the same. (The
    tokenizers API changes a tokenizer only by replacing or adding to those; a model swapped for
    one of the same kind, size and settings is the one change this does not see.)"""
    try:
        added = {
            (i, t.content, t.single_word, t.lstrip, t.rstrip, t.normalized, t.special)
            for i, t in tokenizer.get_added_tokens_decoder().items()
        }
        keys = ("id", "content", "single_word", "lstrip", "rstrip", "normalized", "special")
        if added != {tuple(t.get(k) for k in keys) for t in spec.get("added_tokens") or []}:
            return False
        for name in ("normalizer", "pre_tokenizer", "post_processor"):
            part = getattr(tokenizer, name)
            if (None if part is None else json.loads(part.__getstate__())) != spec.get(name):
                return False
        model, want = tokenizer.model, spec["model"]
        settings = ("dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                    "fuse_unk", "byte_fallback", "ignore_merges")  # fmt: skip
        return (
            type(model).__name__ == want.get("type")
            and tokenizer.get_vocab_size(with_added_tokens=False) == len(want.get("vocab") or {})
            and all((getattr(model, k) or None) == (want.get(k) or None) for k in settings)
        )
    except Exception:  # anything unexpected: serialise the tokenizer instead
        return False


def _pre_tokenizer(spec, fail) -> tuple[str, str, bool]:
    """(pattern name, pattern, add_prefix_space) of a pre-tokenizer tiktoken can mirror."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "ByteLevel":
        if not spec.get("use_regex", True):
            raise fail("pre-tokenizer", "ByteLevel without a regex treats each text as one word")
        return "gpt2", PATTERNS["gpt2"], bool(spec.get("add_prefix_space"))
    if kind == "Sequence":
        steps = spec.get("pretokenizers") or []
        kinds = [step.get("type") for step in steps]
        if kinds == ["Split", "ByteLevel"]:
            split, byte_level = steps
            regex = (split.get("pattern") or {}).get("Regex")
            names = [name for name, known in PATTERNS.items() if known == regex]
            if not names:
                raise fail(
                    "pre-tokenizer",
                    f"the Split regex {regex!r} is not GPT-2's, Llama-3's, Qwen2's, Llama-4's"
                    " or tekken's",
                )
            if split.get("behavior") != "Isolated" or split.get("invert"):
                raise fail("pre-tokenizer", "the Split does not isolate the regex matches")
            if byte_level.get("use_regex", True) or byte_level.get("add_prefix_space"):
                raise fail(
                    "pre-tokenizer", "the ByteLevel after the Split splits again or adds spaces"
                )
            return names[0], PATTERNS[names[0]], False  # == regex, a str
        raise fail("pre-tokenizer", f"a Sequence of {kinds}, not Split + ByteLevel")
    raise fail("pre-tokenizer", f"{kind or 'none'}, not ByteLevel or Split + ByteLevel")


def _normalizer(spec, fail) -> bool:
    """True for NFC, False for none; anything else is refused."""
    if spec is None:
        return False
    kinds = [spec.get("type")]
    if kinds == ["Sequence"]:
        kinds = [step.get("type") for step in spec.get("normalizers") or []]
    if kinds in ([], ["NFC"]):
        return kinds == ["NFC"]
    raise fail("normalizer", f"{'+'.join(map(str, kinds))} (only none or NFC is mirrored)")


def fixed_post_processor(spec, fail) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
    """(ids before each text, ids after, trim_offsets) of a post-processor adding fixed ids."""
    steps = [] if spec is None else [spec]
    if spec is not None and spec.get("type") == "Sequence":
        steps = spec.get("processors") or []
    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()
    trim = False
    templates = 0
    for step in steps:
        kind = step.get("type")
        if kind == "ByteLevel":
            trim = trim or bool(step.get("trim_offsets"))
        elif kind == "TemplateProcessing":
            templates += 1
            prefix, suffix = _template(step, fail)
        else:
            raise fail("post-processor", f"{kind} (only ByteLevel and TemplateProcessing)")
    if templates > 1:
        raise fail("post-processor", "more than one TemplateProcessing")
    return prefix, suffix, trim


def _template(step, fail) -> tuple[tuple[int, ...], tuple[int, ...]]:
    specials = step.get("special_tokens") or {}
    before: list[int] = []
    after: list[int] = []
    seen_text = False
    for item in step.get("single") or []:
        if "Sequence" in item:
            if seen_text or item["Sequence"].get("id") != "A":
                raise fail("post-processor", "the single template is not one text")
            seen_text = True
        elif "SpecialToken" in item:
            name = item["SpecialToken"].get("id")
            ids = (specials.get(name) or {}).get("ids")
            if not isinstance(ids, list):
                raise fail("post-processor", f"the template's token {name!r} has no ids")
            (after if seen_text else before).extend(int(i) for i in ids)
        else:
            raise fail("post-processor", f"a template item {sorted(item)} is not understood")
    if not seen_text:
        raise fail("post-processor", "the single template holds no text")
    return tuple(before), tuple(after)


def _ranks(model: dict, fail) -> tuple[dict[bytes, int], tuple[int, ...], tuple[int, ...]]:
    """The tiktoken ranks (the byte tokens and every merge's result), the id of each rank when
    ranks are not ids (else empty), and the missing byte tokens text can hold."""
    vocab: dict[str, int] = model.get("vocab") or {}
    missing = [b for b, c in enumerate(BYTE_CHARS) if c not in vocab]
    holdable = tuple(b for b in missing if b not in UNREACHABLE_BYTES)
    present = [c for c in BYTE_CHARS if c in vocab]
    merges = model.get("merges") or []
    firsts, seconds = _merge_parts(merges, fail)
    get = vocab.__getitem__
    try:
        u = np.fromiter(map(get, firsts), np.int64, len(firsts))
        v = np.fromiter(map(get, seconds), np.int64, len(firsts))
        z = np.fromiter(map(get, map(operator.add, firsts, seconds)), np.int64, len(firsts))
    except KeyError as exc:
        raise fail("merges order", f"a merge names {exc.args[0]!r}, not in the vocabulary") from exc
    n = max(vocab.values()) + 1
    byte_ids = np.asarray([vocab[c] for c in present], np.int64)
    m = len(z)
    # tokenizers ranks a merge by its place in the list, tiktoken by its result's rank: with one
    # merge per token they agree when the ranks are the places. Ids in list order need no mapping.
    in_id_order = bool((np.diff(z) > 0).all())
    rank_of = np.full(n, -1, np.int64)
    if in_id_order:
        rank_of[byte_ids] = byte_ids
        rank_of[z] = z
        size = n
    else:
        rank_of[byte_ids] = np.arange(len(byte_ids))
        size = len(byte_ids) + m
    if m:
        first_of = np.full(n, -1, np.int64)
        first_of[z[::-1]] = np.arange(m)[::-1]
        again = first_of[z] != np.arange(m)
        if again.any():
            at = int(np.argmax(again))
            earlier = int(first_of[z[at]])
            if not model.get("ignore_merges"):
                raise fail(
                    "merges order",
                    f"merges {earlier} and {at} both make {firsts[at] + seconds[at]!r} and"
                    " ignore_merges is not set: a piece that is a token may not encode as itself",
                )
            return _every_split_ranks(vocab, u, v, z, holdable, fail)
        if not in_id_order:
            rank_of[z] = len(byte_ids) + np.arange(m)
        zr = rank_of[z]
        for side, name in ((u, "first"), (v, "second")):
            rank = rank_of[side]
            late = (rank < 0) | (rank >= zr)
            if late.any():
                at = int(np.argmax(late))
                raise fail(
                    "merges order",
                    f"merge {at} ({firsts[at]} {seconds[at]}): its {name} part is neither a byte nor"
                    " made by an earlier merge",
                )
        bad = _not_self_encoding(rank_of[u], rank_of[v], zr, size)
        if len(bad):
            at = int(np.flatnonzero(zr == bad[0])[0])
            raise fail(
                "self-encoding",
                f"{len(bad)} tokens do not come out of the merges as themselves"
                f" (e.g. id {z[at]}, {firsts[at] + seconds[at]!r}); tiktoken would merge them anyway",
            )
    keep = rank_of >= 0
    tokens = list(vocab)
    ids = np.fromiter(vocab.values(), np.int64, len(vocab))
    is_byte = np.zeros(n, bool)
    is_byte[byte_ids] = True
    if model.get("ignore_merges") and not (keep[ids] | is_byte[ids]).all():
        orphans = ~keep[ids]
        orphan = tokens[int(np.argmax(orphans))]
        raise fail(
            "vocabulary",
            f"ignore_merges is set and {int(orphans.sum())} tokens are made by no merge"
            f" (e.g. {orphan!r}); tokenizers would emit them whole, tiktoken cannot",
        )
    kept = keep[ids]
    tokens = list(itertools.compress(tokens, kept))
    pieces = _spell(tokens, fail)[3]
    ranks = dict(zip(pieces, rank_of[ids[kept]].tolist(), strict=True))
    if len(ranks) != int(keep.sum()):
        raise fail("vocabulary", "two tokens share an id or a spelling")
    id_of_rank: tuple[int, ...] = ()
    if not in_id_order:
        table = np.full(size, -1, np.int64)
        table[rank_of[ids[kept]]] = ids[kept]
        id_of_rank = tuple(table.tolist())
    return ranks, id_of_rank, holdable


def _every_split_ranks(
    vocab: dict[str, int], u: np.ndarray, v: np.ndarray, z: np.ndarray, holdable, fail
) -> tuple[dict[bytes, int], tuple[int, ...], tuple[int, ...]]:
    """The ranks of a tokenizer converted from tiktoken: ignore_merges and every split of every
    token listed, by result id (Llama-3, Llama-4, tekken). Then `tokenizers` merges the adjacent
    pair making the lowest id, as tiktoken does, and breaks ties between pairs making one token
    by their order in the list, then leftmost; tiktoken leftmost. The two choose alike because no
    state of tiktoken's run holds two different splits of one token as adjacent pairs:

    - Locality: if tiktoken's run on a text reaches a state with adjacent tokens a, b, its run on
      the bytes of ab alone passes through [a, b]. Its merges inside the span of ab are the run's
      own, in the same order: each was the lowest (rank, position) pair of the whole text, so of
      the span, and the pairs inside the span are the same in both runs.
    - So two adjacent pairs a, b and c, d making one token T put [a, b] and [c, d] in the one run
      on T's bytes; a run's states only coarsen, so it has one state of two tokens: a, b = c, d.

    With every split listed, `tokenizers`' candidates are tiktoken's (any adjacent pair whose
    concatenation is a token), and both order them by the id made, the same split at a tie, then
    leftmost; a piece that is a token is emitted whole by both (ignore_merges). So every token is
    a rank, by its id, and no merges-order or self-encoding check is needed.
    """
    steps = np.diff(z)
    if (steps < 0).any():
        at = int(np.argmax(steps < 0)) + 1
        raise fail(
            "merges order",
            f"merge {at} makes id {z[at]}, less than the previous merge's {z[at - 1]}; with"
            " several merges per token they must be listed by the id they make",
        )
    spelled, starts, ends, pieces = _spell(list(vocab), fail)
    ranks = dict(zip(pieces, vocab.values(), strict=True))
    if len(ranks) != len(vocab) or len(set(ranks.values())) != len(ranks):
        raise fail("vocabulary", "two tokens share an id or a spelling")
    pairs = np.sort(u * (int(z.max()) + 1) + v)
    listed = int((np.diff(pairs) != 0).sum()) + 1
    # The listed merges are splits of tokens into two tokens; as many as there are means all.
    splits = _count_splits(np.frombuffer(spelled, np.uint8), starts, ends)
    if splits != listed:
        raise fail(
            "merges order",
            f"the merges list {listed} of the {splits} splits of tokens into two tokens; with"
            " several merges per token every split must be listed, as tiktoken merges any",
        )
    return ranks, (), holdable


def _count_splits(spelled: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> int:
    """How many (token, cut) pairs cut a token into two tokens; tokens are spelled[start:end].

    Substrings are compared by a polynomial hash mod 2**64 (the base is odd, so invertible): a
    collision can only add a split, which makes the caller refuse, never accept.
    """
    base = 0x100000001B3
    size = len(spelled)
    powers = np.cumprod(np.r_[1, np.full(size, base)].astype(np.uint64), dtype=np.uint64)
    inverse = pow(base, -1, 1 << 64)
    inverses = np.cumprod(np.r_[1, np.full(size, inverse)].astype(np.uint64), dtype=np.uint64)
    # Bytes count from 1: a zero byte would add nothing, and NUL runs of any length would match.
    sums = np.r_[np.uint64(0), np.cumsum((spelled.astype(np.uint64) + 1) * powers[:size])]

    def hashed(first: np.ndarray, stop: np.ndarray) -> np.ndarray:
        return (sums[stop] - sums[first]) * inverses[first]

    known = np.sort(hashed(starts, ends))
    cuts = ends - starts - 1
    token = np.repeat(np.arange(len(starts)), np.maximum(cuts, 0))
    offset = np.arange(len(token)) - np.repeat(
        np.cumsum(np.maximum(cuts, 0)) - cuts.clip(0), cuts.clip(0)
    )
    cut = starts[token] + 1 + offset

    values = np.concatenate([hashed(starts[token], cut), hashed(cut, ends[token])])
    order = np.argsort(values)  # sorted queries search far faster
    at = np.minimum(np.searchsorted(known, values[order]), len(known) - 1)
    found = np.empty(len(values), bool)
    found[order] = known[at] == values[order]
    return int((found[: len(token)] & found[len(token) :]).sum())


def _merge_parts(merges: list, fail) -> tuple[list[str], list[str]]:
    """The first and second parts of every merge ("a b" strings or [a, b] pairs)."""
    if all(isinstance(m, str) for m in merges):
        flat = " ".join(merges).split(" ")
    else:
        flat = list(itertools.chain.from_iterable(merges))
    if len(flat) != 2 * len(merges):
        raise fail("merges order", "a merge that is not two tokens")
    return flat[0::2], flat[1::2]


def _not_self_encoding(u: np.ndarray, v: np.ndarray, z: np.ndarray, n: int) -> np.ndarray:
    """Ids of merge results that the merges, run on the result's bytes alone, do not rebuild.

    Merge i joins u[i] and v[i] into z[i], in id order. Encoding z's bytes alone rebuilds z exactly
    when it rebuilds u and v and no merge ever joins a token of u's side with one of v's first
    (z has no other merge). While u's side is built, its last token runs down u's right spine (u,
    its second part, that one's second part, ... a byte), each spine token living from its own id
    (merges are applied in id order) to its parent's; v's first token runs down v's left spine
    likewise. A crossing merge of spine tokens a and b, making r, fires when both are alive at r:
    r < parent(a), and r <= parent(b) (at a tie the crossing pair is the leftmost and goes first).
    Vectorised over all (a, b) spine pairs of all merges; a few hundred thousand for GPT-2.
    """
    m = len(z)
    left = np.full(n, -1, np.int64)
    right = np.full(n, -1, np.int64)
    left[z] = u
    right[z] = v

    def spine(child: np.ndarray, top: np.ndarray) -> list[np.ndarray]:
        """Column k: the k-th token down from each top (-1 past a byte); its parent is k-1."""
        columns = [top]
        while True:
            below = child[np.maximum(columns[-1], 0)]
            below[columns[-1] < 0] = -1
            if (below < 0).all():
                return columns
            columns.append(below)

    a_columns = spine(right, u)  # the last token of u's side while it is built
    b_columns = spine(left, v)  # the first token of v's side
    keys = u * n + v
    order = np.argsort(keys)
    sorted_keys = keys[order]
    sorted_made = z[order]
    crosses = np.zeros(m, bool)
    for ka, a in enumerate(a_columns):
        parent_a = z if ka == 0 else a_columns[ka - 1]
        for kb, b in enumerate(b_columns):
            parent_b = z if kb == 0 else b_columns[kb - 1]
            live = np.flatnonzero((a >= 0) & (b >= 0) & ~crosses)
            if not len(live):
                continue
            wanted = a[live] * n + b[live]
            at = np.minimum(np.searchsorted(sorted_keys, wanted), m - 1)
            made = sorted_made[at]
            hit = (sorted_keys[at] == wanted) & (made < parent_a[live]) & (made <= parent_b[live])
            crosses[live[hit]] = True
    # A token is bad when its own merge crosses or either part is bad; parts have lower ids, so
    # this settles in as many rounds as the deepest merge tree.
    bad = np.zeros(n, bool)
    while True:
        again = np.zeros(n, bool)
        again[z] = crosses | bad[u] | bad[v]
        if (again == bad).all():
            return np.flatnonzero(bad)
        bad = again


def matched_added_tokens(specs: list[dict], nfc: bool, fail) -> tuple[AddedToken, ...]:
    normalize = None
    if nfc:
        from tokenizers import normalizers

        normalize = normalizers.NFC().normalize_str
    added = []
    for spec in specs:
        content = spec.get("content") or ""
        if not content:
            continue  # tokenizers ignores empty added tokens
        normalized = bool(spec.get("normalized"))
        matched = normalize(content) if normalized and normalize else content
        if MARK[1] in matched:
            raise fail("added tokens", f"{content!r} holds U+FDD0, which the encoder reserves")
        added.append(
            AddedToken(
                id=int(spec["id"]),
                content=matched,
                special=bool(spec.get("special")),
                single_word=bool(spec.get("single_word")),
                lstrip=bool(spec.get("lstrip")),
                rstrip=bool(spec.get("rstrip")),
                normalized=normalized,
            )
        )
    # tokenizers resumes its search after a match, not after the whitespace an rstrip token took,
    # and would then split a token starting with whitespace out of that whitespace again.
    if any(t.rstrip for t in added) and any(t.content[0].isspace() for t in added):
        raise fail("added tokens", "an rstrip token and a token starting with whitespace")
    return tuple(added)
