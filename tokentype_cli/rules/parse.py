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
4. A pattern is token ids, vocabulary tokens, or text. Text (a literal, or a regular expression)
   is found in the article's decoded text, left to right without overlap, and the characters it
   covers map back to tokens (rules_text.py): a token partly inside the selected characters (a
   seam) is inside for `through`, `between` and `token`, outside for `until`.

Rule spelling on the command line: `KIND:ARGS=TYPE`, for example `through:ATG=prompt`,
`through:"### Response:"=prompt`, `span:2:4=prompt`, `token:GCC GGC=prompt`,
`until:re:"^### (Response|Answer):"=prompt`, `between:<|user|> .. <|assistant|>=prompt`.
ARGS are words separated by spaces: an unquoted integer is a token id, any other unquoted word a
vocabulary token; a word in double quotes (JSON escapes) or single quotes is text; `tok:` before a
word (quoted or not) makes it a vocabulary token again (`tok:"5"`, `tok:".."`, `tok:"\\u0120the"`);
`re:` before a word makes it a regular expression (inside `re:"..."` backslashes are the
expression's own, and `\\"` is a quote). TYPE follows the last `=`, the kind ends at the first
`:`, so patterns may contain `=` and `:`. In `between`, an unquoted `..` separates S from E.
Rules files keep every list of strings a list of vocabulary tokens; text is a table,
`{"text": "..."}` or `{"re": "..."}`. docs/rules.md is the reference.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeGuard

from tokentype_cli.errors import OptionError, RuleError, TokenizerError
from tokentype_cli.schema.names import TOKEN_TYPE_NAMES, TokenType, parse_token_type
from tokentype_cli.tokenizer_loader import LoadedTokenizer

KINDS = ("span", "token", "until", "through", "between")
PATTERN_KINDS = ("until", "through", "between")
FILE_KEYS = ("sep", "pad", "default", "from_existing", "rules")
TEXT_KEYS = ("text", "re", "ignore_case")  # a rules file's text pattern table
MAX_ID = 2**31 - 1

# An optional tok: / re: prefix, then a quoted word (with spaces) or a bare one.
_WORD = re.compile(r'(?:tok:|re:)?(?:"(?:[^"\\]|\\.)*"|\'[^\']*\')|\S+')
_INT = re.compile(r"[+-]?\d+")
_GLOBAL_FLAGS = re.compile(r"\(\?([imsx]+)\)")


@dataclass(frozen=True)
class TextPattern:
    """Text to find in an article's decoded text: a literal, or a regular expression."""

    source: str  # the literal text, or the expression
    regex: bool = False
    ignore_case: bool = False

    def expression(self) -> str:
        """A regular expression for this pattern alone, its flags scoped to it.

        Patterns are joined as alternatives, where a global flag group such as `(?s)` is an
        error unless it starts the whole expression: it becomes the group's own flags.
        """
        body, flags = re.escape(self.source), ""
        if self.regex:
            body = self.source
            leading = _GLOBAL_FLAGS.match(body)
            if leading:
                flags, body = leading.group(1), body[leading.end() :]
        if self.ignore_case and "i" not in flags:
            flags += "i"
        return f"(?{flags}:{body})"

    def describe(self) -> str:
        """`"text"` or `re:"expr"` as written on the command line, `(ignore case)` when set."""
        if self.regex:
            quote = "'" if '"' in self.source and "'" not in self.source else '"'
            written = f"re:{quote}{self.source}{quote}"
        else:
            written = json.dumps(self.source, ensure_ascii=False)
        return f"{written} (ignore case)" if self.ignore_case else written


def text_pattern(source: object, *, regex: bool, ignore_case: bool, where: str) -> TextPattern:
    """A checked TextPattern: non-empty text, a regular expression that compiles."""
    if not isinstance(source, str) or not source:
        what = "regular expression" if regex else "text"
        raise RuleError(f"{where}: the {what} to find must be a non-empty string")
    pattern = TextPattern(source, regex=regex, ignore_case=ignore_case)
    if regex:
        try:
            re.compile(pattern.expression(), re.MULTILINE)
        except (re.error, OverflowError, RecursionError, ValueError) as exc:
            raise RuleError(
                f"{where}: bad regular expression {source!r} ({exc}); fix it or drop re: to"
                " match the text literally"
            ) from exc
    return pattern


@dataclass(frozen=True)
class Rule:
    """One resolved rule: token ids or text patterns, never vocabulary strings."""

    kind: str
    type: TokenType
    where: str = "rule"  # e.g. "rules.toml rule 3" or "--rule 2", for messages
    start: int | None = None  # span
    stop: int | None = None  # span
    tokens: tuple[int, ...] = ()  # token: the set; until/through: the pattern; between: START
    end: tuple[int, ...] = ()  # between: END
    text: str = ""  # how the user wrote it, for the report
    # Text instead of tokens: the pattern (for `token`, any of several; for `between`, START)...
    find: tuple[TextPattern, ...] = ()
    find_end: tuple[TextPattern, ...] = ()  # ... and between's END

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RuleError(f"{self.where}: unknown rule kind {self.kind!r}; use {_kinds()}")
        if self.kind != "span" and not self.tokens and not self.find:
            raise RuleError(f"{self.where}: empty pattern; give at least one token or a text")
        if self.kind == "between" and not self.end and not self.find_end:
            raise RuleError(f"{self.where}: empty END pattern; give at least one token or a text")

    @property
    def uses_text(self) -> bool:
        """Whether the rule needs the articles' decoded text."""
        return bool(self.find or self.find_end)

    def describe(self) -> str:
        """The rule as `KIND ARGS -> TYPE`, ids as written by the user when known."""
        if self.text:
            body = self.text
        elif self.kind == "span":
            body = f"span {_bound(self.start)}:{_bound(self.stop)}"
        elif self.kind == "between":
            body = f"between {_side(self.tokens, self.find)} .. {_side(self.end, self.find_end)}"
        else:
            body = f"{self.kind} {_side(self.tokens, self.find)}"
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


def _side(tokens: Sequence[int], find: Sequence[TextPattern]) -> str:
    return " ".join(p.describe() for p in find) if find else _ids(tokens)


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


def _is_table(value: object) -> TypeGuard[Mapping[Any, Any]]:
    return isinstance(value, Mapping)


def _pattern(
    value: object,
    tokenizer: LoadedTokenizer | None,
    where: str,
    *,
    kind: str,
    ignore_case: bool,
) -> tuple[tuple[int, ...], tuple[TextPattern, ...]]:
    """A rules file's pattern: tokens (a token, or a list of them) or text ({"text": ...})."""
    items = value if isinstance(value, list) else [value]
    tables = [item for item in items if _is_table(item)]
    _check_pattern_shape(len(items), len(tables), kind, where, _FILE_SYNTAX)
    if not tables:
        return _resolve_tokens(items, tokenizer, where, lambda text: _file_spelling(kind, text)), ()
    return (), tuple(_file_text(table, tokenizer, where, ignore_case) for table in tables)


@dataclass(frozen=True)
class _Syntax:
    """How a rules file or the command line spells the fix of a badly shaped pattern."""

    mixed: str
    many: str


_FILE_SYNTAX = _Syntax(
    mixed='a pattern is tokens (["ATG"], [10]) or text ({"text": "..."}), not both; split it'
    " into two rules",
    many="takes one text or regular expression; only token takes a list of them",
)
_CLI_SYNTAX = _Syntax(
    mixed='a pattern is text ("...", re:"...") or tokens (ids, bare words, tok:"..."), not'
    " both; put the whole text in one pair of quotes",
    many="takes one text; put the whole text in one pair of quotes (only token takes several)",
)


def _check_pattern_shape(items: int, texts: int, kind: str, where: str, syntax: _Syntax) -> None:
    """The checks both rule syntaxes share: a pattern is not empty, is all tokens or all text,
    and only `token` takes several texts."""
    if not items:
        raise RuleError(f"{where}: empty pattern; give at least one token or a text")
    if texts and texts != items:
        raise RuleError(f"{where}: {syntax.mixed}")
    if texts > 1 and kind != "token":
        raise RuleError(f"{where}: {kind} {syntax.many}")


def _file_text(
    table: Mapping, tokenizer: LoadedTokenizer | None, where: str, ignore_case: bool
) -> TextPattern:
    unknown = sorted(set(table) - set(TEXT_KEYS))
    if unknown:
        raise RuleError(f"{where}: unknown key {unknown[0]!r} in a text pattern; use text or re")
    given = [key for key in ("text", "re") if key in table]
    if len(given) != 1:
        raise RuleError(
            f'{where}: a text pattern has exactly one of text and re, e.g. {{"text": "### Response:"}}'
        )
    case = table.get("ignore_case", ignore_case)
    if not isinstance(case, bool):
        raise RuleError(f"{where}: ignore_case must be true or false")
    _need_tokenizer_for_text(tokenizer, where)
    return text_pattern(table[given[0]], regex=given[0] == "re", ignore_case=case, where=where)


def _need_tokenizer_for_text(tokenizer: LoadedTokenizer | None, where: str) -> None:
    if tokenizer is None:
        raise RuleError(
            f"{where}: a text pattern is matched on the decoded articles; pass --tokenizer"
            " (or write the pattern as token ids)"
        )


def _resolve_tokens(
    items: Sequence[object],
    tokenizer: LoadedTokenizer | None,
    where: str,
    spelling: Callable[[str], str],
) -> tuple[int, ...]:
    """Ids of a token pattern; a string missing from the vocabulary says how to match its text."""
    for item in items:
        if isinstance(item, str) and tokenizer is not None and item not in tokenizer.vocab:
            text = " ".join(str(i) for i in items)
            raise RuleError(
                f"{where}: token {item!r} is not in the vocabulary of {tokenizer.path}"
                f"{_split_hint(text, tokenizer)}; to match the text write {spelling(text)}"
            )
    return tuple(resolve_token(item, tokenizer, where) for item in items)


def _split_hint(text: str, tokenizer: LoadedTokenizer) -> str:
    """`; "### Response:" tokenizes as ### ĠResponse : (ids 21017 18261 25)`, or nothing."""
    try:
        encoding = tokenizer.tokenizer.encode(text, add_special_tokens=False)
    except Exception:  # tokenizers raises plain Exception from Rust (e.g. WordLevel without unk)
        return ""
    if not encoding.ids:
        return ""
    tokens = " ".join(_token_spelling(token) for token in encoding.tokens)
    ids = " ".join(str(i) for i in encoding.ids)
    return f"; {json.dumps(text, ensure_ascii=False)} tokenizes as {tokens} (ids {ids})"


def _token_spelling(token: str) -> str:
    """A vocabulary token as a command-line word that means it: bare when that is unambiguous."""
    bare = (
        token
        and not _INT.fullmatch(token)
        and token != ".."
        and not token.startswith(("tok:", "re:"))
        and not any(c.isspace() or c in "\"'" for c in token)
    )
    return token if bare else "tok:" + json.dumps(token, ensure_ascii=False)


def _file_spelling(kind: str, text: str) -> str:
    return json.dumps({kind: {"text": text}}, ensure_ascii=False)


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


def load_rules_file(
    path: str | Path, tokenizer: LoadedTokenizer | None, *, ignore_case: bool = False
) -> RulesConfig:
    """Read a TOML or JSON rules file (`-` reads stdin) and resolve its tokens.

    `ignore_case` is the default of every text pattern's own `ignore_case`.
    """
    name = "<stdin>" if str(path) == "-" else str(path)
    if name == "<stdin>" and sys.stdin is None:  # closed (`<&-`), not just empty
        raise RuleError(f"{name}: no standard input to read rules from; give a rules file")
    try:
        # Bounded: rules files are kilobytes; /dev/zero or an endless pipe would fill memory.
        if name == "<stdin>":
            stream = getattr(sys.stdin, "buffer", None)
            data = (
                stream.read(RULES_FILE_LIMIT + 1)
                if stream is not None
                else sys.stdin.read(RULES_FILE_LIMIT + 1).encode("utf-8")
            )
        else:
            with open(path, "rb") as handle:
                data = handle.read(RULES_FILE_LIMIT + 1)
        if len(data) > RULES_FILE_LIMIT:
            raise RuleError(
                f"{name}: larger than the {RULES_FILE_LIMIT >> 20} MB a rules file may have;"
                " check the path"
            )
        text = data.decode("utf-8")
    except FileNotFoundError as exc:
        raise RuleError(f"{name}: no such rules file; check the path") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"{name}: cannot read rules file ({exc})") from exc
    return parse_rules_text(text, name, tokenizer, ignore_case=ignore_case)


