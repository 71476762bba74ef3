"""Chat conversations: render `messages` with the tokenizer's chat template exactly as Hugging Face
transformers does, and say which characters of the rendering the model learns.

Rendering follows transformers' `apply_chat_template`: a jinja2 `ImmutableSandboxedEnvironment`
with `trim_blocks` and `lstrip_blocks`, the loop-controls extension, a `{% generation %}` block
tag, `raise_exception` and `strftime_now` globals, a `tojson` filter that does not escape HTML and
takes json.dumps' arguments, the tokenizer's special tokens as variables, `tools` and `documents`
(None when the line has none) and `add_generation_prompt=False`.

What each message produced is found from one rendering of the whole conversation, by watching the
template run rather than by re-rendering prefixes of it (templates that rewrite earlier turns,
such as dropping the reasoning of past assistant turns, make a prefix's rendering differ from the
same turns inside the whole conversation). The template is compiled with a probe at the start of
every `{% for %}` body and after every loop: each probe records which message object the
iteration holds (every message is a distinct dict, so this works whatever list the template loops
over: `messages`, `messages[1:]`, a reversed copy) and how many characters had been written when
it ran, the position transformers' generation tracker reads too. A message's region is the text
its iteration wrote (in whichever loop wrote the most for it: a template may split the messages
over two loops). The probes write nothing, so the text is exactly what transformers renders.
Templates with `{% generation %}` blocks decide directly what is learned.

Without blocks, a learned assistant turn runs from the first character it writes after its
header to the end of its end-of-turn marker, the rule trainers use when they add generation
blocks to published templates. The header is what the template's generation prompt writes
(add_generation_prompt rendered after the messages before the first assistant turn), bounded by
what the turn shares with a stand-in rendering in which every assistant message is reduced to
{role, stand-in content} and every other content replaced by a stand-in; without a generation
prompt, the stand-in alone decides. So a `<think>` the template opens is learned, and tool calls
rendered without content differ from the stand-in and are learned. The marker is the special
token the template writes after the content (as many from the end as the stand-in writes after
its stand-in); what follows it is prompt. A turn written outside the loops (Nemotron's last turn,
a template that writes everything after its loop) is the text that changes when that message
alone is replaced by the stand-in, from the generation prompt before it to the first marker
after it. Both stand-in renderings depend only on the conversation's shape (roles, other keys,
tools), so they are cached and most conversations of a data set render once.

Every rendering is bounded in size and work (template_limits.py).

Rendering runs in the reader thread; the encoder threads type the tokens (type_tokens) from the
learned character ranges.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tokentype_cli.errors import TemplateError
from tokentype_cli.tokenize import template_limits
from tokentype_cli.tokenize.options import TokenizeOptions
from tokentype_cli.tokenize.template_limits import (
    CONCAT,
    Budget,
    LimitExceeded,
    Limits,
    bounded_environment,
)
from tokentype_cli.tokenizer_loader import SPECIAL_TOKEN_KEYS, LoadedTokenizer

if TYPE_CHECKING:
    import jinja2  # at run time, imported where it is used

# Special-token names transformers passes to a template (its special_tokens_map): the keys its
# add_special_tokens takes.
SPECIAL_TOKEN_NAMES = SPECIAL_TOKEN_KEYS
# Stand-in contents for the header-finding rendering: supplementary private-use characters, which
# no tokenizer or template treats specially and real text does not hold.
_SENTINEL_BASE = 0xF0000
_ITERATION = "__tokentype_iteration"
_LOOP_END = "__tokentype_loop_end"
_GENERATION = "__tokentype_generation"
_TEMPLATE_FILE = "<template>"  # jinja's name for a template compiled from a string


class ConversationError(Exception):
    """A conversation that cannot be used; the message is 'what is wrong; the fix'."""


# --- finding the template ------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateSource:
    text: str
    origin: str  # the file it came from, and which template in it
    embedded: bool  # inside a JSON file: lines are the template's own, not the file's

    def where(self, line: int | None) -> str:
        if line is None:
            return self.origin
        return f"{self.origin} line {line}" if self.embedded else f"{self.origin}:{line}"


def template_sources(tokenizer: LoadedTokenizer, template_file: str | None) -> dict:
    """The chat templates to choose from: {None: source} for one, {name: source} for named ones.

    --chat-template FILE wins; then the tokenizer folder's tokenizer_config.json `chat_template`
    (a string, or a list of {"name", "template"}), then its chat_template.jinja.
    """
    if template_file is not None:
        path = Path(template_file)
        text = _read_bounded(path, MAX_TEMPLATE_BYTES, "the chat template", "--chat-template")
        return {None: TemplateSource(text, str(path), False)}
    folder = tokenizer.path.parent
    config = folder / "tokenizer_config.json"
    value = _read_json(config).get("chat_template") if config.is_file() else None
    if isinstance(value, str):
        return {None: TemplateSource(value, f"{config} (chat_template)", True)}
    if isinstance(value, list):
        found = {}
        for position, item in enumerate(value):
            if not (
                isinstance(item, dict)
                and isinstance(item.get("name"), str)
                and isinstance(item.get("template"), str)
            ):
                raise TemplateError(
                    f"{config}: chat_template element {position} is not"
                    ' {"name": ..., "template": ...}; fix the file or pass --chat-template FILE.jinja'
                )
            origin = f"{config} (chat_template {item['name']!r})"
            found[item["name"]] = TemplateSource(item["template"], origin, True)
        return found
    if value is not None:
        raise TemplateError(
            f"{config}: chat_template is a {type(value).__name__}, not a string or a list of named"
            " templates; fix the file or pass --chat-template FILE.jinja"
        )
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        text = _read_bounded(jinja_file, MAX_TEMPLATE_BYTES, "the chat template", "the file")
        return {None: TemplateSource(text, str(jinja_file), False)}
    return {}


# A chat template is a few KB (the longest published ones, with tool-calling instructions, are
# under 100 KB); a tokenizer's config holds its added tokens too.
MAX_TEMPLATE_BYTES = 1 << 20
MAX_CONFIG_BYTES = 64 << 20


def _read_bounded(path: Path, limit: int, what: str, fix: str) -> str:
    """A regular file's text, refused past `limit` bytes (not a device or a pipe, which could
    give gigabytes or nothing at all)."""
    try:
        if not path.is_file():
            raise TemplateError(
                f"{path}: {what} is not a regular file (a device, a pipe or missing); check {fix}"
            )
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise TemplateError(
                f"{path}: {what} is over the limit of {limit:,} bytes (a chat template is a few"
                f" KB); check {fix}"
            )
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise TemplateError(f"{path}: cannot read {what} ({why}); check {fix}") from exc


def _read_json(path: Path) -> dict:
    text = _read_bounded(path, MAX_CONFIG_BYTES, "the tokenizer's configuration", "the file")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise TemplateError(f"{path}: not valid JSON ({exc}); fix the file") from exc
    return data if isinstance(data, dict) else {}


def template_variables(tokenizer: LoadedTokenizer) -> dict[str, object]:
    """The special tokens a template sees as variables, as transformers passes them."""
    found: dict[str, object] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the later one wins
        path = tokenizer.path.parent / name
        if not path.is_file():
            continue
        config = _read_json(path)
        for key in SPECIAL_TOKEN_NAMES:
            value = config.get(key)
            if key == "additional_special_tokens" and isinstance(value, list):
                found[key] = [_token_content(v) for v in value if _token_content(v) is not None]
            elif _token_content(value) is not None:
                found[key] = _token_content(value)
    # A bare tokenizer.json or vocabulary has no config: name what the loader found.
    for key, token_id in (
        ("eos_token", tokenizer.eos_id),
        ("bos_token", tokenizer.bos_id),
        ("pad_token", tokenizer.pad_id),
    ):
        if key not in found and token_id is not None:
            found[key] = tokenizer.token_text(token_id)
    return found


def _token_content(value: object) -> str | None:
    if isinstance(value, dict):  # an AddedToken written as {"content": ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


# --- compiling -----------------------------------------------------------------------------------

_local = threading.local()  # the trace of the rendering running on this thread


@dataclass
class _Trace:
    """What a rendering did: pieces written, loop iterations and generation blocks.

    A probe records how many pieces were written before it, not characters: counting
    characters as each piece arrives cost more than the rest of the loop that collects them.
    `positions` turns the counts into characters once the rendering is done.
    """

    index_of: dict[int, int]  # id(message dict) -> its index
    parts: list[str] = field(default_factory=list)  # the pieces written so far
    # (loop, message index or -1 for another item, pieces written before); message -2 marks a
    # loop's end. Characters once positions() has run.
    events: list[tuple[int, int, int]] = field(default_factory=list)
    # (pieces written before, characters): characters (start, end) once positions() has run.
    generation: list[tuple[int, int]] = field(default_factory=list)
    budget: Budget | None = None

    def positions(self) -> None:
        at = list(itertools.accumulate(map(len, self.parts), initial=0))
        self.events = [(loop, message, at[piece]) for loop, message, piece in self.events]
        self.generation = [(at[piece], at[piece] + size) for piece, size in self.generation]


def _iteration(context, item: object, loop: int) -> str:
    trace = getattr(_local, "trace", None)
    if trace is not None:
        trace.events.append((loop, trace.index_of.get(id(item), -1), len(trace.parts)))
        trace.budget.step()
    return ""


def _loop_end(context, loop: int) -> str:  # a filter on the loop's number
    trace = getattr(_local, "trace", None)
    if trace is not None:
        trace.events.append((loop, -2, len(trace.parts)))
    return ""


def _generation(context, text: str) -> str:
    """`{% generation %}`: where the block's text lands (counted in pieces, as for _Trace)."""
    trace = getattr(_local, "trace", None)
    if trace is not None:
        trace.generation.append((len(trace.parts), len(text)))
    return text


