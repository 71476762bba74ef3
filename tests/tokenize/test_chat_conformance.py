"""Chat templates of the shapes real instruct models use, written here, typed as the trainers'
rule has it: a learned turn starts at the first character the assistant's turn writes after its
header (a `<think>` the template opens included) and ends with its end-of-turn marker; what the
template writes after the marker is the next turn's prompt.

Each template comes twice: as published models write it (no generation blocks) and annotated
with `{% generation %}` blocks around what the assistant writes. Three references agree:
hand-written expectations; tokentype on the annotated copy (blocks decide directly); and, where
transformers is installed, its `apply_chat_template(..., return_assistant_tokens_mask=True)` on
the annotated copy.

The tokenizer is byte-level BPE with no merges, so every character is a token and a row's types
read as text; each template's markers are its special tokens.
"""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from tests.helpers import assert_one_line_error, invoke


@dataclass
class Case:
    template: str  # as published models write it
    annotated: str  # the same rendering, with {% generation %} blocks
    specials: tuple[str, ...]
    eos: str
    bos: str | None = None
    conversation: dict = field(default_factory=dict)  # {"messages": ..., "tools": ...}
    expected: list = field(default_factory=list)  # (type, text) runs of that conversation
    tools: bool = False  # conversations for the oracle carry tool calls


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def call(name: str, arguments: dict, ident: str = "call00001") -> dict:
    return {"id": ident, "type": "function", "function": {"name": name, "arguments": arguments}}


# --- Llama-3.1 style: a JSON tool call after the assistant header, results under `ipython` -------

LLAMA31 = """\
{{- bos_token }}
{%- if messages[0].role == 'system' %}
    {%- set system = messages[0].content | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system = '' %}
{%- endif %}
{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}
{%- if tools %}
    {{- 'You may call these functions:\\n' }}
    {%- for tool in tools %}{{- tool | tojson(indent=4) + '\\n\\n' }}{%- endfor %}
{%- endif %}
{{- system + '<|eot_id|>' }}
{%- for message in messages %}
    {%- if message.tool_calls %}
        {%- if message.tool_calls | length != 1 %}
            {{- raise_exception('This model calls one tool at a time') }}
        {%- endif %}
        {%- set fn = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
        {{- '{"name": "' + fn.name + '", "parameters": ' + fn.arguments | tojson + '}' }}
        {{- '<|eot_id|>' }}
    {%- elif message.role in ('tool', 'ipython') %}
        {{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + message.content + '<|eot_id|>' }}
    {%- else %}
        {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' }}
        {{- message.content | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}
"""
LLAMA31_ANNOTATED = LLAMA31.replace(
    """        {{- '{"name": "' + fn.name + '", "parameters": ' + fn.arguments | tojson + '}' }}
        {{- '<|eot_id|>' }}""",
    """        {%- generation %}
        {{- '{"name": "' + fn.name + '", "parameters": ' + fn.arguments | tojson + '}' }}
        {{- '<|eot_id|>' }}
        {%- endgeneration %}""",
).replace(
    """        {{- message.content | trim + '<|eot_id|>' }}""",
    """        {%- if message.role == 'assistant' %}
            {%- generation %}{{- message.content | trim + '<|eot_id|>' }}{%- endgeneration %}
        {%- else %}
            {{- message.content | trim + '<|eot_id|>' }}
        {%- endif %}""",
)
LLAMA_HEADER = "<|start_header_id|>{}<|end_header_id|>\n\n"
TOOL_CONVERSATION = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call("get_weather", {"city": "Paris"})],
        },
        {"role": "ipython", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "21 degrees."},
    ],
    "tools": [WEATHER],
}
LLAMA31_CASE = Case(
    LLAMA31,
    LLAMA31_ANNOTATED,
    ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    eos="<|eot_id|>",
    bos="<|begin_of_text|>",
    conversation=TOOL_CONVERSATION,
    expected=[
        (
            "prompt",
            "<|begin_of_text|>"
            + LLAMA_HEADER.format("system")
            + "You may call these functions:\n"
            + json.dumps(WEATHER, indent=4)
            + "\n\nBe brief.<|eot_id|>"
            + LLAMA_HEADER.format("user")
            + "Weather in Paris?<|eot_id|>"
            + LLAMA_HEADER.format("assistant"),
        ),
        ("completion", '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>'),
        (
            "prompt",
            LLAMA_HEADER.format("ipython")
            + '{"temp": 21}<|eot_id|>'
            + LLAMA_HEADER.format("assistant"),
        ),
        ("completion", "21 degrees."),
        ("separator", "<|eot_id|>"),
    ],
    tools=True,
)