RULES_FILE_LIMIT = 16 << 20


def parse_rules_text(
    text: str, name: str, tokenizer: LoadedTokenizer | None, *, ignore_case: bool = False
) -> RulesConfig:
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
    return parse_rules_data(data, name, tokenizer, ignore_case=ignore_case)


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
    data: Mapping[str, object],
    name: str,
    tokenizer: LoadedTokenizer | None,
    *,
    ignore_case: bool = False,
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
        config.rules.append(
            parse_rule_item(item, f"{name} rule {position}", tokenizer, ignore_case=ignore_case)
        )
    return config


def parse_rule_item(
    item: object, where: str, tokenizer: LoadedTokenizer | None, *, ignore_case: bool = False
) -> Rule:
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
    if kind == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(
                f'{where}: between must be [START, END], e.g. [["<|user|>"], ["<|assistant|>"]]'
                ' or [{"text": "<|user|>"}, {"text": "<|assistant|>"}]'
            )
        tokens, find = _pattern(
            value[0], tokenizer, f"{where} START", kind=kind, ignore_case=ignore_case
        )
        end, find_end = _pattern(
            value[1], tokenizer, f"{where} END", kind=kind, ignore_case=ignore_case
        )
        return Rule(
            "between",
            token_type,
            where,
            tokens=tokens,
            end=end,
            find=find,
            find_end=find_end,
            text=f"between {_as_written(value[0], find)} .. {_as_written(value[1], find_end)}",
        )
    tokens, find = _pattern(value, tokenizer, where, kind=kind, ignore_case=ignore_case)
    text = f"{kind} {_as_written(value, find)}"
    return Rule(kind, token_type, where, tokens=tokens, find=find, text=text)