def _raise_exception(message: object) -> None:
    import jinja2

    # A template may raise with any value; the error's text is str() of it either way.
    raise jinja2.exceptions.TemplateError(None if message is None else str(message))


def _strftime_now(fmt: str) -> str:
    # SOURCE_DATE_EPOCH (reproducible-builds.org) pins the date, so reruns stay byte-identical.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        return datetime.fromtimestamp(int(epoch), UTC).strftime(fmt)
    return datetime.now().strftime(fmt)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    # transformers replaces jinja's tojson, which escapes <, >, & and ' for HTML.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


_ENVIRONMENT = None


def _environment():
    """One sandboxed environment, set up as transformers sets up its own, with every way a
    template can grow a value or spend time bounded (template_limits)."""
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        import jinja2
        import jinja2.ext
        from jinja2 import nodes

        class GenerationBlocks(jinja2.ext.Extension):
            """`{% generation %}...{% endgeneration %}`: record where the block's text lands."""

            tags = {"generation"}  # noqa: RUF012 (jinja reads the class attribute)

            def parse(self, parser):
                # A filter block, not a call block as transformers writes it: the text and the
                # scope are the same, and jinja calls a filter directly where a call block
                # builds a macro and goes through the sandbox's checks for every turn.
                lineno = next(parser.stream).lineno
                body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
                mark = nodes.Filter(None, _GENERATION, [], [], None, None)
                return nodes.FilterBlock(body, mark).set_lineno(lineno)

        env = bounded_environment(
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[GenerationBlocks, jinja2.ext.loopcontrols],
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        env.bound_filters()
        # pass_context: jinja never runs such a filter at compile time on a constant. The probes
        # are not bounded filters: they count their own steps, once per loop iteration.
        env.filters[_ITERATION] = jinja2.pass_context(_iteration)
        env.filters[_LOOP_END] = jinja2.pass_context(_loop_end)
        env.filters[_GENERATION] = jinja2.pass_context(_generation)
        _ENVIRONMENT = env
    return _ENVIRONMENT


@dataclass
class CompiledTemplate:
    source: TemplateSource
    template: jinja2.Template  # with the probes
    marked: bool  # has {% generation %} blocks
    loops_over_content: bool  # iterates a message's content, so takes content as a list of parts
    globals: dict  # the environment's and template's, as one dict


def compile_template(source: TemplateSource) -> CompiledTemplate:
    """Parse, add the probes and compile; a syntax error is one line naming file and line."""
    import jinja2
    from jinja2 import nodes

    env = _environment()
    try:
        tree = env.parse(source.text)
        marked = any(block.filter.name == _GENERATION for block in tree.find_all(nodes.FilterBlock))
        loops_over_content = any(_is_content(loop.iter) for loop in tree.find_all(nodes.For))
        _add_probes(tree, [0])
        tree = _count_built_text(tree, False)
        template = env.from_string(tree)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"{source.where(exc.lineno)}: {exc.message}; fix the chat template"
            " or pass another with --chat-template FILE.jinja"
        ) from exc
    except RecursionError as exc:
        raise TemplateError(
            f"{source.where(None)}: the chat template is nested too deeply to compile; fix it"
            " or pass another with --chat-template FILE.jinja"
        ) from exc
    return CompiledTemplate(source, template, marked, loops_over_content, dict(template.globals))