# --- Mistral style: [INST] in the user's turn, tool calls behind a [TOOL_CALLS] prefix, no
# generation prompt -------------------------------------------------------------------------------

MISTRAL = """\
{{- bos_token }}
{%- for message in messages %}
    {%- if message.role == 'user' %}
        {%- if tools and loop.first %}
            {{- '[AVAILABLE_TOOLS] ' + tools | tojson + '[/AVAILABLE_TOOLS]' }}
        {%- endif %}
        {{- '[INST] ' + message.content + '[/INST]' }}
    {%- elif message.role == 'assistant' and message.tool_calls %}
        {{- '[TOOL_CALLS] [' }}
        {%- for tc in message.tool_calls %}
            {{- {'name': tc.function.name, 'arguments': tc.function.arguments, 'id': tc.id} | tojson }}
            {%- if not loop.last %}{{- ', ' }}{%- endif %}
        {%- endfor %}
        {{- ']' + eos_token }}
    {%- elif message.role == 'assistant' %}
        {{- ' ' + message.content | trim + eos_token }}
    {%- elif message.role == 'tool' %}
        {{- '[TOOL_RESULTS] ' }}
        {{- {'content': message.content, 'call_id': message.tool_call_id} | tojson }}
        {{- '[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception('Only user, assistant and tool roles are supported') }}
    {%- endif %}
{%- endfor %}
"""
MISTRAL_ANNOTATED = MISTRAL.replace(
    """        {{- '[TOOL_CALLS] [' }}""", """        {%- generation %}{{- '[TOOL_CALLS] [' }}"""
).replace(
    """        {{- ']' + eos_token }}
    {%- elif message.role == 'assistant' %}
        {{- ' ' + message.content | trim + eos_token }}""",
    """        {{- ']' + eos_token }}{%- endgeneration %}
    {%- elif message.role == 'assistant' %}
        {{- ' ' }}{%- generation %}{{- message.content | trim + eos_token }}{%- endgeneration %}""",
)
MISTRAL_CONVERSATION = {
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [call("get_weather", {"city": "Paris"})],
        },
        {"role": "tool", "content": "21", "tool_call_id": "call00001"},
        {"role": "assistant", "content": "21 degrees."},
    ],
    "tools": [WEATHER],
}
MISTRAL_CASE = Case(
    MISTRAL,
    MISTRAL_ANNOTATED,
    (
        "<s>",
        "</s>",
        "[INST]",
        "[/INST]",
        "[TOOL_CALLS]",
        "[AVAILABLE_TOOLS]",
        "[/AVAILABLE_TOOLS]",
        "[TOOL_RESULTS]",
        "[/TOOL_RESULTS]",
    ),
    eos="</s>",
    bos="<s>",
    conversation=MISTRAL_CONVERSATION,
    expected=[
        (
            "prompt",
            "<s>[AVAILABLE_TOOLS] " + json.dumps([WEATHER]) + "[/AVAILABLE_TOOLS]"
            "[INST] Weather in Paris?[/INST]",
        ),
        (
            "completion",
            '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"},'
            ' "id": "call00001"}]</s>',
        ),
        ("prompt", '[TOOL_RESULTS] {"content": "21", "call_id": "call00001"}[/TOOL_RESULTS] '),
        ("completion", "21 degrees."),
        ("separator", "</s>"),
    ],
    tools=True,
)

# --- Hermes / Qwen2.5 style: <tool_call> blocks where the content goes, results as `tool` ---------