def _as_written(value: object, find: Sequence[TextPattern] = ()) -> str:
    """Tokens of a rules file for the report, strings marked tok: only when they need it."""
    if find:
        return " ".join(p.describe() for p in find)
    items = value if isinstance(value, list) else [value]
    return " ".join(_token_spelling(i) if isinstance(i, str) else str(i) for i in items)


# --- command-line rules ----------------------------------------------------------------------------


class Word(NamedTuple):
    """One word of a command-line pattern and what it means."""

    value: str | int
    kind: str  # "id", "token" (a vocabulary string), "text" or "regex"
    raw: str  # as typed, to rebuild the rule in messages


def split_words(text: str, where: str) -> list[Word]:
    """Words of a command-line pattern: ids, vocabulary tokens, texts and regular expressions."""
    words: list[Word] = []
    for match in _WORD.finditer(text):
        raw = match.group()
        prefix = next((p for p in ("tok:", "re:") if raw.startswith(p)), "")
        word = raw[len(prefix) :]
        quoted = len(word) >= 2 and word[0] == word[-1] and word[0] in "\"'"
        if word[:1] in ('"', "'") and not quoted:
            raise RuleError(f"{where}: unclosed quote in {raw!r}; close it or give the token's id")
        if prefix == "re:":
            # The expression as written: JSON escapes would turn \d into an error.
            expression = word[1:-1].replace('\\"', '"') if quoted else word
            words.append(Word(expression, "regex", raw))
            continue
        if quoted and word[0] == '"':
            try:
                value = json.loads(word)
            except json.JSONDecodeError as exc:
                raise RuleError(f"{where}: bad quoted word {word} ({exc.msg})") from exc
        elif quoted:
            value = word[1:-1]
        else:
            value = word
        if prefix == "tok:":
            words.append(Word(value, "token", raw))
        elif quoted:
            words.append(Word(value, "text", raw))
        elif _INT.fullmatch(word):
            words.append(Word(int(word), "id", raw))
        else:
            words.append(Word(word, "token", raw))
    return words