def _is_content(node) -> bool:
    from jinja2 import nodes

    while isinstance(node, nodes.Filter) and node.node is not None:
        node = node.node
    if isinstance(node, nodes.Getattr):
        return node.attr == "content"
    if isinstance(node, nodes.Getitem):
        return isinstance(node.arg, nodes.Const) and node.arg.value == "content"
    return False


def _add_probes(node, counter: list[int]) -> int | None:
    """Put an iteration probe first in every loop body and a loop-end probe after every loop;
    the loop's number when `node` is a loop."""
    from jinja2 import nodes

    # Filters, not calls: jinja calls a filter directly, where a call goes through the sandbox's
    # checks, and the probes run once per message.
    def call(name: str, value, *args) -> nodes.Output:
        return nodes.Output([nodes.Filter(value, name, list(args), [], None, None)])

    loop = None
    if isinstance(node, nodes.For):
        loop = counter[0]
        counter[0] += 1
    for name, value in node.iter_fields():
        if isinstance(value, nodes.Node):
            _add_probes(value, counter)
        elif isinstance(value, list):
            statements = []
            for child in value:
                child_loop = _add_probes(child, counter) if isinstance(child, nodes.Node) else None
                statements.append(child)
                if isinstance(child, nodes.For):
                    end = call(_LOOP_END, nodes.Const(child_loop))
                    statements.append(end.set_lineno(child.lineno))
            setattr(node, name, statements)
    if isinstance(node, nodes.For):
        target = node.target
        item = nodes.Name(target.name, "load") if isinstance(target, nodes.Name) else nodes.Const(0)
        probe = call(_ITERATION, item, nodes.Const(loop))
        node.body.insert(0, probe.set_lineno(node.lineno))
    return loop


def _count_built_text(node, captured: bool):
    """`a ~ b`, and what a macro, set block, call block or filter block writes (held in memory
    until it is written out, where _render counts it), go through the counting concat filter."""
    from jinja2 import nodes

    def concat(items: list, lineno: int):
        return nodes.Filter(nodes.List(items), CONCAT, [], [], None, None).set_lineno(lineno)

    if isinstance(node, nodes.Concat):
        return concat([_count_built_text(n, captured) for n in node.nodes], node.lineno)
    inner = captured or isinstance(
        node, (nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock)
    )
    for name, value in node.iter_fields():
        if isinstance(value, nodes.Node):
            setattr(node, name, _count_built_text(value, inner))
        elif isinstance(value, list):
            setattr(
                node,
                name,
                [_count_built_text(v, inner) if isinstance(v, nodes.Node) else v for v in value],
            )
    if captured and isinstance(node, nodes.Output):
        items = [
            nodes.Const(n.data) if isinstance(n, nodes.TemplateData) else n for n in node.nodes
        ]
        node.nodes = [concat(items, node.lineno)]
    return node


def _render(
    compiled: CompiledTemplate, messages: list[dict], context: dict, limits: Limits
) -> tuple[str, _Trace]:
    """Render once within `limits`, recording where every probe and generation block ran."""
    trace = _Trace({id(message): index for index, message in enumerate(messages)})
    template = compiled.template
    parts = trace.parts
    append = parts.append
    most = limits.chars
    written = 0
    _local.trace = trace
    try:
        with template_limits.active(limits) as budget:
            trace.budget = budget
            # What Template.generate does, less its generator wrapped around every piece.
            # The globals merged once per template (compile_template), not once per rendering.
            variables = {**compiled.globals, **context, "messages": messages}
            state = template.environment.context_class(
                template.environment, variables, template.name, template.blocks, compiled.globals
            )
            pieces = template.root_render_func(state)
            try:
                for block in pieces:
                    append(block)
                    written += len(block)
                    if written > most:
                        break
            except Exception:
                template.environment.handle_exception()  # re-raised at the template's line
        if written > most:
            raise LimitExceeded(
                f"the rendering passed {most:,} characters, the limit ({limits.chars_why})"
            )
    except Exception as exc:  # the template's own errors and Python's inside it
        raise ConversationError(_template_failure(compiled.source, exc)) from exc
    finally:
        _local.trace = None
    trace.positions()
    return "".join(parts), trace


def _template_failure(source: TemplateSource, exc: Exception) -> str:
    import jinja2

    line = None
    tb = exc.__traceback__
    while tb is not None:  # jinja rewrites tracebacks to point at the template's lines
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, LimitExceeded):
        return (
            f"the chat template went past a limit at {source.where(line)}: {text}; a chat"
            " template renders a conversation in far less, so fix the template (or raise"
            " --max-line-bytes if the conversation really is that large)"
        )
    if isinstance(exc, RecursionError):
        text = "it recursed too deeply"
    if isinstance(exc, jinja2.TemplateError) and not isinstance(exc, jinja2.UndefinedError):
        what = f"the chat template refused the conversation: {text}"
    else:
        what = f"the chat template failed on the conversation ({type(exc).__name__}: {text})"
    return f"{what} at {source.where(line)}; fix the conversation or the template"


def _message_regions(trace: _Trace) -> dict[int, tuple[int, int]]:
    """Message index -> (start, end) of the text its loop iteration wrote.

    Every loop over the messages counts (a template may split them over two loops, the history
    and the turns after it); a message held by several (a loop that only scans the messages
    writes nothing) takes the iteration that wrote the most.
    """
    runs: list[tuple[list[tuple[int, int]], int]] = []  # (iterations, end)
    open_runs: dict[int, list[tuple[int, int]]] = {}
    for loop, message, pos in trace.events:
        if message == -2:
            iterations = open_runs.pop(loop, None)
            if iterations:
                runs.append((iterations, pos))
        else:
            open_runs.setdefault(loop, []).append((message, pos))
    regions: dict[int, tuple[int, int]] = {}
    for iterations, end in runs:
        for k, (message, start) in enumerate(iterations):
            if message < 0:
                continue
            stop = iterations[k + 1][1] if k + 1 < len(iterations) else end
            known = regions.get(message)
            if known is None or stop - start > known[1] - known[0]:
                regions[message] = (start, stop)
    return regions


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix (slices compare in C; a binary search over them)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    low, high = 0, n  # a[:low] == b[:low], a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle
    return low


