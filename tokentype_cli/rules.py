"""Token-type rules for `assign-types`: what they mean, how they are written, how they are parsed.

Semantics (the engine in rules_engine.py implements them over whole row blocks):

1. Structure first. Every `sep` token is a separator (3) and closes an article. The run of the
   `pad` token at the end of a row is padding (2); when `pad` is also a separator and the row has
   other tokens before the run, the run's first token is the separator and the rest padding. Every
   other token starts as `default`. With `from_existing` the row's current types are the start,
   and their separators (3) and padding (2) are the structure.
2. A row splits into articles at separators. An article's body is its tokens that are neither
   separator nor padding, in order; only articles with a non-empty body count as articles.
3. Rules run in order on every body and set the tokens they select to their type; a later rule
   wins; separators and padding are never touched. Patterns match consecutive body tokens, so a
   pattern never spans a separator.
   - `span A:B`: body positions A <= p < B, as a Python slice (negatives count from the end).
   - `token T...`: every occurrence of these tokens.
   - `until P`: the tokens before the first occurrence of P (nothing if P does not occur).
   - `through P`: the same, including the occurrence.
   - `between S E`: left to right, from each occurrence of S through the end of the first
     occurrence of E that starts after that S ends (to the end of the body if none); the scan
     resumes after that span.

Rule spelling on the command line: `KIND:ARGS=TYPE`, for example `through:ATG=prompt`,
`span:2:4=prompt`, `token:GCC GGC=prompt`, `between:<|user|> .. <|assistant|>=prompt`.
ARGS are words separated by spaces; an unquoted integer is a token id, any other word a vocabulary
token; a word in double quotes (JSON escapes) or single quotes is always a vocabulary token, so
`"5"`, `".."`, `"a b"` or `"\\u0120the"` can be written. TYPE follows the last `=`, the kind ends
at the first `:`, so tokens may contain `=` and `:`. In `between`, an unquoted `..` separates S
from E.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tokentype_cli.errors import OptionError, RuleError, TokenizerError
from tokentype_cli.schema import TOKEN_TYPE_NAMES, TokenType, parse_token_type
from tokentype_cli.tokenizer_loader import LoadedTokenizer

KINDS = ("span", "token", "until", "through", "between")
PATTERN_KINDS = ("until", "through", "between")
FILE_KEYS = ("sep", "pad", "default", "from_existing", "rules")
MAX_ID = 2**31 - 1

_WORD = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|\S+')
_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Rule:
    """One resolved rule: token ids, never strings."""

    kind: str
    type: TokenType
    where: str = "rule"  # e.g. "rules.toml rule 3" or "--rule 2", for messages
    start: int | None = None  # span
    stop: int | None = None  # span
    tokens: tuple[int, ...] = ()  # token: the set; until/through: the pattern; between: START
    end: tuple[int, ...] = ()  # between: END
    text: str = ""  # how the user wrote it, for the report

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RuleError(f"{self.where}: unknown rule kind {self.kind!r}; use {_kinds()}")
        if self.kind != "span" and not self.tokens:
            raise RuleError(f"{self.where}: empty pattern; give at least one token")
        if self.kind == "between" and not self.end:
            raise RuleError(f"{self.where}: empty END pattern; give at least one token")

    def describe(self) -> str:
        """The rule as `KIND ARGS -> TYPE`, ids as written by the user when known."""
        if self.text:
            body = self.text
        elif self.kind == "span":
            body = f"span {_bound(self.start)}:{_bound(self.stop)}"
        elif self.kind == "between":
            body = f"between {_ids(self.tokens)} .. {_ids(self.end)}"
        else:
            body = f"{self.kind} {_ids(self.tokens)}"
        return f"{body} -> {TOKEN_TYPE_NAMES[self.type]}"


@dataclass(frozen=True)
class Structure:
    """Where separators and padding are, and what every other token starts as."""

    sep: tuple[int, ...] = ()
    pad: int | None = None
    default: TokenType = TokenType.COMPLETION
    from_existing: bool = False


@dataclass
class RulesConfig:
    """What a rules file (or nothing) says; None means "not given"."""

    sep: tuple[int, ...] | None = None
    pad: int | None = None
    default: TokenType | None = None
    from_existing: bool | None = None
    rules: list[Rule] = field(default_factory=list)


def _kinds() -> str:
    return ", ".join(KINDS)


def _bound(value: int | None) -> str:
    return "" if value is None else str(value)


def _ids(tokens: Sequence[int]) -> str:
    return " ".join(str(t) for t in tokens)


# --- tokens ----------------------------------------------------------------------------------------


def resolve_token(value: object, tokenizer: LoadedTokenizer | None, where: str) -> int:
    """An id for an integer id or a vocabulary string (which needs a tokenizer)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RuleError(
            f'{where}: token {value!r} is neither an id nor a vocabulary string; use 10 or "ATG"'
        )
    if isinstance(value, int):
        if not 0 <= value <= MAX_ID:
            raise RuleError(f"{where}: token id {value} is out of range; ids are 0..{MAX_ID}")
        if tokenizer is None:
            return value
    elif tokenizer is None:
        raise RuleError(
            f"{where}: token {value!r} is a vocabulary string; pass --tokenizer or give its id"
        )
    try:
        return tokenizer.token_id(value)
    except TokenizerError as exc:
        raise RuleError(f"{where}: {exc}") from exc


