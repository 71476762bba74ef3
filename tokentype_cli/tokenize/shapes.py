"""The record shapes fine-tuning data arrives in, turned into the two tokenize reads: prompt/completion
pairs and `messages` conversations.

- ShareGPT: {"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}, with an
  optional top-level "system" and "tools". Its role names map to the chat roles (SHAREGPT_ROLES).
- A `conversations` list of {"role", "content"} messages (many Hub datasets): a `messages` line.
- Alpaca: {"instruction", "input" (optional), "output"}: the prompt is the instruction and input
  through a template the user can set, the completion is the output.

Each is chosen by --input-format, or detected where the record's keys leave no doubt (no prompt or
completion key, no "messages"). Role names of every conversation go through --role-map, then must
be a chat role: a role the template does not know would render as prompt text, and the
conversation would silently learn nothing.
"""

from __future__ import annotations

import json

from tokentype_cli.errors import OptionError
from tokentype_cli.tokenize.chat import is_conversation
from tokentype_cli.tokenize.options import (
    DEFAULT_ALPACA_TEMPLATE,
    DEFAULT_ALPACA_TEMPLATE_NO_INPUT,
)

# The chat roles chat templates know: Hugging Face's four, OpenAI's developer (and its older
# function), Llama 3.1's ipython.
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "ipython", "function")
# ShareGPT's `from` names. function_call is the model's own call of a tool (it learns to write
# it, as LLaMA-Factory trains it); observation is the tool's answer, read as a tool message.
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "assistant",
    "tool": "tool",
    "observation": "tool",
}


class ShapeError(Exception):
    """A record that cannot be read in its shape; the message is 'what is wrong; the fix'."""