def _common_suffix(a: str, b: str, most: int) -> int:
    """Length of the longest common suffix, at most `most`."""
    n = min(len(a), len(b), most)
    if a[len(a) - n :] == b[len(b) - n :]:
        return n
    low, high = 0, n
    while high - low > 1:
        middle = (low + high) // 2
        if a[len(a) - middle :] == b[len(b) - middle :]:
            low = middle
        else:
            high = middle
    return low


# --- reading a conversation ----------------------------------------------------------------------


def is_conversation(loaded: object) -> bool:
    """A line in a chat format: {"messages": [...]} or a list of {"role": ...} objects."""
    if isinstance(loaded, dict):
        return "messages" in loaded
    return (
        isinstance(loaded, list)
        and bool(loaded)
        and all(isinstance(item, dict) for item in loaded)
        and any("role" in item for item in loaded)
    )


@dataclass
class ChatLine:
    messages: list[dict]
    tools: list | None = None
    documents: list | None = None


def chat_line(loaded: object) -> ChatLine:
    """Check a parsed line's messages; the message dicts are passed to the template untouched."""
    if isinstance(loaded, dict):
        if "messages" not in loaded:
            raise ConversationError(
                'not a chat conversation (no "messages" key); write {"messages": [{"role": ...,'
                ' "content": ...}, ...]} or use --input-format jsonl for prompt/completion lines'
            )
        messages = loaded["messages"]
        tools, documents = loaded.get("tools"), loaded.get("documents")
    elif isinstance(loaded, list):
        messages, tools, documents = loaded, None, None
    else:
        raise ConversationError(
            f'a JSON {type(loaded).__name__}, not a conversation; write {{"messages": [...]}}'
        )
    if not isinstance(messages, list) or not messages:
        raise ConversationError(
            '"messages" must be a non-empty list of {"role": ..., "content": ...} objects'
        )
    for key, value in (("tools", tools), ("documents", documents)):
        if value is not None and not isinstance(value, list):
            raise ConversationError(f'"{key}" is a {type(value).__name__}; make it a list')
    for index, message in enumerate(messages):
        _check_message(index, message)
    return ChatLine(messages, tools, documents)


def _check_message(index: int, message: object) -> None:
    where = f"message {index}"
    if not isinstance(message, dict):
        raise ConversationError(f'{where} is not an object; write {{"role": ..., "content": ...}}')
    role = message.get("role")
    if not isinstance(role, str):
        raise ConversationError(
            f"{where} has {'no role' if role is None else 'a non-string role'}; give each message"
            ' a "role" such as "user" or "assistant"'
        )
    content = message.get("content")
    if isinstance(content, list):
        for position, part in enumerate(content):
            if not (isinstance(part, dict) and part.get("type") == "text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ConversationError(
                    f"{where} ({role}) content part {position} is {kind!r}, not text; only"
                    ' {"type": "text", "text": ...} parts can be tokenized'
                )
            if not isinstance(part.get("text"), str):
                raise ConversationError(
                    f'{where} ({role}) content part {position} has no string "text"; fix the part'
                )
    elif content is not None and not isinstance(content, str):
        raise ConversationError(
            f"{where} ({role}) content is a {type(content).__name__}; make it a string or a list"
            ' of {"type": "text", "text": ...} parts'
        )
    if "weight" in message:
        weight = message["weight"]
        if role != "assistant":
            raise ConversationError(
                f"{where} ({role}) has a weight; only assistant turns take one (0 or 1)"
            )
        if isinstance(weight, bool) or weight not in (0, 1):
            raise ConversationError(
                f"{where} has weight {weight!r}; use 0 (not learned) or 1 (learned)"
            )


# --- rendering and typing ------------------------------------------------------------------------


@dataclass
class Conversation:
    """A rendered conversation and the characters its tokens learn."""

    text: str  # what is encoded: the rendering, less trailing whitespace after a final EOS
    spans: list[tuple[int, int]]  # learned character ranges: sorted, disjoint, non-adjacent
    # Per learned turn not followed by the separator alone: its last non-whitespace learned
    # character (-1: none), whose token must be an end-of-turn token for the turn to teach the
    # model to stop.
    turn_ends: list[int]
    # Reasoning text the template wrote inside learned turns: sorted, disjoint character ranges.
    reasoning: list[tuple[int, int]] = field(default_factory=list)
    # With --split-special-tokens: special-token text the messages wrote, to encode as text.
    plain: list[tuple[int, int]] = field(default_factory=list)
    writes_special: bool = False  # a message writes a special token's text (it became one)
    assistant_turns: int = 0  # learned assistant turns
    tool_call_turns: int = 0  # of which carry tool calls

    @property
    def learns(self) -> bool:
        return any(start < end for start, end in self.spans)

    def in_chars(self) -> tuple[int, list, list[int], list]:
        """The text's length, spans, turn ends and reasoning ranges, in characters."""
        return len(self.text), self.spans, self.turn_ends, self.reasoning

    def in_bytes(self) -> tuple[int, list, list[int], list]:
        """The same in UTF-8 bytes, for an encoder that places tokens by bytes."""
        text = self.text
        if text.isascii():
            return self.in_chars()
        ranges = self.spans + self.reasoning
        marks = sorted({p for span in ranges for p in span} | {c for c in self.turn_ends if c >= 0})
        at: dict[int, int] = {}
        done = count = 0
        for mark in marks:
            count += len(text[done:mark].encode("utf-8"))
            at[mark] = count
            done = mark
        # A turn's last character is counted by its last byte, which the token holding it ends at.
        ends = [at[c] + len(text[c].encode("utf-8")) - 1 if c >= 0 else -1 for c in self.turn_ends]
        spans = [(at[s], at[e]) for s, e in self.spans]
        reasoning = [(at[s], at[e]) for s, e in self.reasoning]
        return len(text.encode("utf-8")), spans, ends, reasoning


@dataclass
class _Shape:
    """What a conversation's shape says about its template, whatever the contents.

    `text` and `regions`: the conversation rendered with every assistant message reduced to
    {"role": "assistant", "content": STAND-IN} and every other content replaced by a stand-in
    (None when the template refuses that); `prompt`: what add_generation_prompt adds after the
    messages before the first assistant turn (the header a model is given before it writes;
    None when the template adds nothing or fails).
    """

    text: str | None
    regions: dict[int, tuple[int, int]]
    prompt: str | None
    # Per assistant message: how many special tokens the template writes after its content
    # (where the stand-in cannot tell, 1).
    markers: dict[int, int] = field(default_factory=dict)