HERMES = """\
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
    {{- '# Tools\\n<tools>' }}
    {%- for tool in tools %}{{- '\\n' + tool | tojson }}{%- endfor %}
    {{- '\\n</tools><|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'user' %}
        {{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' }}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>assistant\\n' }}
        {%- if message.content %}{{- message.content }}{%- endif %}
        {%- for tc in message.tool_calls or [] %}
            {%- if message.content or not loop.first %}{{- '\\n' }}{%- endif %}
            {{- '<tool_call>\\n{"name": "' + tc.function.name + '", "arguments": ' }}
            {{- tc.function.arguments | tojson + '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""
HERMES_ANNOTATED = HERMES.replace(
    """        {{- '<|im_start|>assistant\\n' }}
        {%- if message.content %}""",
    """        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}
        {%- if message.content %}""",
).replace(
    """        {%- endfor %}
        {{- '<|im_end|>\\n' }}""",
    """        {%- endfor %}
        {{- '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}""",
)
HERMES_CONVERSATION = {
    "messages": [
        {"role": "user", "content": "Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                call("get_weather", {"city": "Paris"}),
                call("get_weather", {"city": "Rome"}, "call00002"),
            ],
        },
        {"role": "tool", "content": "21"},
        {"role": "tool", "content": "25"},
        {"role": "assistant", "content": "21 and 25."},
    ],
    "tools": [WEATHER],
}
HERMES_CASE = Case(
    HERMES,
    HERMES_ANNOTATED,
    ("<|im_start|>", "<|im_end|>", "<|endoftext|>"),
    eos="<|im_end|>",
    conversation=HERMES_CONVERSATION,
    expected=[
        (
            "prompt",
            "<|im_start|>system\n# Tools\n<tools>\n"
            + json.dumps(WEATHER)
            + "\n</tools><|im_end|>\n"
            "<|im_start|>user\nParis and Rome?<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            "completion",
            'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
            '</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n'
            "</tool_call><|im_end|>",
        ),
        (
            "prompt",
            "\n<|im_start|>user\n<tool_response>\n21\n</tool_response>\n<tool_response>\n25\n"
            "</tool_response><|im_end|>\n<|im_start|>assistant\n",
        ),
        ("completion", "21 and 25."),
        ("separator", "<|im_end|>"),
    ],
    tools=True,
)

# --- Qwen3 style: the template opens <think> on turns after the last user message, and drops the
# reasoning of earlier turns ----------------------------------------------------------------------

QWEN3 = """\
{%- set ns = namespace(last_query=-1) %}
{%- for message in messages %}
    {%- if message.role == 'user' %}{%- set ns.last_query = loop.index0 %}{%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.role == 'assistant' %}
        {%- set content = message.content or '' %}
        {%- set reasoning = message.reasoning_content or '' %}
        {%- if not reasoning and '</think>' in content %}
            {%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {{- '<|im_start|>assistant\\n' }}
        {%- if loop.index0 > ns.last_query and (loop.last or reasoning) %}
            {{- '<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
        {%- else %}
            {{- content }}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""
QWEN3_ANNOTATED = QWEN3.replace(
    """        {{- '<|im_start|>assistant\\n' }}
        {%- if loop.index0""",
    """        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}
        {%- if loop.index0""",
).replace(
    """            {{- content }}
        {%- endif %}
        {{- '<|im_end|>\\n' }}""",
    """            {{- content }}
        {%- endif %}
        {{- '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}""",
)
QWEN3_CASE = Case(
    QWEN3,
    QWEN3_ANNOTATED,
    ("<|im_start|>", "<|im_end|>", "<|endoftext|>"),
    eos="<|im_end|>",
    conversation={
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "<think>greet</think>\n\nHello"},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "add"},
        ]
    },
    expected=[
        ("prompt", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
        ("completion", "Hello<|im_end|>"),
        ("prompt", "\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"),
        ("completion", "<think>\nadd\n</think>\n\n4"),
        ("separator", "<|im_end|>"),
    ],
)

# --- Phi-3 style: each marker followed by a newline, the eos after the last turn -----------------

PHI3 = """\
{%- for message in messages %}
    {{- '<|' + message.role + '|>\\n' + message.content + '<|end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- else %}{{- eos_token }}{%- endif %}
"""
PHI3_ANNOTATED = """\
{%- for message in messages %}
    {%- if message.role == 'assistant' %}
        {{- '<|assistant|>\\n' }}{%- generation %}{{- message.content + '<|end|>' }}{%- endgeneration %}
        {{- '\\n' }}
    {%- else %}
        {{- '<|' + message.role + '|>\\n' + message.content + '<|end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- else %}{{- eos_token }}{%- endif %}
"""
PHI3_CASE = Case(
    PHI3,
    PHI3_ANNOTATED,
    ("<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<|endoftext|>"),
    eos="<|endoftext|>",
    conversation={
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Ciao"},
        ]
    },
    expected=[
        ("prompt", "<|user|>\nHi<|end|>\n<|assistant|>\n"),
        ("completion", "Hello<|end|>"),
        ("prompt", "\n<|user|>\nBye<|end|>\n<|assistant|>\n"),
        ("completion", "Ciao<|end|>"),
        ("prompt", "\n"),
        ("separator", "<|endoftext|>"),
    ],
)