def _pattern(value: object, tokenizer: LoadedTokenizer | None, where: str) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise RuleError(f"{where}: empty pattern; give at least one token")
    return tuple(resolve_token(item, tokenizer, where) for item in items)


def parse_span(text: str, where: str) -> tuple[int | None, int | None]:
    """`A:B` with Python slice meaning; either bound may be empty."""
    parts = text.strip().split(":")
    if len(parts) != 2:
        raise RuleError(f"{where}: span {text!r} is not A:B; write e.g. 2:4, :-1 or 3:")
    bounds = []
    for part in parts:
        part = part.strip()
        if part and not _INT.fullmatch(part):
            raise RuleError(f"{where}: span bound {part!r} is not an integer; write e.g. 2:4")
        bounds.append(int(part) if part else None)
    return bounds[0], bounds[1]


def parse_type(value: object, where: str) -> TokenType:
    try:
        return parse_token_type(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise RuleError(f"{where}: {exc}") from exc


# --- rules files -----------------------------------------------------------------------------------


def load_rules_file(path: str | Path, tokenizer: LoadedTokenizer | None) -> RulesConfig:
    """Read a TOML or JSON rules file (`-` reads stdin) and resolve its tokens."""
    name = "<stdin>" if str(path) == "-" else str(path)
    if name == "<stdin>" and sys.stdin is None:  # closed (`<&-`), not just empty
        raise RuleError(f"{name}: no standard input to read rules from; give a rules file")
    try:
        text = sys.stdin.read() if name == "<stdin>" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RuleError(f"{name}: no such rules file; check the path") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"{name}: cannot read rules file ({exc})") from exc
    return parse_rules_text(text, name, tokenizer)


def parse_rules_text(text: str, name: str, tokenizer: LoadedTokenizer | None) -> RulesConfig:
    """Parse rules given as JSON or TOML text; the suffix of `name` picks the format when known."""
    suffix = Path(name).suffix.lower()
    data: object
    if suffix == ".toml":
        data = _toml(text, name)
    elif suffix == ".json":
        data = _json(text, name)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = _toml(text, name)
        except RecursionError as exc:
            raise RuleError(f"{name}: JSON nested too deeply to be a rules file") from exc
    if not isinstance(data, Mapping):
        raise RuleError(f"{name}: a rules file holds one table/object with keys {FILE_KEYS}")
    return parse_rules_data(data, name, tokenizer)


def _toml(text: str, name: str) -> object:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{name}: not valid TOML ({exc})") from exc
    except RecursionError as exc:
        raise RuleError(f"{name}: TOML nested too deeply to be a rules file") from exc