# At most this many learned turns written outside the template's loop are attributed per
# conversation: each costs a rendering of the whole conversation.
MAX_TURNS_OUTSIDE_LOOP = 64
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


class Chat:
    """Render conversations with one tokenizer's chat template and type their characters."""

    def __init__(self, tokenizer: LoadedTokenizer, options: TokenizeOptions, eos_id: int) -> None:
        self.tokenizer = tokenizer
        self.train_on = options.train_on
        self.name = options.chat_template_name
        self.explicit_file = options.chat_template
        self.eos_text = tokenizer.tokenizer.decode([eos_id], skip_special_tokens=False)
        self.max_line_bytes = options.max_line_bytes
        self.split_special = options.split_special_tokens
        self.compiled: dict[str | None, CompiledTemplate] = {}
        self.shapes: dict[tuple, _Shape] = {}
        self.openings: dict[tuple, tuple[str | None, str] | None] = {}
        if self.name is not None or self.explicit_file is not None:
            self.sources  # noqa: B018 (a wrong file or name fails now, not at a conversation)

    # Read at the first conversation: a run without conversations never needs a template.
    @cached_property
    def sources(self) -> dict:
        sources = template_sources(self.tokenizer, self.explicit_file)
        if self.name is not None:
            if None in sources:
                raise TemplateError(
                    f"{self._origin()}: one unnamed chat template, so there is nothing for"
                    f" --chat-template-name {self.name} to pick; leave the option out"
                )
            if sources and self.name not in sources:
                raise TemplateError(
                    f"{self._origin()}: no chat template named {self.name!r}; the names are"
                    f" {', '.join(map(repr, sources))}"
                )
        return sources

    @cached_property
    def variables(self) -> dict[str, object]:
        return template_variables(self.tokenizer)

    def _origin(self) -> str:
        return self.explicit_file or str(self.tokenizer.path.parent / "tokenizer_config.json")

    def check(self) -> None:
        """Fail now, not at the first conversation, when there is no usable template."""
        self._template(None)

    def _template(self, tools: list | None) -> CompiledTemplate:
        if not self.sources:
            raise TemplateError(
                f"{self.tokenizer.path.parent}: the tokenizer has no chat template (no"
                " chat_template in tokenizer_config.json, no chat_template.jinja); pass"
                " --chat-template FILE.jinja"
            )
        if None in self.sources:
            name = None
        elif self.name is not None:
            name = self.name
        elif tools and "tool_use" in self.sources:  # as transformers picks for tool calls
            name = "tool_use"
        elif "default" in self.sources:
            name = "default"
        else:
            raise TemplateError(
                f"{self._origin()}: the tokenizer has named chat templates"
                f" ({', '.join(map(repr, self.sources))}) and none is 'default'; pick one with"
                " --chat-template-name"
            )
        compiled = self.compiled.get(name)
        if compiled is None:
            compiled = self.compiled[name] = compile_template(self.sources[name])
        return compiled

    @cached_property
    def special_texts(self) -> list[str]:
        """The text of every special token (and the EOS), longest first."""
        decoder = getattr(self.tokenizer.tokenizer, "get_added_tokens_decoder", None)
        found = {t.content for t in decoder().values() if t.special} if decoder else set()
        found.add(self.eos_text)
        found.discard("")
        return sorted(found, key=len, reverse=True)

    @cached_property
    def specials(self):
        """A pattern matching any special token's text; None for a tokenizer without any."""
        import re

        texts = self.special_texts
        return re.compile("|".join(map(re.escape, texts))) if texts else None

    @cached_property
    def _special_starts(self) -> str:
        return "".join({text[0] for text in self.special_texts})

    def conversation(self, line: ChatLine) -> Conversation:
        """Render a checked conversation and find the characters it learns."""
        compiled = self._template(line.tools)
        messages = _as_template_expects(line.messages, compiled.loops_over_content)
        context = {
            **self.variables,
            "tools": line.tools,
            "documents": line.documents,
            "add_generation_prompt": False,
        }
        limits = Limits.for_conversation(self.max_line_bytes, _items(line))
        text, trace = _render(compiled, messages, context, limits)
        if self.train_on == "all":
            spans, turns, owned = [(0, len(text))], [], {}
        elif compiled.marked:
            spans, turns, owned = self._generation_spans(messages, trace)
        else:
            spans, turns, owned = self._content_spans(
                compiled, messages, context, text, trace, limits
            )
        turn_ends = [_last_visible(text, turn) for turn in turns]
        writes_special, plain = self._written_specials(compiled, messages, context, text, limits)
        reasoning = _merged(
            [r for i, turn in owned.items() if (r := _reasoning_in(text, messages[i], turn))]
        )
        # One separator per conversation: a rendering that ends in the EOS and whitespace
        # (ChatML's "<|im_end|>\n") loses the whitespace so that EOS can be the separator.
        stripped = text.rstrip()
        if len(stripped) < len(text) and self.eos_text and stripped.endswith(self.eos_text):
            text = stripped
            spans = _clipped(spans, len(text))
            reasoning = _clipped(reasoning, len(text))
            plain = _clipped(plain, len(text))
        # A turn followed only by the separator learns to end: the separator is always learned.
        # (Where that tail starts is found once: testing each turn's rest was quadratic.)
        tail = len(text.rstrip())
        body = text[:tail]
        if self.eos_text and body.endswith(self.eos_text):
            before_eos = len(body) - len(self.eos_text)
            eos_tail = len(body[:before_eos].rstrip())
            turn_ends = [c for c in turn_ends if not eos_tail <= c + 1 <= before_eos]
        turn_ends = [c for c in turn_ends if c + 1 < tail]
        tool_calls = sum(
            1 for i, (a, b) in owned.items() if a < b and messages[i].get("tool_calls")
        )
        return Conversation(
            text,
            _merged(spans),
            turn_ends,
            reasoning,
            plain,
            writes_special,
            assistant_turns=sum(1 for a, b in owned.values() if a < b),
            tool_call_turns=tool_calls,
        )

    def _learned_turns(self, messages: list[dict]) -> list[int]:
        assistants = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        if self.train_on == "last":
            assistants = assistants[-1:]
        return [i for i in assistants if messages[i].get("weight", 1) != 0]

    def _generation_spans(self, messages: list[dict], trace: _Trace):
        """The template's {% generation %} blocks, less those of turns not learned."""
        blocks = trace.generation
        if not blocks:
            return [], [], {}
        assistants = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        weighted = any(messages[i].get("weight", 1) == 0 for i in assistants)
        owners = _owners(_message_regions(trace), [start for start, _ in blocks])
        if self.train_on == "assistant" and not weighted:
            keep = [True] * len(blocks)  # every block is learned, whoever wrote it
        else:
            if None in owners:
                if len(assistants) != len(blocks):
                    raise ConversationError(
                        "cannot tell which assistant turn each {% generation %} block belongs to"
                        " (the template writes them outside its loop over messages); use"
                        " --train-on assistant without weights, or a template that loops over"
                        " the messages"
                    )
                owners = list(assistants)  # one block per assistant turn, in order
            learned = set(self._learned_turns(messages))
            keep = [owner in learned for owner in owners]
        turns: dict[object, list[tuple[int, int]]] = {}
        for number, (owner, block, kept) in enumerate(zip(owners, blocks, keep, strict=True)):
            if kept:  # a block nobody owns is a turn of its own
                turns.setdefault(owner if owner is not None else ("block", number), []).append(
                    block
                )
        spans = sorted(block for turn in turns.values() for block in turn)
        owned = {
            owner: (turn[0][0], turn[-1][1])
            for owner, turn in turns.items()
            if isinstance(owner, int) and messages[owner].get("role") == "assistant"
        }
        return spans, list(turns.values()), owned

    def _content_spans(self, compiled, messages, context, text: str, trace: _Trace, limits):
        """Without generation blocks: each learned assistant turn, from the first character it
        writes after its header to the end of its end-of-turn marker.

        The header is what the template's generation prompt writes (a model is given it and
        writes the rest, a `<think>` the template opens included); a template without one, or a
        turn that does not start with it, takes the text it shares with the conversation's
        stand-in rendering. The end-of-turn marker is the special token the template writes
        after the turn (as many from the end as the stand-in writes after its content); what
        follows it (ChatML's newline) is the next turn's prompt.
        """
        learned = self._learned_turns(messages)
        if not learned:
            return [], [], {}
        regions = _message_regions(trace)
        shape = self._shape(compiled, messages, context, limits)
        owned: dict[int, tuple[int, int]] = {}
        pieces: dict[int, list[tuple[int, int]]] = {}
        outside = []
        for index in learned:
            region = regions.get(index)
            if region is None or region[0] == region[1]:
                outside.append(index)
            else:
                owned[index], pieces[index] = self._turn_in_region(index, region, text, shape)
        if len(outside) > MAX_TURNS_OUTSIDE_LOOP:
            raise ConversationError(
                f"the chat template writes {len(outside)} assistant turns outside its loop over"
                f" the messages, and tokentype attributes at most {MAX_TURNS_OUTSIDE_LOOP} such"
                " turns per conversation (one rendering each); split the conversation or add"
                " {% generation %} blocks to the template (--chat-template FILE.jinja)"
            )
        for index in outside:
            turn = self._turn_outside(
                compiled, messages, context, text, regions, index, shape, limits
            )
            if turn is not None:
                owned[index] = turn
                pieces[index] = [turn]
        turns = [pieces[i] for i in sorted(pieces)]
        return [span for turn in turns for span in turn], turns, owned

    def _headers_left_out(self, piece, base, start, stop, found, prompt, end):
        """A turn that writes a second header after its end-of-turn marker (DeepSeek-R1's tool
        calls, then an empty answer), split around it: after that marker the model has stopped,
        and what follows up to its next generation prompt is given to it, not written by it.
        Only the marker the turn ends with (`end`; None: any special token) stops the model: a
        header after another special token is one the model writes itself (gpt-oss ends its
        analysis with <|end|>, then writes <|start|>assistant and its answer, up to <|return|>).
        `found`: the special tokens of `piece` from `start` on; positions are `base` + those in
        `piece`."""
        opener = self.specials.match(prompt) if prompt else None
        out = []
        if opener is not None:
            for marker in found:
                after = marker.end()
                if after >= stop:
                    break
                if end is not None and marker.group() != end:
                    continue
                if piece.startswith(opener.group(), after):
                    header = self._not_inside_special(
                        piece[after:stop], _common_prefix(piece[after:stop], prompt)
                    )
                    out.append((base + start, base + after))
                    start = after + header
        out.append((base + start, base + stop))
        return out

    def _turn_in_region(self, index: int, region, text: str, shape: _Shape):
        """The learned span of a turn its loop iteration wrote, and that span less any second
        header inside it (_headers_left_out)."""
        start, end = region
        piece = text[start:end]
        head = None
        if shape.prompt:
            head = self._not_inside_special(piece, _common_prefix(piece, shape.prompt)) or None
        if shape.text is not None and index in shape.regions:
            # The stand-in's turn starts with the header too, and parts from this turn where its
            # content starts: that bounds a match with the generation prompt that went on into
            # the content by chance ("<" of a content against "<think>").
            o_start, o_end = shape.regions[index]
            shared = _common_prefix(piece, shape.text[o_start:o_end])
            head = shared if head is None else min(head, shared)
        head = head or 0
        if self.specials is None:
            return (start + head, end), [(start + head, end)]
        found = list(self.specials.finditer(piece, head))
        stop = len(piece)
        markers = shape.markers.get(index, 1)
        end = None
        if markers and found:
            # The turn ends at the first special token after its content, or at the EOS if
            # that comes later: a closing tag (Command-R7B's <|END_RESPONSE|> before its
            # <|END_OF_TURN_TOKEN|>) does not stop generation.
            trailing = found[-min(markers, len(found)) :]
            marker = next((m for m in trailing if m.group() == self.eos_text), trailing[0])
            stop, end = marker.end(), marker.group()
        turn = (start + head, start + stop)
        return turn, self._headers_left_out(piece, start, head, stop, found, shape.prompt, end)

    def _not_inside_special(self, piece: str, head: int) -> int:
        """`head`, or the start of a special token it would cut in two."""
        if self.specials is None or head == 0:
            return head
        for match in self.specials.finditer(piece, max(0, head - 64), head + 64):
            if match.start() < head < match.end():
                return match.start()
        return head

    def _turn_outside(self, compiled, messages, context, text, regions, index, shape, limits):
        """A learned turn the template writes outside its loop over the messages (after the loop,
        the last turn on its own, or every message at once): the text that changes when the
        message is replaced by a stand-in is its own; its header is the generation prompt
        before it, its end the first end-of-turn marker after it. None when it wrote nothing."""
        changed = list(messages)
        changed[index] = {
            "role": "assistant",
            "content": _sentinel(index, compiled.loops_over_content),
        }
        try:
            other, _ = _render(compiled, changed, context, limits)
        except ConversationError as exc:
            why = f"it refuses a stand-in for that turn ({exc})"
            raise _unattributable(compiled, index, why) from exc
        if other == text:
            return None  # skipped by the template ({% break %}, a slice)
        head = _common_prefix(text, other)
        tail = _common_suffix(text, other, min(len(text), len(other)) - head)
        body_start, body_end = head, len(text) - tail
        for message, (start, end) in regions.items():
            if message != index and start < end and start < body_end and body_start < end:
                why = f"changing it changes what message {message}'s loop iteration writes"
                raise _unattributable(compiled, index, why)
        start = body_start
        if shape.prompt:
            at = text.rfind(shape.prompt, 0, body_start)
            gap_has_marker = (
                self.specials is not None
                and self.specials.search(text, at + len(shape.prompt), body_start) is not None
            )
            if at >= 0 and not gap_has_marker:
                start = at + len(shape.prompt)
        stop = body_end
        if self.specials is not None and (marker := self.specials.search(text, body_end)):
            stop = marker.end()
        return start, stop

    def _shape(self, compiled, messages, context, limits) -> _Shape:
        """The stand-in rendering and generation prompt of the conversation's shape.

        They depend on the template, the roles and other keys of the non-assistant messages and
        the tools, not on the contents, so conversations of one shape (most of a data set) share
        them.
        """
        key = (
            id(compiled),
            tuple(_shape_of(m) for m in messages),
            repr(context.get("tools")),
            repr(context.get("documents")),
        )
        found = self.shapes.get(key)
        if found is not None:
            return found
        stand_ins = [_stand_in(i, m, compiled.loops_over_content) for i, m in enumerate(messages)]
        try:
            other, trace = _render(compiled, stand_ins, context, limits)
            text, regions = other, _message_regions(trace)
        except ConversationError:
            text, regions = None, {}
        first = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), None)
        prompt = None
        opening = None
        if first is not None:
            opening = self._opening(compiled, messages, stand_ins, first, context, limits)
        if opening is not None:
            prompt, after = opening
            # A template writing the generation prompt whatever add_generation_prompt says
            # (Command-R7B ends every rendering with <|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>):
            # the text after the last message, where the stand-in's assistant turn starts with it.
            if prompt is None and text is not None and first in regions and after.strip():
                start, end = regions[first]
                prompt = after if text.startswith(after, start, end) else None
        markers = {}
        if text is not None and self.specials is not None:
            for index, (o_start, o_end) in regions.items():
                at = text.find(chr(_SENTINEL_BASE + index % 0xFFFD), o_start, o_end)
                if at >= 0 and messages[index].get("role") == "assistant":
                    markers[index] = sum(1 for _ in self.specials.finditer(text, at + 1, o_end))
        if len(self.shapes) >= 4096:  # bounded memory over unbounded shapes
            self.shapes.clear()
        found = self.shapes[key] = _Shape(text, regions, prompt, markers)
        return found

    def _opening(self, compiled, messages, stand_ins, first, context, limits):
        """(the generation prompt, or None where add_generation_prompt adds nothing; the text
        written after the last message) of the stand-ins before the first assistant turn, or
        None when the template refuses them.

        Cached apart from the shape, by those messages alone: a conversation with tool calls is
        a shape of its own (a tool result's id is unique), but what precedes its first
        assistant turn is the system prompt and a question, shared by most of a data set.
        """
        key = (
            id(compiled),
            tuple(_shape_of(m) for m in messages[:first]),
            repr(context.get("tools")),
            repr(context.get("documents")),
        )
        if key in self.openings:
            return self.openings[key]
        try:
            bare, trace = _render(compiled, stand_ins[:first], context, limits)
            asking, _ = _render(
                compiled, stand_ins[:first], {**context, "add_generation_prompt": True}, limits
            )
        except ConversationError:
            found = None
        else:
            after = max((end for _, end in _message_regions(trace).values()), default=len(bare))
            found = (asking[_common_prefix(asking, bare) :] or None, bare[after:])
        if len(self.openings) >= 4096:
            self.openings.clear()
        self.openings[key] = found
        return found

    def _written_specials(self, compiled, messages, context, text: str, limits):
        """Whether the messages write a special token's text (which then becomes that token),
        and with --split-special-tokens where those texts are in the rendering, to be encoded as
        text while the template's own markers stay special tokens."""
        pattern = self.specials
        if pattern is None or not _holds(pattern, self._special_starts, messages):
            return False, []
        if not self.split_special:
            return True, []
        # Render again with each such text replaced by a private-use character, then put the
        # texts back: where the characters land is where the messages wrote them.
        table: dict[str, str] = {}

        def swap(match) -> str:
            return table.setdefault(match.group(), chr(_PLAIN_BASE + len(table)))

        swapped = [_map_strings(m, lambda v: pattern.sub(swap, v)) for m in messages]
        other, _ = _render(compiled, swapped, context, limits)
        back = {v: k for k, v in table.items()}
        pieces: list[str] = []
        plain = []
        done = shift = 0
        for at, char in enumerate(other):
            if char in back:
                special = back[char]
                pieces.append(other[done:at])
                pieces.append(special)
                plain.append((at + shift, at + shift + len(special)))
                shift += len(special) - 1
                done = at + 1
        pieces.append(other[done:])
        if "".join(pieces) != text:
            raise ConversationError(
                "a message writes special-token text that the chat template treats differently"
                " from other text, so --split-special-tokens cannot keep it apart from the"
                " template's own; remove it from the message or leave out --split-special-tokens"
            )
        return False, plain