# --- Gemma style: the system prompt merged into the first user turn, assistant as `model`, roles
# that must alternate ------------------------------------------------------------------------------

GEMMA = """\
{{- bos_token }}
{%- if messages[0].role == 'system' %}
    {%- set prefix = messages[0].content + '\\n\\n' %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set prefix = '' %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
    {%- if (message.role == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- set role = 'model' if message.role == 'assistant' else message.role %}
    {{- '<start_of_turn>' + role + '\\n' + (prefix if loop.first else '') }}
    {{- message.content | trim + '<end_of_turn>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}
"""
GEMMA_ANNOTATED = GEMMA.replace(
    """    {{- message.content | trim + '<end_of_turn>\\n' }}""",
    """    {%- if role == 'model' %}
        {%- generation %}{{- message.content | trim + '<end_of_turn>' }}{%- endgeneration %}
        {{- '\\n' }}
    {%- else %}
        {{- message.content | trim + '<end_of_turn>\\n' }}
    {%- endif %}""",
)
GEMMA_CASE = Case(
    GEMMA,
    GEMMA_ANNOTATED,
    ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"),
    eos="<end_of_turn>",
    bos="<bos>",
    conversation={
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": " Hello "},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Ciao"},
        ]
    },
    expected=[
        (
            "prompt",
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n",
        ),
        ("completion", "Hello<end_of_turn>"),
        ("prompt", "\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"),
        ("completion", "Ciao"),
        ("separator", "<end_of_turn>"),
    ],
)

# --- Llama-2 style: <<SYS>> inside the first [INST], no generation prompt, raising on role order --

LLAMA2 = """\
{%- if messages[0].role == 'system' %}
    {%- set system = '<<SYS>>\\n' + messages[0].content + '\\n<</SYS>>\\n\\n' %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set system = '' %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
    {%- if (message.role == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message.role == 'user' %}
        {{- bos_token + '[INST] ' + (system if loop.first else '') + message.content | trim + ' [/INST]' }}
    {%- else %}
        {{- ' ' + message.content | trim + ' ' + eos_token }}
    {%- endif %}
{%- endfor %}
"""
LLAMA2_ANNOTATED = LLAMA2.replace(
    """        {{- ' ' + message.content | trim + ' ' + eos_token }}""",
    """        {{- ' ' }}{%- generation %}{{- message.content | trim + ' ' + eos_token }}{%- endgeneration %}""",
)
LLAMA2_CASE = Case(
    LLAMA2,
    LLAMA2_ANNOTATED,
    ("<s>", "</s>"),
    eos="</s>",
    bos="<s>",
    conversation={
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Ciao"},
        ]
    },
    expected=[
        ("prompt", "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] "),
        ("completion", "Hello </s>"),
        ("prompt", "<s>[INST] Bye [/INST] "),
        ("completion", "Ciao "),
        ("separator", "</s>"),
    ],
)

# --- Nemotron-Nano style: the last assistant turn written after the loop, with a <think> the
# generation prompt opens --------------------------------------------------------------------------