def parse_role_map(values: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """`--role-map FROM=TO` values as (from, to) pairs; TO is a chat role, or FROM itself to pass
    a role the chat template knows (GLM's observation) through unchanged."""
    pairs: dict[str, str] = {}
    for value in values:
        source, equals, target = value.partition("=")
        if not equals or not source or not target:
            raise OptionError(f"--role-map {value!r}: write FROM=TO, e.g. --role-map bot=assistant")
        if target not in CHAT_ROLES and target != source:
            raise OptionError(
                f"--role-map {value!r}: {target!r} is not a chat role; map to one of"
                f" {', '.join(CHAT_ROLES)} (or to {source!r} itself to pass it through)"
            )
        if pairs.get(source, target) != target:
            raise OptionError(f"--role-map maps {source!r} twice ({pairs[source]}, {target})")
        pairs[source] = target
    return tuple(pairs.items())


def normalise(loaded: object, shape: str | None, options, noun: str = "field") -> object:
    """The record as tokenize reads it: a prompt/completion pair or a `messages` conversation
    whose roles went through --role-map.

    `shape`: chat, sharegpt or alpaca when --input-format says so, else None (detect). `noun`:
    what messages call the record's keys (a Parquet/Arrow row has columns)."""
    if isinstance(loaded, list):
        return _messages(loaded, options) if is_conversation(loaded) else loaded
    if not isinstance(loaded, dict):
        return loaded
    if shape == "alpaca" or (shape is None and _looks_alpaca(loaded, options)):
        return _alpaca(loaded, options, noun)
    if "messages" in loaded:
        messages = loaded["messages"]
        if isinstance(messages, list) and messages:
            return {**loaded, "messages": _messages(messages, options)}
        return loaded  # chat_line says what a `messages` line needs
    if shape in ("sharegpt", "chat") or (
        shape is None and "conversations" in loaded and options.completion_key not in loaded
    ):
        return _conversations(loaded, shape, options, noun)
    return loaded


def _messages(turns: list, options) -> list:
    """Each turn with its role mapped (ShareGPT's from/value turns become role/content); a role
    that maps to no chat role is a ShapeError naming the roles seen.

    Turns that chat.chat_line refuses anyway (not objects, roles not strings) pass as they are,
    so its message about them stands."""
    mapping = dict(options.role_map)
    out: list[object] = []
    seen: list[str] = []
    unknown = None
    for turn in turns:
        sharegpt = isinstance(turn, dict) and "from" in turn and "role" not in turn
        name = turn.get("from" if sharegpt else "role") if isinstance(turn, dict) else None
        if not isinstance(name, str):
            if sharegpt:
                raise ShapeError(f'turn {len(out)} has a non-string "from"; use a role name')
            out.append(turn)
            continue
        if name not in seen:
            seen.append(name)
        if name in mapping:
            role = mapping[name]
            known = role in CHAT_ROLES or role == name
        else:
            role = SHAREGPT_ROLES.get(name, name) if sharegpt else name
            known = role in CHAT_ROLES
        if not known and unknown is None:
            unknown = name
        if sharegpt:
            rest = {k: v for k, v in turn.items() if k not in ("from", "value")}
            turn = {"role": role, "content": turn.get("value"), **rest}
        elif role != name:
            turn = {**turn, "role": role}
        out.append(turn)
    if unknown is not None:
        raise ShapeError(
            f"unknown role {unknown!r} (roles seen: {', '.join(seen)}); map it to a chat role with"
            f" --role-map {unknown}=assistant (or user, system, tool), or to itself"
            f" (--role-map {unknown}={unknown}) when the chat template knows it"
        )
    return out


def _looks_alpaca(loaded: dict, options) -> bool:
    return (
        "instruction" in loaded
        and "output" in loaded
        and options.prompt_key not in loaded
        and options.completion_key not in loaded
        and "messages" not in loaded
    )


def _alpaca(loaded: dict, options, noun: str) -> dict:
    fields = {}
    for key, required in (("instruction", True), ("input", False), ("output", True)):
        value = loaded.get(key)
        if value is None:
            if required:
                raise ShapeError(
                    f"no {key!r} {noun}; an Alpaca record has instruction, input (optional) and"
                    " output; fix the record or pick another --input-format"
                )
            value = ""
        if not isinstance(value, str):
            raise ShapeError(
                f"{noun} {key!r} is {type(value).__name__}, not a string; make it a string"
            )
        fields[key] = value
    if fields["input"]:
        template = options.alpaca_template or DEFAULT_ALPACA_TEMPLATE
    else:
        template = options.alpaca_template_no_input or DEFAULT_ALPACA_TEMPLATE_NO_INPUT
    record = {
        options.prompt_key: template.format(
            instruction=fields["instruction"], input=fields["input"]
        ),
        options.completion_key: fields["output"],
    }
    if "category" in loaded:
        record["category"] = loaded["category"]
    return record


def _conversations(loaded: dict, shape: str | None, options, noun: str) -> dict:
    """A `conversations` record (ShareGPT's from/value, or role/content) as a `messages` one."""
    turns = loaded.get("conversations")
    if not isinstance(turns, list) or not turns:
        if shape == "chat":
            return loaded  # chat_line says what a `messages` line needs
        raise ShapeError(
            '"conversations" must be a non-empty list of {"from": ..., "value": ...} turns'
            if turns is not None
            else f'no "conversations" {noun}; a ShareGPT record is {{"conversations": [{{"from":'
            ' "human", "value": ...}, ...]}; fix the record or pick another --input-format'
        )
    for index, turn in enumerate(turns):
        if isinstance(turn, dict) and "from" not in turn and "role" not in turn:
            raise ShapeError(
                f'turn {index} has neither "from" nor "role"; write {{"from": "human", "value":'
                ' ...} or {"role": "user", "content": ...}'
            )
    messages = _messages(turns, options)
    system = loaded.get("system")
    if isinstance(system, str) and system and not _starts_with_system(messages):
        messages.insert(0, {"role": "system", "content": system})
    record = {key: value for key, value in loaded.items() if key not in ("conversations", "system")}
    record["messages"] = messages
    tools = record.get("tools")
    if isinstance(tools, str):  # LLaMA-Factory keeps tools as a JSON string
        try:
            record["tools"] = json.loads(tools) if tools.strip() else None
        except json.JSONDecodeError as exc:
            raise ShapeError(
                f'"tools" is a string that is not JSON ({exc.msg}); write a list of tools'
            ) from None
    return record


def _starts_with_system(messages: list) -> bool:
    return bool(messages) and isinstance(messages[0], dict) and messages[0].get("role") == "system"


def missing_columns(columns: list[str], options) -> tuple[str, str] | None:
    """(what a Parquet/Arrow file lacks to be read with these options, the fix), or None.

    Checked once per file from its schema, so a file without the columns fails before any row
    is read, naming what it has (columnar.check_columns adds that)."""
    have = set(columns)
    shape = options.input_format
    if shape in ("chat", "sharegpt"):
        wanted = ("conversations",) if shape == "sharegpt" else ("messages", "conversations")
        if not have & {"messages", "conversations"}:
            return (
                f"no {' or '.join(repr(w) for w in wanted)} column for --input-format {shape}",
                "pick the file of conversations, or another --input-format",
            )
        return None
    if shape == "alpaca" or (
        not options.apply_chat_template
        and options.completion_key not in have
        and not have & {"messages", "conversations"}
        and "instruction" in have
    ):
        lacking = [key for key in ("instruction", "output") if key not in have]
        if lacking:
            return (
                f"no {' or '.join(repr(k) for k in lacking)} column for an Alpaca record",
                "an Alpaca record has instruction, input (optional) and output",
            )
        return None
    if options.completion_key in have:
        return None
    if not options.apply_chat_template and have & {"messages", "conversations"}:
        return None
    return (
        f"no {options.completion_key!r} column, nor messages, conversations, or instruction and"
        " output",
        "name the completion column with --completion-key (and the prompt's with --prompt-key)",
    )