_PLAIN_BASE = 0x100000  # plane 16 private use: no template or tokenizer treats it specially


def _unattributable(compiled: CompiledTemplate, index: int, why: str) -> TemplateError:
    """The whole run stops: every conversation of this template would fail alike."""
    return TemplateError(
        f"{compiled.source.origin}: cannot tell what assistant message {index} produced: the"
        f" chat template writes it outside its loop over the messages and {why}; add"
        " {% generation %} blocks to the template (--chat-template FILE.jinja)"
    )


def _items(line: ChatLine) -> int:
    """Messages, content parts, tool calls, tools and documents: what a template loops over."""
    count = len(line.messages) + len(line.tools or ()) + len(line.documents or ())
    for message in line.messages:
        for key in ("content", "tool_calls"):
            value = message.get(key)
            if isinstance(value, list):
                count += len(value)
    return count


def _shape_of(message: dict) -> tuple:
    if message.get("role") == "assistant":
        return ("assistant",)
    content = message.get("content")
    kind = "none" if content is None else "empty" if content in ("", []) else "text"
    return (kind, *((k, repr(v)) for k, v in message.items() if k != "content"))


def _stand_in(index: int, message: dict, as_parts: bool) -> dict:
    """An assistant message reduced to its role and a stand-in content; another message with its
    content (when it has one) replaced by a stand-in."""
    if message.get("role") == "assistant":
        return {"role": "assistant", "content": _sentinel(index, as_parts)}
    if message.get("content") in (None, "", []):
        return dict(message)
    return {**message, "content": _sentinel(index, as_parts)}