def parse_token_word(text: str, tokenizer: LoadedTokenizer | None, where: str) -> int:
    """One token as written on the command line (`--sep`, `--pad`): an id or a vocabulary string.

    A quoted word is a vocabulary token here, as before text patterns: a separator is one token.
    """
    words = split_words(text, where)
    if len(words) != 1:
        raise RuleError(f"{where}: {text!r} is not one token; quote it or give its id")
    if words[0].kind == "regex":
        raise RuleError(f"{where}: a separator or padding token is one token, not re:; give it")
    return resolve_token(words[0].value, tokenizer, where)


def parse_rule_spec(
    spec: str, where: str, tokenizer: LoadedTokenizer | None, *, ignore_case: bool = False
) -> Rule:
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
    return _rule_from_args(kind, args, token_type, type_text, where, tokenizer, ignore_case)


def parse_pattern_spec(
    spec: str, where: str, tokenizer: LoadedTokenizer | None, *, ignore_case: bool = False
) -> tuple[Rule, TokenType | None]:
    """`KIND:ARGS` with `=TYPE` optional (what --explain shows): the rule and its type if given.

    Without a type the rule carries `prompt`, which the caller must not apply.
    """
    kind, colon, rest = spec.partition(":")
    args, equals, type_text = rest.rpartition("=")
    if colon and equals:
        try:
            token_type = parse_type(type_text, where)
            split_words(args, where)  # `="a=b"` leaves an unclosed quote: then = is in the text
        except RuleError:
            pass
        else:
            return parse_rule_spec(spec, where, tokenizer, ignore_case=ignore_case), token_type
    example = 'write KIND:ARGS, e.g. through:"### Response:"'
    where = f"{where} {spec!r}"
    kind = kind.strip().lower()
    if not colon:
        raise RuleError(f"{where}: no 'KIND:' at the start; {example}")
    if kind not in KINDS:
        raise RuleError(f"{where}: unknown rule kind {kind!r}; use one of {_kinds()}; {example}")
    prompt = TokenType.PROMPT
    return _rule_from_args(kind, rest, prompt, "prompt", where, tokenizer, ignore_case), None