def _json(text: str, name: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuleError(f"{name}: not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise RuleError(f"{name}: JSON nested too deeply to be a rules file") from exc


def parse_rules_data(
    data: Mapping[str, object], name: str, tokenizer: LoadedTokenizer | None
) -> RulesConfig:
    """Check and resolve a parsed rules document."""
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise RuleError(f"{name}: unknown key {unknown[0]!r}; use {', '.join(FILE_KEYS)}")
    config = RulesConfig()
    if "sep" in data:
        sep = data["sep"]
        items = sep if isinstance(sep, list) else [sep]
        config.sep = tuple(resolve_token(item, tokenizer, f"{name}: sep") for item in items)
    if "pad" in data:
        config.pad = resolve_token(data["pad"], tokenizer, f"{name}: pad")
    if "default" in data:
        config.default = parse_type(data["default"], f"{name}: default")
    if "from_existing" in data:
        if not isinstance(data["from_existing"], bool):
            raise RuleError(f"{name}: from_existing must be true or false")
        config.from_existing = data["from_existing"]
    rules = data.get("rules", [])
    if not isinstance(rules, list):
        raise RuleError(f"{name}: 'rules' must be a list of rules ([[rules]] in TOML)")
    for position, item in enumerate(rules, 1):
        config.rules.append(parse_rule_item(item, f"{name} rule {position}", tokenizer))
    return config


def parse_rule_item(item: object, where: str, tokenizer: LoadedTokenizer | None) -> Rule:
    """One rule of a file: exactly one of span/token/until/through/between, plus type."""
    if not isinstance(item, Mapping):
        raise RuleError(f'{where}: a rule is a table like {{"until": ["ATG"], "type": "prompt"}}')
    unknown = sorted(set(item) - {*KINDS, "type"})
    if unknown:
        raise RuleError(f"{where}: unknown key {unknown[0]!r}; use one of {_kinds()} and type")
    kinds = [k for k in KINDS if k in item]
    if len(kinds) != 1:
        found = " and ".join(kinds) if kinds else "none"
        raise RuleError(f"{where}: needs exactly one of {_kinds()} (found {found})")
    if "type" not in item:
        raise RuleError(f"{where}: missing 'type'; add e.g. type = \"prompt\"")
    kind = kinds[0]
    value = item[kind]
    token_type = parse_type(item["type"], where)
    if kind == "span":
        if isinstance(value, str):
            start, stop = parse_span(value, where)
        elif (
            isinstance(value, list)
            and len(value) == 2
            and all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in value)
        ):
            start, stop = value
        else:
            raise RuleError(f'{where}: span must be "A:B" (e.g. "2:4", ":-1")')
        return Rule("span", token_type, where, start=start, stop=stop)
    text = f"{kind} {_as_written(value)}"
    if kind == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(
                f'{where}: between must be [START, END], e.g. [["<|user|>"], ["<|assistant|>"]]'
            )
        return Rule(
            "between",
            token_type,
            where,
            tokens=_pattern(value[0], tokenizer, f"{where} START"),
            end=_pattern(value[1], tokenizer, f"{where} END"),
            text=f"between {_as_written(value[0])} .. {_as_written(value[1])}",
        )
    return Rule(kind, token_type, where, tokens=_pattern(value, tokenizer, where), text=text)


def _as_written(value: object) -> str:
    """Tokens of a rules file for the report, strings quoted only when they need it."""
    items = value if isinstance(value, list) else [value]
    words = []
    for item in items:
        plain = isinstance(item, str) and item and not _INT.fullmatch(item) and item != ".."
        plain = plain and not any(c.isspace() or c in "\"'" for c in item)
        words.append(item if plain or not isinstance(item, str) else json.dumps(item))
    return " ".join(str(word) for word in words)


# --- command-line rules ----------------------------------------------------------------------------


def split_words(text: str, where: str) -> list[tuple[str | int, bool]]:
    """Words of a command-line rule: (id or string, quoted?)."""
    words: list[tuple[str | int, bool]] = []
    for match in _WORD.finditer(text):
        word = match.group()
        if len(word) >= 2 and word[0] == '"' and word[-1] == '"':
            try:
                words.append((json.loads(word), True))
            except json.JSONDecodeError as exc:
                raise RuleError(f"{where}: bad quoted token {word} ({exc.msg})") from exc
        elif len(word) >= 2 and word[0] == "'" and word[-1] == "'":
            words.append((word[1:-1], True))
        elif word[0] in "\"'":
            raise RuleError(f"{where}: unclosed quote in {word!r}; close it or give the token's id")
        elif _INT.fullmatch(word):
            words.append((int(word), False))
        else:
            words.append((word, False))
    return words


def parse_token_word(text: str, tokenizer: LoadedTokenizer | None, where: str) -> int:
    """One token as written on the command line (`--sep`, `--pad`): an id or a vocabulary string."""
    words = split_words(text, where)
    if len(words) != 1:
        raise RuleError(f"{where}: {text!r} is not one token; quote it or give its id")
    return resolve_token(words[0][0], tokenizer, where)


def parse_rule_spec(spec: str, where: str, tokenizer: LoadedTokenizer | None) -> Rule:
    """`KIND:ARGS=TYPE`, for example `through:ATG=prompt` or `span:2:4=prompt`."""
    example = "write KIND:ARGS=TYPE, e.g. through:ATG=prompt or span:2:4=prompt"
    where = f"{where} {spec!r}"
    kind, colon, rest = spec.partition(":")
    kind = kind.strip().lower()
    if not colon:
        raise RuleError(f"{where}: no 'KIND:' at the start; {example}")
    if kind not in KINDS:
        raise RuleError(f"{where}: unknown rule kind {kind!r}; use one of {_kinds()}; {example}")
    args, equals, type_text = rest.rpartition("=")
    if not equals:
        raise RuleError(f"{where}: no '=TYPE' at the end; {example}")
    token_type = parse_type(type_text, where)
    text = f"{kind} {args.strip()}"
    if kind == "span":
        start, stop = parse_span(args, where)
        return Rule("span", token_type, where, start=start, stop=stop, text=text)
    words = split_words(args, where)
    if kind == "between":
        cuts = [i for i, (word, quoted) in enumerate(words) if word == ".." and not quoted]
        if len(cuts) != 1:
            raise RuleError(
                f"{where}: between needs START .. END, e.g. between:<|user|> .. <|assistant|>=prompt"
                ' (write ".." in quotes for the token itself)'
            )
        cut = cuts[0]
        start_words, end_words = words[:cut], words[cut + 1 :]
        if not start_words or not end_words:
            raise RuleError(f"{where}: empty START or END pattern; give at least one token each")
        return Rule(
            "between",
            token_type,
            where,
            tokens=tuple(resolve_token(w, tokenizer, where) for w, _ in start_words),
            end=tuple(resolve_token(w, tokenizer, where) for w, _ in end_words),
            text=text,
        )
    tokens = tuple(resolve_token(w, tokenizer, where) for w, _ in words)
    return Rule(kind, token_type, where, tokens=tokens, text=text)


# --- putting options together ------------------------------------------------------------------------


def build_structure(
    config: RulesConfig,
    *,
    sep: Sequence[int] | None,
    pad: int | None,
    default: TokenType | None,
    from_existing: bool,
    tokenizer: LoadedTokenizer | None,
    no_sep: bool = False,
    no_pad: bool = False,
) -> Structure:
    """Command-line options override the rules file; a tokenizer supplies sep and pad defaults.

    `no_sep` / `no_pad` switch those defaults off (a rules file says the same with `sep = []`).
    """
    for flag, off, given in (
        ("--no-sep", no_sep, bool(sep)),
        ("--no-pad", no_pad, pad is not None),
    ):
        if off and given:
            raise OptionError(
                f"{flag} and {flag.replace('no-', '')} contradict each other; drop one"
            )
    from_existing = from_existing or bool(config.from_existing)
    if from_existing:
        # `is not None`: pad id 0 and type 0 (prompt) are given too.
        options = (
            ("--sep", sep or None),
            ("--pad", pad),
            ("--default", default),
            ("--no-sep", no_sep or None),
            ("--no-pad", no_pad or None),
        )
        given = [flag for flag, value in options if value is not None]
        given += [
            f"'{key}' of the rules file"
            for key in ("sep", "pad", "default")
            if getattr(config, key) is not None
        ]
        if given:
            raise OptionError(
                f"--from-existing takes separators, padding and types from the file; drop {given[0]}"
            )
        return Structure(from_existing=True)
    seps: tuple[int, ...] | None = () if no_sep else tuple(sep) if sep else config.sep
    if seps is None:
        seps = () if tokenizer is None or tokenizer.eos_id is None else (tokenizer.eos_id,)
    pad_id = None if no_pad else pad if pad is not None else config.pad
    if pad_id is None and tokenizer is not None and not no_pad:
        pad_id = tokenizer.pad_or_eos_id
    token_type = default if default is not None else config.default
    return Structure(
        sep=tuple(dict.fromkeys(seps)),
        pad=pad_id,
        default=TokenType.COMPLETION if token_type is None else token_type,
    )