def _holds(pattern, starts: str, messages: list[dict]) -> bool:
    """Whether a string in the messages (roles aside) holds a special token's text."""
    strings: list[str] = []
    for message in messages:  # the usual string contents without a call each
        for key, value in message.items():
            if type(value) is str:
                if key != "role":
                    strings.append(value)
            else:
                _strings(value, strings)
    text = "\0".join(strings)  # no special token holds a NUL, so no match spans two strings
    # Most text holds none of the characters special tokens start with ("<", "["): a scan in C
    # per character is cheaper than the pattern's.
    return any(c in text for c in starts) and pattern.search(text) is not None


def _strings(value: object, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "role":
                _strings(item, out)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out)


def _map_strings(value: object, change):
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: v if k == "role" else _map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, change) for v in value]
    return value


def _reasoning_in(text: str, message: dict, turn: tuple[int, int]) -> tuple[int, int] | None:
    """Where a learned turn's reasoning (its reasoning_content, or what its content holds
    between <think> and </think>) is written inside the turn, if it is."""
    found = None
    for key in _REASONING_KEYS:
        if isinstance(message.get(key), str):
            found = message[key]
            break
    content = message.get("content")
    if found is None and isinstance(content, str) and "</think>" in content:
        found = content.split("</think>")[0].split("<think>")[-1]
    found = (found or "").strip()
    if not found:
        return None
    at = text.find(found, turn[0], turn[1])
    return (at, at + len(found)) if at >= 0 else None