LAST_OUTSIDE = """\
{%- set history = messages[:-1] if messages[-1].role == 'assistant' else messages %}
{%- for message in history %}
    {%- if message.role == 'assistant' %}
        {{- '<|turn|>Assistant\\n' + message.content | trim + '\\n<|end_turn|>\\n\\n' }}
    {%- else %}
        {{- '<|turn|>User\\n' + message.content | trim + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|turn|>Assistant\\n<think>\\n\\n' }}
{%- elif messages[-1].role == 'assistant' %}
    {{- '<|turn|>Assistant\\n<think>\\n\\n' + messages[-1].content | trim + '\\n<|end_turn|>\\n\\n' }}
{%- endif %}
"""
LAST_OUTSIDE_ANNOTATED = LAST_OUTSIDE.replace(
    """        {{- '<|turn|>Assistant\\n' + message.content | trim + '\\n<|end_turn|>\\n\\n' }}""",
    """        {{- '<|turn|>Assistant\\n' }}
        {%- generation %}{{- message.content | trim + '\\n<|end_turn|>' }}{%- endgeneration %}
        {{- '\\n\\n' }}""",
).replace(
    """    {{- '<|turn|>Assistant\\n<think>\\n\\n' + messages[-1].content | trim + '\\n<|end_turn|>\\n\\n' }}""",
    """    {{- '<|turn|>Assistant\\n<think>\\n\\n' }}
    {%- generation %}{{- messages[-1].content | trim + '\\n<|end_turn|>' }}{%- endgeneration %}
    {{- '\\n\\n' }}""",
)
LAST_OUTSIDE_CASE = Case(
    LAST_OUTSIDE,
    LAST_OUTSIDE_ANNOTATED,
    ("<|turn|>", "<|end_turn|>", "<|endoftext|>"),
    eos="<|end_turn|>",
    conversation={
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Ciao"},
        ]
    },
    expected=[
        ("prompt", "<|turn|>User\nHi\n<|turn|>Assistant\n"),
        ("completion", "Hello\n<|end_turn|>"),
        ("prompt", "\n\n<|turn|>User\nBye\n<|turn|>Assistant\n<think>\n\n"),
        ("completion", "Ciao\n"),
        ("separator", "<|end_turn|>"),
    ],
)

# --- Reka-Edge style: the loop only collects; everything is written after it ---------------------