def _rule_from_args(
    kind: str,
    args: str,
    token_type: TokenType,
    type_text: str,
    where: str,
    tokenizer: LoadedTokenizer | None,
    ignore_case: bool,
) -> Rule:
    text = f"{kind} {args.strip()}"
    if kind == "span":
        start, stop = parse_span(args, where)
        return Rule("span", token_type, where, start=start, stop=stop, text=text)
    words = split_words(args, where)
    if ignore_case and any(w.kind in ("text", "regex") for w in words):
        text += " (ignore case)"

    def side(side_words: list[Word], rebuild: Callable[[str], str]) -> tuple:
        def spelling(as_text: str) -> str:
            return f"{kind}:{rebuild(json.dumps(as_text, ensure_ascii=False))}={type_text.strip()}"

        return _cli_pattern(side_words, kind, tokenizer, where, ignore_case, spelling)

    if kind == "between":
        cuts = [i for i, w in enumerate(words) if w.raw == ".."]
        if len(cuts) != 1:
            raise RuleError(
                f"{where}: between needs START .. END, e.g. between:<|user|> .. <|assistant|>=prompt"
                ' (write tok:".." for the token itself)'
            )
        cut = cuts[0]
        start_words, end_words = words[:cut], words[cut + 1 :]
        if not start_words or not end_words:
            raise RuleError(f"{where}: empty START or END pattern; give at least one token each")
        start_raw = " ".join(w.raw for w in start_words)
        end_raw = " ".join(w.raw for w in end_words)
        tokens, find = side(start_words, lambda new: f"{new} .. {end_raw}")
        end, find_end = side(end_words, lambda new: f"{start_raw} .. {new}")
        return Rule(
            "between",
            token_type,
            where,
            tokens=tokens,
            end=end,
            find=find,
            find_end=find_end,
            text=text,
        )
    tokens, find = side(words, lambda new: new)
    return Rule(kind, token_type, where, tokens=tokens, find=find, text=text)


def _cli_pattern(
    words: list[Word],
    kind: str,
    tokenizer: LoadedTokenizer | None,
    where: str,
    ignore_case: bool,
    spelling: Callable[[str], str],
) -> tuple[tuple[int, ...], tuple[TextPattern, ...]]:
    """One command-line pattern: tokens (ids, bare words, tok:) or text ("...", re:)."""
    texts = [w for w in words if w.kind in ("text", "regex")]
    _check_pattern_shape(len(words), len(texts), kind, where, _CLI_SYNTAX)
    if not texts:
        values = [w.value for w in words]
        return _resolve_tokens(values, tokenizer, where, spelling), ()
    _need_tokenizer_for_text(tokenizer, where)
    return (), tuple(
        text_pattern(w.value, regex=w.kind == "regex", ignore_case=ignore_case, where=where)
        for w in texts
    )


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
    for flag, off, other_given in (
        ("--no-sep", no_sep, bool(sep)),
        ("--no-pad", no_pad, pad is not None),
    ):
        if off and other_given:
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