def _clipped(ranges: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    return [(start, min(end, length)) for start, end in ranges if start < length]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint and non-adjacent, as type_tokens needs them."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if start >= end:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _as_text(content: object) -> str:
    if isinstance(content, list):
        return "\n".join(part["text"] for part in content)
    return content if isinstance(content, str) else ""


def _owners(regions: dict[int, tuple[int, int]], positions: list[int]) -> list[int | None]:
    """The message whose region holds each position (a binary search over the regions)."""
    import bisect

    ordered = sorted((start, end, message) for message, (start, end) in regions.items())
    starts = [start for start, _, _ in ordered]
    out: list[int | None] = []
    for position in positions:
        # Regions starting at the position come sorted by end: a non-empty one is taken before a
        # message that wrote nothing there.
        k = bisect.bisect_right(starts, position) - 1
        owner = None
        if k >= 0:
            start, end, message = ordered[k]
            if start <= position < end or start == position == end:
                owner = message
        out.append(owner)
    return out


def _sentinel(index: int, as_parts: bool) -> str | list[dict]:
    text = chr(_SENTINEL_BASE + index % 0xFFFD)
    return [{"type": "text", "text": text}] if as_parts else text


def _as_template_expects(messages: list[dict], loops_over_content: bool) -> list[dict]:
    """The messages as transformers (5.x) hands them to a template, keys whose value is null
    left out (`"content": null` beside tool calls: templates test for a missing key); content
    parts as a list for templates that loop over them, else their texts joined by newlines (as
    vLLM serves such templates, where transformers would fail), so text-only templates accept
    parts too."""
    out = []
    for message in messages:
        if None in message.values():
            message = {k: v for k, v in message.items() if v is not None}
        content = message.get("content")
        if isinstance(content, list) and not loops_over_content:
            message = {**message, "content": "\n".join(part["text"] for part in content)}
        out.append(message)
    return out


def _last_visible(text: str, spans: list[tuple[int, int]]) -> int:
    for start, end in reversed(spans):
        visible = text[start:end].rstrip()
        if visible:
            return start + len(visible) - 1
    return -1


# --- characters to tokens ------------------------------------------------------------------------


@dataclass
class TokenTyping:
    """Per-token results for a batch's conversations, all arrays over their tokens."""

    completion: np.ndarray  # bool: the token learns
    seam: np.ndarray  # bool: its characters straddle a prompt/completion boundary
    first_learned: np.ndarray  # bool: whether its first character is learned


def type_tokens(
    text_lengths: np.ndarray,
    token_text: np.ndarray,
    offsets: np.ndarray,
    spans: np.ndarray,
) -> TokenTyping:
    """Type tokens from learned character ranges: a token learns when any character does.

    `token_text` is each token's text index, `offsets` its (start, end) characters in that text,
    and `spans` (text index, start, end) rows of learned ranges, sorted and disjoint within each
    text (Conversation.spans are). A binary search per token, no per-character arrays.
    """
    text_start = np.concatenate([[0], np.cumsum(text_lengths)]).astype(np.int64)
    shift = text_start[token_text]
    start = offsets[:, 0] + shift
    end = np.maximum(offsets[:, 1] + shift, start)
    if not len(spans):
        none = np.zeros(len(start), bool)
        return TokenTyping(none, none.copy(), none.copy())
    base = text_start[spans[:, 0]]
    span_start, span_end = base + spans[:, 1], base + spans[:, 2]
    # The first span ending after the token's first character is the only one that can hold
    # that character; any span overlapping the token starts before the token's end.
    k = np.searchsorted(span_end, start, side="right")
    found = k < len(span_end)
    k = np.minimum(k, len(span_end) - 1)
    overlap_start = np.where(found, span_start[k], end)
    first_learned = found & (overlap_start <= start)
    wide = end > start
    completion = np.where(wide, found & (overlap_start < end), first_learned)
    # Fully inside that span, or not: spans are merged, so a token reaching past the span's end
    # has a prompt character there.
    covered = first_learned & (span_end[k] >= end)
    seam = wide & completion & ~covered
    return TokenTyping(completion, seam, first_learned)