ALL_AFTER = """\
{%- set ns = namespace(text='') %}
{%- for message in messages %}
    {%- set ns.text = ns.text + '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' %}
{%- endfor %}
{{- ns.text }}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""
# Generation blocks mark text as it is written, so the annotated copy writes inside the loop.
ALL_AFTER_ANNOTATED = """\
{%- for message in messages %}
    {%- if message.role == 'assistant' %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}{{- message.content + '<|im_end|>' }}{%- endgeneration %}
        {{- '\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""
CHATML_CONVERSATION = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Ciao"},
    ]
}
CHATML_EXPECTED = [
    (
        "prompt",
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
    ("completion", "Hello<|im_end|>"),
    ("prompt", "\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"),
    ("completion", "Ciao"),
    ("separator", "<|im_end|>"),
]
ALL_AFTER_CASE = Case(
    ALL_AFTER,
    ALL_AFTER_ANNOTATED,
    ("<|im_start|>", "<|im_end|>", "<|endoftext|>"),
    eos="<|im_end|>",
    conversation=CHATML_CONVERSATION,
    expected=CHATML_EXPECTED,
)

# --- Kimi-K2-Thinking style: the messages split over two loops (the history, and the turns after
# the last plain assistant answer, which keep their reasoning) -----------------------------------

TWO_LOOPS = """\
{%- set ns = namespace(last=-1) %}
{%- for message in messages %}
    {%- if message.role == 'assistant' and not message.tool_calls %}{%- set ns.last = loop.index0 %}{%- endif %}
{%- endfor %}
{%- for message in messages[:ns.last + 1] %}
    {{- '<|im_' + message.role + '|>' + message.role + '<|im_middle|>' }}
    {%- if message.role == 'assistant' %}{{- '<think></think>' }}{%- endif %}
    {{- message.content or '' }}
    {%- for tc in message.tool_calls or [] %}
        {{- '<|tool_call|>' + tc.function.name + ':' + tc.function.arguments | tojson }}
    {%- endfor %}
    {{- '<|im_end|>' }}
{%- endfor %}
{%- for message in messages[ns.last + 1:] %}
    {{- '<|im_' + message.role + '|>' + message.role + '<|im_middle|>' }}
    {%- if message.role == 'assistant' %}
        {{- '<think>' + (message.reasoning_content or '') + '</think>' + (message.content or '') }}
        {%- for tc in message.tool_calls or [] %}
            {{- '<|tool_call|>' + tc.function.name + ':' + tc.function.arguments | tojson }}
        {%- endfor %}
    {%- else %}
        {{- message.content or '' }}
    {%- endif %}
    {{- '<|im_end|>' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_assistant|>assistant<|im_middle|>' }}{%- endif %}
"""
TWO_LOOPS_ANNOTATED = """\
{%- set ns = namespace(last=-1) %}
{%- for message in messages %}
    {%- if message.role == 'assistant' and not message.tool_calls %}{%- set ns.last = loop.index0 %}{%- endif %}
{%- endfor %}
{%- for message in messages[:ns.last + 1] %}
    {{- '<|im_' + message.role + '|>' + message.role + '<|im_middle|>' }}
    {%- if message.role == 'assistant' %}
        {%- generation %}
        {{- '<think></think>' + (message.content or '') }}
        {%- for tc in message.tool_calls or [] %}
            {{- '<|tool_call|>' + tc.function.name + ':' + tc.function.arguments | tojson }}
        {%- endfor %}
        {{- '<|im_end|>' }}
        {%- endgeneration %}
    {%- else %}
        {{- (message.content or '') + '<|im_end|>' }}
    {%- endif %}
{%- endfor %}
{%- for message in messages[ns.last + 1:] %}
    {{- '<|im_' + message.role + '|>' + message.role + '<|im_middle|>' }}
    {%- if message.role == 'assistant' %}
        {%- generation %}
        {{- '<think>' + (message.reasoning_content or '') + '</think>' + (message.content or '') }}
        {%- for tc in message.tool_calls or [] %}
            {{- '<|tool_call|>' + tc.function.name + ':' + tc.function.arguments | tojson }}
        {%- endfor %}
        {{- '<|im_end|>' }}
        {%- endgeneration %}
    {%- else %}
        {{- (message.content or '') + '<|im_end|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_assistant|>assistant<|im_middle|>' }}{%- endif %}
"""
TWO_LOOPS_CASE = Case(
    TWO_LOOPS,
    TWO_LOOPS_ANNOTATED,
    (
        "<|im_user|>",
        "<|im_assistant|>",
        "<|im_system|>",
        "<|im_tool|>",
        "<|im_middle|>",
        "<|im_end|>",
        "<|tool_call|>",
    ),
    eos="<|im_end|>",
    conversation={
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Paris?"},
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "look it up",
                "tool_calls": [call("get_weather", {"city": "Paris"})],
            },
            {"role": "tool", "content": "21"},
        ],
    },
    expected=[
        (
            "prompt",
            "<|im_user|>user<|im_middle|>Hi<|im_end|><|im_assistant|>assistant<|im_middle|>",
        ),
        ("completion", "<think></think>Hello<|im_end|>"),
        (
            "prompt",
            "<|im_user|>user<|im_middle|>Paris?<|im_end|><|im_assistant|>assistant<|im_middle|>",
        ),
        (
            "completion",
            '<think>look it up</think><|tool_call|>get_weather:{"city": "Paris"}<|im_end|>',
        ),
        (
            "prompt",
            "<|im_tool|>tool<|im_middle|>21",
        ),
        ("separator", "<|im_end|>"),
    ],
    tools=True,
)

CASES = {
    "llama31_tool_json": LLAMA31_CASE,
    "mistral_tool_calls_prefix": MISTRAL_CASE,
    "hermes_tool_call_blocks": HERMES_CASE,
    "qwen3_think": QWEN3_CASE,
    "phi3_marker_newline": PHI3_CASE,
    "gemma_system_merged": GEMMA_CASE,
    "llama2_raises_on_order": LLAMA2_CASE,
    "last_turn_outside_loop": LAST_OUTSIDE_CASE,
    "all_after_loop": ALL_AFTER_CASE,
    "two_loops": TWO_LOOPS_CASE,
}


def make_tokenizer(folder: Path, case: Case, template: str) -> Path:
    """Byte-level BPE over single bytes (every character a token) with the case's markers."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in case.specials]
    )
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"eos_token": case.eos, "chat_template": template}
    if case.bos:
        config["bos_token"] = case.bos
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def tokenize(tmp_path: Path, folder: Path, lines: list[dict], *extra) -> tuple[object, Path]:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.h5"
    if out.exists():
        out.unlink()
    result = invoke(
        "tokenize", source, "-o", out, "--tokenizer", folder, "--max-seq-length", 4096,
        "--packing", "single::drop", "--keep-prompt-only-sequences", "--json", *extra,
    )  # fmt: skip
    return result, out


def rows(out: Path) -> list[tuple[list[int], list[int]]]:
    with h5py.File(out, "r") as f:
        return [
            ([i for i, t in zip(ids, types, strict=True) if t != 2], [t for t in types if t != 2])
            for ids, types in zip(
                f["input_ids"][:].tolist(), f["token_type_ids"][:].tolist(), strict=True
            )
        ]


def runs(out: Path, folder: Path) -> list[list[tuple[str, str]]]:
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    names = ("prompt", "completion", "padding", "separator")
    found = []
    for ids, types in rows(out):
        row: list[tuple[str, list[int]]] = []
        for token, kind in zip(ids, types, strict=True):
            if row and row[-1][0] == names[kind]:
                row[-1][1].append(token)
            else:
                row.append((names[kind], [token]))
        found.append([(k, tokenizer.decode(t, skip_special_tokens=False)) for k, t in row])
    return found


def conversations(case: Case, count: int, seed: int = 11) -> list[dict]:
    """Alternating conversations of random text; with tools, some turns call and get results."""
    rng = random.Random(seed)
    words = ["the", "river", "town", "Hello", "café", "東京", "42", "{json}", "<b>", "don't"]

    def text() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(1, 8)))

    out = []
    for _ in range(count):
        system = case is not MISTRAL_CASE and rng.random() < 0.4
        messages = [{"role": "system", "content": text()}] if system else []
        for turn in range(rng.randint(1, 3)):
            messages.append({"role": "user", "content": text()})
            if case.tools and rng.random() < 0.5:
                result_role = "ipython" if case is LLAMA31_CASE else "tool"
                arguments = {"city": rng.choice(words)}
                messages.append(
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [call("get_weather", arguments, f"call{turn:05d}")],
                    }
                )
                messages.append(
                    {"role": result_role, "content": text(), "tool_call_id": f"call{turn:05d}"}
                )
            answer = {"role": "assistant", "content": text()}
            if case is QWEN3_CASE and rng.random() < 0.5:
                answer["content"] = f"<think>{text()}</think>\n\n" + answer["content"]
            if case is TWO_LOOPS_CASE and rng.random() < 0.5:
                answer["reasoning_content"] = text()
            messages.append(answer)
        line: dict = {"messages": messages}
        if case.tools:
            line["tools"] = [WEATHER]
        out.append(line)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_types_follow_the_rule(tmp_path, name):
    case = CASES[name]
    folder = make_tokenizer(tmp_path / "tok", case, case.template)
    result, out = tokenize(tmp_path, folder, [case.conversation])
    assert result.exit_code == 0, result.output
    assert runs(out, folder) == [case.expected]


@pytest.mark.parametrize("name", list(CASES))
def test_the_annotated_template_types_alike(tmp_path, name):
    """Generation blocks decide directly; without them the rule must find the same tokens."""
    case = CASES[name]
    lines = [case.conversation, *conversations(case, 40)]
    found = []
    for template in (case.template, case.annotated):
        folder = make_tokenizer(tmp_path / "tok", case, template)
        result, out = tokenize(tmp_path, folder, lines)
        assert result.exit_code == 0, result.output
        found.append(rows(out))
    assert found[0] == found[1]


def test_a_template_raising_on_role_order_refuses_that_line(tmp_path):
    case = LLAMA2_CASE
    folder = make_tokenizer(tmp_path / "tok", case, case.template)
    bad = {"messages": [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "x"}]}
    result, _ = tokenize(tmp_path, folder, [case.conversation, bad])
    assert_one_line_error(
        result, 1, "in.jsonl:2:", "roles must alternate", "(chat_template) line 10"
    )
    rejects = tmp_path / "rejects.jsonl"
    result, out = tokenize(tmp_path, folder, [case.conversation, bad], "--skip-bad-lines", rejects)
    assert result.exit_code == 0, result.output
    assert runs(out, folder) == [case.expected]


def test_the_summary_counts_tool_call_turns_and_reasoning(tmp_path):
    case = TWO_LOOPS_CASE
    folder = make_tokenizer(tmp_path / "tok", case, case.template)
    result, _ = tokenize(tmp_path, folder, [case.conversation])
    metrics = json.loads(result.stdout)
    assert metrics["assistant_turns"] == 2 and metrics["tool_call_turns"] == 1
    assert metrics["reasoning_tokens"] == len("look it up")  # one token a character
    result = invoke(
        "tokenize", tmp_path / "in.jsonl", "-o", tmp_path / "text.h5", "--tokenizer", folder,
        "--max-seq-length", 4096, "--packing", "single::drop",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 learned assistant turns (1 calling tools), 10 learned tokens of reasoning" in (
        result.stderr
    )


# --- transformers' assistant mask on the annotated templates --------------------------------------


@pytest.fixture(scope="module")
def transformers():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import transformers
        except ImportError:
            pytest.skip("transformers is not installed (not a dependency): no oracle to compare")
    return transformers


@pytest.mark.parametrize("name", list(CASES))
def test_types_equal_transformers_assistant_mask(tmp_path, name, transformers):
    """Learned tokens (type 1) are those in transformers' assistant mask, and the ids equal its
    rendering's; the one separator a conversation ends in is left out of the comparison, as is
    the whitespace after it that tokentype drops."""
    case = CASES[name]
    lines = [case.conversation, *conversations(case, 60, seed=5)]
    folder = make_tokenizer(tmp_path / "tok", case, case.template)
    result, out = tokenize(tmp_path, folder, lines)
    assert result.exit_code == 0, result.output
    ours = rows(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.PreTrainedTokenizerFast(
            tokenizer_file=str(folder / "tokenizer.json"), eos_token=case.eos, bos_token=case.bos
        )
    differing = []
    for number, (line, (ids, types)) in enumerate(zip(lines, ours, strict=True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = hf.apply_chat_template(
                line["messages"], tools=line.get("tools"), chat_template=case.annotated,
                tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
            )  # fmt: skip
        hf_ids, mask = list(expected["input_ids"]), list(expected["assistant_masks"])
        while hf_ids and hf.decode(hf_ids[-1:]).strip() == "":
            hf_ids.pop()
            mask.pop()
        if ids[-1] not in hf_ids[-1:]:  # a separator tokentype appended
            ids, types = ids[:-1], types[:-1]
        kept = [k for k, t in enumerate(types) if t != 3]
        if ids != hf_ids or [types[k] for k in kept] != [mask[k] for k in kept]:
            differing.append(number)
    assert not differing, f"conversations typed unlike transformers' mask: {differing[:10]}"


def test_null_keys_are_left_out_as_transformers_does(tmp_path):
    """transformers 5 drops a message's null-valued keys ("content": null beside tool calls)
    before rendering, and templates test for the key."""
    case = HERMES_CASE
    template = (
        "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' }}"
        "{%- if m.content is defined %}{{- m.content | string }}{%- else %}{{- 'none' }}{%- endif %}"
        "{{- '<|im_end|>\\n' }}{%- endfor %}"
    )
    folder = make_tokenizer(tmp_path / "tok", case, template)
    line = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": None, "tool_calls": [call("f", {})]},
        ]
    }
    result, out = tokenize(tmp_path, folder, [line])
    assert result.exit_code == 0, result.output
    assert runs(out, folder)[0][-2:] == [("completion", "none"), ("separator", "<|im_end|>")]


def test_a_turn_outside_the_loop_that_cannot_be_told_stops_the_run_once(tmp_path):
    """The last turn is written after the loop and the template refuses it without a tool call,
    so the turn cannot be compared with a stand-in: the run stops, naming the template, even with
    --skip-bad-lines (every line would fail alike)."""
    case = HERMES_CASE
    template = (
        "{%- for m in messages[:-1] %}{{- m.role + ':' + m.content + '<|im_end|>' }}{%- endfor %}"
        "{%- if messages[-1].tool_calls is not defined %}"
        "{{- raise_exception('the last turn must call a tool') }}{%- endif %}"
        "{{- 'assistant:' + messages[-1].tool_calls[0].function.name + '<|im_end|>' }}"
    )
    folder = make_tokenizer(tmp_path / "tok", case, template)
    line = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "", "tool_calls": [call("f", {})]},
        ]
    }
    result, _ = tokenize(tmp_path, folder, [line, line], "--skip-bad-lines", tmp_path / "bad.jsonl")
    assert_one_line_error(
        result, 1, "in.jsonl:1:", "tokenizer_config.json (chat_template)",
        "cannot tell what assistant message 1 produced", "{% generation %}",
    )  # fmt: skip
