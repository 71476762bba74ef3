"""tokenize with chat conversations: templates written here, types checked against the rules.

The tokenizer is built in code: byte-level BPE with no merges but one (" H"), so each ASCII
character is one token and a row's types can be compared, character by character, with a plain
statement of what each message should learn; the one merge makes a token that can straddle a
prompt/completion boundary (a seam).
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import (
    CHATML,
    CODON_VOCAB,
    assert_one_line_error,
    invoke,
    make_tokenizer,
    runs,
    write_lines,
)

CHATML_MARKED = """\
{%- for message in messages %}
    {%- if message['role'] == 'assistant' %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}
        {{- '\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
"""
# Llama-3 style: a BOS variable, header tokens, trimmed content and <|eot_id|> after each turn.
LLAMA3 = """\
{{- bos_token }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
    {{- message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
"""
# Qwen3 style: past assistant turns lose their reasoning, so a conversation's rendering is not
# the rendering of its first turns followed by more text.
DROP_REASONING = """\
{%- for message in messages %}
    {%- if message.role == 'assistant' %}
        {%- set content = message.content %}
        {%- if not loop.last and '</think>' in content %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {{- '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
"""
DEFAULT_SYSTEM = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}" + CHATML
)

CONVERSATION = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there"},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "Ciao"},
]


def tokenize(tmp_path, folder, *records, extra=(), name="in.jsonl"):
    source = write_lines(tmp_path / name, *records)
    out = tmp_path / "out.h5"
    args = [source, "-o", out, "--overwrite", "--tokenizer", folder, "--max-seq-length", 256]
    result = invoke("tokenize", *args, "--packing", "single::drop", "--json", *extra)
    return result, out


def chatml_expected(messages, learned, marked=False, default_system=None):
    """The rules, message by message, for ChatML: what is prompt, completion and separator."""
    out: list[tuple[str, str]] = []

    def add(kind, text):
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        elif text:
            out.append((kind, text))

    if default_system:
        add("prompt", f"<|im_start|>system\n{default_system}<|im_end|>\n")
    last = len(messages) - 1
    for i, m in enumerate(messages):
        if i not in learned:
            add("prompt", f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
            continue
        add("prompt", "<|im_start|>assistant\n")
        add("completion", m["content"])
        if i == last:  # the trailing "\n" goes and the <|im_end|> is the separator
            add("separator", "<|im_end|>")
        else:  # the turn ends with its marker, with or without generation blocks; the "\n"
            # after it is the template's, written after generation stops
            add("completion", "<|im_end|>")
            add("prompt", "\n")
    if out[-1][0] != "separator":  # a last turn that is not learned still ends in one
        text = out[-1][1]
        out[-1] = (out[-1][0], text[: -len("<|im_end|>\n")])
        add("separator", "<|im_end|>")
    return out


# --- the rules, per template ---------------------------------------------------------------------


@pytest.mark.parametrize("template, marked", [(CHATML, False), (CHATML_MARKED, True)])
def test_chatml_learns_every_assistant_turn_and_its_end(tmp_path, template, marked):
    folder = make_tokenizer(tmp_path / "tok", template)
    result, out = tokenize(tmp_path, folder, {"messages": CONVERSATION})
    assert result.exit_code == 0, result.output
    assert runs(out, folder) == [chatml_expected(CONVERSATION, {1, 3}, marked)]
    metrics = json.loads(result.stdout)
    assert metrics["conversations"] == 1 and metrics["seams"] == 0
    assert metrics["conversations_with_open_turns"] == 0


@pytest.mark.parametrize("template, marked", [(CHATML, False), (CHATML_MARKED, True)])
def test_train_on_last_and_weight_zero(tmp_path, template, marked):
    folder = make_tokenizer(tmp_path / "tok", template)
    weighted = [dict(m) for m in CONVERSATION]
    weighted[3]["weight"] = 0
    _, out = tokenize(tmp_path, folder, {"messages": CONVERSATION}, extra=("--train-on", "last"))
    assert runs(out, folder) == [chatml_expected(CONVERSATION, {3}, marked)]
    _, out = tokenize(tmp_path, folder, {"messages": weighted})
    assert runs(out, folder) == [chatml_expected(CONVERSATION, {1}, marked)]


def test_train_on_all_learns_every_token(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", CHATML)
    _, out = tokenize(tmp_path, folder, {"messages": CONVERSATION}, extra=("--train-on", "all"))
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in CONVERSATION)
    assert runs(out, folder) == [
        [("completion", text[: -len("<|im_end|>\n")]), ("separator", "<|im_end|>")]
    ]


def test_llama3_headers_are_prompt_and_eot_is_learned(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", LLAMA3, eos="<|eot_id|>")
    messages = [{"role": "system", "content": " Be brief. "}, *CONVERSATION]

    def header(role):
        return f"<|start_header_id|>{role}<|end_header_id|>\n\n"

    expected = [
        ("prompt", "<|begin_of_text|>" + header("system") + "Be brief.<|eot_id|>"),
        ("prompt", header("user") + "Hi<|eot_id|>" + header("assistant")),
        ("completion", "Hello there<|eot_id|>"),
        ("prompt", header("user") + "Bye<|eot_id|>" + header("assistant")),
        ("completion", "Ciao"),
        ("separator", "<|eot_id|>"),
    ]
    _, out = tokenize(tmp_path, folder, {"messages": messages})
    merged = _merge(expected)
    assert runs(out, folder) == [merged]
    # With another eos the template's <|eot_id|> is learned and one eos is appended.
    result, out = tokenize(
        tmp_path, folder, {"messages": messages}, extra=("--eos-token", "<|endoftext|>")
    )
    assert result.exit_code == 0, result.output
    assert runs(out, folder) == [
        [*merged[:-2], ("completion", "Ciao<|eot_id|>"), ("separator", "<|endoftext|>")]
    ]


def _merge(pieces):
    out = []
    for kind, text in pieces:
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))
    return out


def test_template_that_drops_past_reasoning(tmp_path):
    """Prefix rendering breaks here: the first turn renders differently once it is not last."""
    from tokentype_cli.tokenize.chat import Chat, chat_line
    from tokentype_cli.tokenize.options import TokenizeOptions
    from tokentype_cli.tokenizer_loader import load_tokenizer

    folder = make_tokenizer(tmp_path / "tok", DROP_REASONING)
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>greet</think>\n\nHello there"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "<think>part</think>\n\nCiao"},
    ]
    loaded = load_tokenizer(folder)
    chat = Chat(loaded, TokenizeOptions(), loaded.eos_id)
    prefix = chat.conversation(chat_line({"messages": messages[:2]})).text
    whole = chat.conversation(chat_line({"messages": messages})).text
    assert not whole.startswith(prefix)  # what a prefix-rendering method would rely on

    _, out = tokenize(tmp_path, folder, {"messages": messages})
    assert runs(out, folder) == [
        [
            ("prompt", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
            ("completion", "Hello there<|im_end|>"),
            ("prompt", "\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"),
            ("completion", "<think>part</think>\n\nCiao"),
            ("separator", "<|im_end|>"),
        ]
    ]


def test_default_system_prompt_is_prompt(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", DEFAULT_SYSTEM)
    _, out = tokenize(tmp_path, folder, {"messages": CONVERSATION})
    expected = chatml_expected(CONVERSATION, {1, 3}, default_system="You are a helpful assistant.")
    assert runs(out, folder) == [expected]


def test_template_iterating_over_a_sliced_message_list(tmp_path):
    template = (
        "{%- if messages[0].role == 'system' %}{%- set rest = messages[1:] %}"
        "{{- 'SYS:' + messages[0].content + '\\n' }}{%- else %}{%- set rest = messages %}"
        "{%- endif %}"
        "{%- for m in rest %}{%- if m.role == 'system' %}{%- continue %}{%- endif %}"
        "{{- m.role + ':' + m.content + '<|im_end|>' }}{%- endfor %}"
    )
    folder = make_tokenizer(tmp_path / "tok", template)
    messages = [{"role": "system", "content": "x"}, *CONVERSATION]
    _, out = tokenize(tmp_path, folder, {"messages": messages})
    assert runs(out, folder) == [
        [
            ("prompt", "SYS:x\nuser:Hi<|im_end|>assistant:"),
            ("completion", "Hello there<|im_end|>"),
            ("prompt", "user:Bye<|im_end|>assistant:"),
            ("completion", "Ciao"),
            ("separator", "<|im_end|>"),
        ]
    ]


# --- input ---------------------------------------------------------------------------------------


def test_chat_lines_are_found_in_jsonl_and_mix_with_pairs(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", CHATML)
    pair = {"prompt": "Q", "completion": "A"}
    result, out = tokenize(tmp_path, folder, {"messages": CONVERSATION[:2]}, CONVERSATION[:2], pair)
    assert result.exit_code == 0, result.output
    rows = runs(out, folder)
    assert rows[0] == rows[1] == chatml_expected(CONVERSATION[:2], {1})
    assert rows[2] == [("prompt", "Q"), ("completion", " A"), ("separator", "<|im_end|>")]
    assert json.loads(result.stdout)["conversations"] == 2


def test_input_format_chat_refuses_a_pair_line(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", CHATML)
    result, _ = tokenize(
        tmp_path, folder, {"prompt": "Q", "completion": "A"}, extra=("--input-format", "chat")
    )
    assert_one_line_error(result, 1, "in.jsonl:1:", 'no "messages" key')


def test_content_parts_are_joined_for_a_template_that_reads_strings(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", CHATML)
    parts = [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]
    messages = [CONVERSATION[0], {"role": "assistant", "content": parts}]
    _, out = tokenize(tmp_path, folder, {"messages": messages})
    joined = [CONVERSATION[0], {"role": "assistant", "content": "Hello\nthere"}]
    assert runs(out, folder) == [chatml_expected(joined, {1})]


def test_content_parts_reach_a_template_that_loops_over_them(tmp_path):
    template = (
        "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' }}"
        "{%- if m.content is string %}{{- m.content }}{%- else %}"
        "{%- for part in m.content %}{{- part.text + '|' }}{%- endfor %}{%- endif %}"
        "{{- '<|im_end|>\\n' }}{%- endfor %}"
    )
    folder = make_tokenizer(tmp_path / "tok", template)
    parts = [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]
    _, out = tokenize(
        tmp_path, folder, {"messages": [CONVERSATION[0], {"role": "assistant", "content": parts}]}
    )
    assert runs(out, folder)[0][-2:] == [
        ("completion", "Hello|there|"),
        ("separator", "<|im_end|>"),
    ]


@pytest.mark.parametrize(
    "messages, needle",
    [
        ([], "non-empty list"),
        ([{"content": "x"}], "message 0 has no role"),
        ([{"role": "user", "content": 5}], "content is a int"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "'image_url', not text"),
        ([{"role": "user", "content": "x", "weight": 0}], "only assistant turns take one"),
        ([{"role": "assistant", "content": "x", "weight": 2}], "weight 2; use 0"),
    ],
)
def test_bad_conversations_name_line_and_fix(tmp_path, messages, needle):
    folder = make_tokenizer(tmp_path / "tok", CHATML)
    result, _ = tokenize(tmp_path, folder, {"messages": messages})
    assert_one_line_error(result, 1, "in.jsonl:1:", needle)


def test_apply_chat_template_makes_turns_of_pairs(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", CHATML)
    pairs = [{"prompt": "Hi", "completion": "Hello there"}, {"prompt": "Bye", "completion": "Ciao"}]
    result, out = tokenize(tmp_path, folder, pairs, pairs[0], extra=("--apply_chat_template",))
    assert result.exit_code == 0, result.output
    assert runs(out, folder) == [
        chatml_expected(CONVERSATION, {1, 3}),
        chatml_expected(CONVERSATION[:2], {1}),
    ]


def test_apply_chat_template_refuses_pair_packing_boundary(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", CHATML)
    result, _ = tokenize(
        tmp_path,
        folder,
        {"prompt": "Q", "completion": "A"},
        extra=("--apply-chat-template", "--packing-boundary", "prompt_completion_pair"),
    )
    assert result.exit_code == 2 and "one article" in result.stderr


# --- rendering as transformers does --------------------------------------------------------------


def test_named_templates_and_tool_use(tmp_path):
    named = [
        {
            "name": "default",
            "template": "{%- for m in messages %}{{- 'D:' + m.content }}{% endfor %}",
        },
        {
            "name": "tool_use",
            "template": "{{- 'T:' + tools[0].name }}{%- for m in messages %}{{- m.content }}{% endfor %}",
        },
    ]
    folder = make_tokenizer(tmp_path / "tok", named)
    line = {"messages": [{"role": "assistant", "content": "x"}]}
    with_tools = {**line, "tools": [{"name": "calc"}]}
    _, out = tokenize(tmp_path, folder, line, with_tools)
    rows = runs(out, folder)
    assert rows[0][0] == ("prompt", "D:") and rows[1][0] == ("prompt", "T:calc")
    _, out = tokenize(tmp_path, folder, with_tools, extra=("--chat-template-name", "default"))
    assert runs(out, folder)[0][0] == ("prompt", "D:")
    result, _ = tokenize(tmp_path, folder, line, extra=("--chat-template-name", "nope"))
    assert_one_line_error(result, 1, "no chat template named 'nope'", "'default', 'tool_use'")


def test_globals_filters_and_special_tokens_match_transformers(tmp_path, monkeypatch):
    template = (
        "{{- bos_token + eos_token + pad_token }}"
        "{{- strftime_now('%Y-%m-%d') }}"
        "{{- {'a': '<é>'} | tojson }}{{- [1] | tojson(indent=1) }}"
        "{%- for m in messages %}{%- if loop.index > 1 %}{%- break %}{%- endif %}"
        "{{- m.content }}{%- endfor %}"
    )
    folder = make_tokenizer(tmp_path / "tok", template)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    line = {"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}
    _, out = tokenize(tmp_path, folder, line)
    prefix = '<|begin_of_text|><|im_end|><|endoftext|>1970-01-01{"a": "<é>"}[\n 1\n]'
    assert runs(out, folder) == [
        [("prompt", prefix), ("completion", "x"), ("separator", "<|im_end|>")]
    ]


def test_raise_exception_is_a_line_error_naming_both_files(tmp_path):
    template = (
        "{%- for m in messages %}\n"
        "{%- if m.role == 'tool' %}\n"
        "{{- raise_exception('no tools here') }}\n"
        "{%- endif %}{{- m.content }}{%- endfor %}"
    )
    folder = make_tokenizer(tmp_path / "tok", template)
    ok = {"messages": [{"role": "assistant", "content": "x"}]}
    bad = {"messages": [{"role": "tool", "content": "x"}]}
    result, _ = tokenize(tmp_path, folder, ok, bad)
    assert_one_line_error(
        result,
        1,
        "in.jsonl:2:",
        "refused the conversation: no tools here",
        "(chat_template) line 3",
    )
    rejects = tmp_path / "rejects.jsonl"
    result, _ = tokenize(tmp_path, folder, ok, bad, extra=("--skip-bad-lines", rejects))
    assert result.exit_code == 0 and json.loads(result.stdout)["lines_rejected"] == 1


def test_template_syntax_error_names_file_and_line(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", CHATML)
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}\n{{ m.content }\n{% endfor %}")
    result, _ = tokenize(
        tmp_path, folder, {"messages": CONVERSATION}, extra=("--chat-template", broken)
    )
    assert_one_line_error(result, 1, f"{broken}:2:", "--chat-template")


def test_a_tokenizer_without_template_is_one_line(tmp_path):
    result, _ = tokenize(tmp_path, CODON_VOCAB, {"messages": CONVERSATION})
    assert_one_line_error(result, 1, "has no chat template", "--chat-template FILE.jinja")


def test_chat_template_file_overrides_the_tokenizers(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", None)
    template = tmp_path / "chatml.jinja"
    template.write_text(CHATML)
    _, out = tokenize(
        tmp_path, folder, {"messages": CONVERSATION}, extra=("--chat-template", template)
    )
    assert runs(out, folder) == [chatml_expected(CONVERSATION, {1, 3})]


# --- separators, seams, turns that never end, conversations that learn nothing ------------------


def test_a_rendering_not_ending_in_the_eos_gets_one(tmp_path):
    template = "{%- for m in messages %}{{- m.role + ': ' + m.content + '\\n' }}{%- endfor %}"
    folder = make_tokenizer(tmp_path / "tok", template)
    _, out = tokenize(tmp_path, folder, {"messages": CONVERSATION[:2]})
    assert runs(out, folder) == [
        [
            ("prompt", "user: Hi\nassistant:"),
            ("completion", " Hello there\n"),  # " H" is one token: a seam, learned
            ("separator", "<|im_end|>"),
        ]
    ]


def test_seams_are_counted_reported_and_capped(tmp_path):
    template = (
        "{%- for m in messages %}{{- m.role + ': ' + m.content + '<|im_end|>' }}{%- endfor %}"
    )
    folder = make_tokenizer(tmp_path / "tok", template)
    report, ledger = tmp_path / "seams.jsonl", tmp_path / "ledger.jsonl"
    line = {"messages": CONVERSATION}
    result, out = tokenize(
        tmp_path, folder, line, extra=("--seam-report", report, "--ledger", ledger)
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["seams"] == 1 and metrics["conversations_with_seams"] == 1
    assert [json.loads(x) for x in report.read_text().splitlines()] == [
        {
            "input": str(tmp_path / "in.jsonl"),
            "line": 1,
            # "user: Hi" is 7 tokens (" H" merges), then <|im_end|> and "assistant:".
            "token": 7 + 1 + 10,
            "id": 256,  # " H": the one merge, after the 256 single bytes
            "text": " H",
            "types": ["prompt", "completion"],
            "type": "completion",
        }
    ]
    assert json.loads(ledger.read_text())["seams"] == 1
    for path in (out, report, ledger):
        path.unlink()
    result, _ = tokenize(
        tmp_path,
        folder,
        line,
        extra=("--max-seams", 0, "--seam-report", report, "--ledger", ledger),
    )
    assert_one_line_error(result, 1, "more than --max-seams 0", "in.jsonl:1 token 18")
    assert not out.exists() and not report.exists() and not ledger.exists()


def test_turns_that_never_learn_to_end_are_counted(tmp_path):
    # The generation block leaves out <|im_end|>: only the last turn ends (in the separator).
    template = CHATML_MARKED.replace(
        "{{- message['content'] + '<|im_end|>' }}", "{{- message['content'] }}"
    ).replace("{{- '\\n' }}", "{{- '<|im_end|>\\n' }}")
    folder = make_tokenizer(tmp_path / "tok", template)
    ledger = tmp_path / "ledger.jsonl"
    result, _ = tokenize(
        tmp_path, folder, {"messages": CONVERSATION}, {"messages": CONVERSATION[:2]},
        extra=("--ledger", ledger),
    )  # fmt: skip
    assert json.loads(result.stdout)["conversations_with_open_turns"] == 1
    assert [json.loads(x)["open_turns"] for x in ledger.read_text().splitlines()] == [1, 0]


def test_conversations_learning_nothing_are_skipped_or_kept(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", CHATML)
    silent = [dict(m) for m in CONVERSATION]
    for m in silent[1::2]:
        m["weight"] = 0
    ledger = tmp_path / "ledger.jsonl"
    lines = ({"messages": CONVERSATION}, {"messages": silent})
    result, _ = tokenize(tmp_path, folder, *lines, extra=("--ledger", ledger))
    metrics = json.loads(result.stdout)
    assert metrics["conversations_learning_nothing"] == 1 and metrics["rows"] == 1
    records = [json.loads(x) for x in ledger.read_text().splitlines()]
    assert (records[1]["status"], records[1]["reason"]) == ("dropped", "prompt_only")
    result, out = tokenize(
        tmp_path, folder, *lines, extra=("--ledger", ledger, "--keep-prompt-only-sequences")
    )
    records = [json.loads(x) for x in ledger.read_text().splitlines()]
    assert records[1]["status"] == "packed" and records[1]["completion_tokens"] == 0
    assert runs(out, folder)[1] == chatml_expected(CONVERSATION, set())


def test_conversations_pack_like_articles(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", CHATML)
    source = write_lines(tmp_path / "in.jsonl", *[{"messages": CONVERSATION[:2]}] * 3)
    out, ledger = tmp_path / "out.h5", tmp_path / "ledger.jsonl"
    length = 70  # two 33-token conversations fit in a row, three do not
    result = invoke(
        "tokenize", source, "-o", out, "--tokenizer", folder, "--max-seq-length", length,
        "--packing", "greedy::drop", "--ledger", ledger, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in ledger.read_text().splitlines()]
    assert [r["rows"][0][:2] for r in records] == [[0, 0], [0, records[0]["tokens"]], [1, 0]]
    assert all(r["tokens"] == 33 and r["completion_tokens"] == len("Hello there") for r in records)


def test_batches_of_any_size_give_the_same_shard(tmp_path):
    from tests.helpers import digest
    from tokentype_cli.tokenize.options import TokenizeOptions
    from tokentype_cli.tokenize.pipeline import tokenize_files
    from tokentype_cli.tokenizer_loader import load_tokenizer

    folder = make_tokenizer(tmp_path / "tok", CHATML)
    records = [{"messages": CONVERSATION[: 2 * (1 + i % 2)]} for i in range(7)]
    source = write_lines(tmp_path / "in.jsonl", *records, {"prompt": "p", "completion": "c"})
    loaded = load_tokenizer(folder)
    options = TokenizeOptions(seq_len=64)
    digests = set()
    for batch_lines in (1, 3, 100):
        out = tmp_path / f"out{batch_lines}.h5"
        tokenize_files([str(source)], out, loaded, options, batch_lines=batch_lines)
        digests.add(digest(out))
    assert len(digests) == 1


def test_a_message_the_template_skips_learns_nothing(tmp_path):
    template = (
        "{%- for m in messages %}{%- if loop.index > 2 %}{%- break %}{%- endif %}"
        "{{- m.role + ':' + m.content + '<|im_end|>' }}{%- endfor %}"
    )
    folder = make_tokenizer(tmp_path / "tok", template)
    result, out = tokenize(tmp_path, folder, {"messages": CONVERSATION})
    assert result.exit_code == 0, result.output
    assert runs(out, folder) == [
        [
            ("prompt", "user:Hi<|im_end|>assistant:"),
            ("completion", "Hello there"),
            ("separator", "<|im_end|>"),
        ]
    ]


def test_an_assistant_message_written_outside_the_loop_is_attributed(tmp_path):
    template = (
        "{%- for m in messages[:-1] %}{{- m.role + ':' + m.content + '<|im_end|>' }}{%- endfor %}"
        "{{- 'assistant:' + messages[-1].content + '<|im_end|>' }}"
    )
    folder = make_tokenizer(tmp_path / "tok", template)
    result, out = tokenize(tmp_path, folder, {"messages": CONVERSATION})
    assert result.exit_code == 0, result.output
    assert runs(out, folder) == [
        [
            ("prompt", "user:Hi<|im_end|>assistant:"),
            ("completion", "Hello there<|im_end|>"),
            ("prompt", "user:Bye<|im_end|>assistant:"),
            ("completion", "Ciao"),
            ("separator", "<|im_end|>"),
        ]
    ]


def test_byte_places_and_character_offsets_type_alike(tmp_path, monkeypatch):
    """The encoder places byte-level tokens by bytes; the tokenizer's own offsets must agree."""
    from tests.helpers import digest
    from tokentype_cli.tokenize import encode

    template = (
        "{%- for m in messages %}{{- m.role + ': ' + m.content + '<|im_end|>' }}{%- endfor %}"
    )
    folder = make_tokenizer(tmp_path / "tok", template)
    messages = [
        {"role": "user", "content": "Café? 東京 🙂"},
        {"role": "assistant", "content": "Hé 🙂 Hello"},
        {"role": "user", "content": "ok"},
        {"role": "assistant", "content": "東京 é"},
    ]
    report = tmp_path / "seams.jsonl"
    results = []
    for table in (True, False):
        if not table:
            monkeypatch.setattr(encode, "byte_lengths", lambda tokenizer: None)
        result, out = tokenize(
            tmp_path, folder, {"messages": messages}, extra=("--seam-report", report)
        )
        assert result.exit_code == 0, result.output
        results.append((digest(out), report.read_text(), runs(out, folder)))
        out.unlink()
    assert results[0] == results[1]
    assert results[0][2] == [
        [
            ("prompt", "user: Café? 東京 🙂<|im_end|>assistant:"),
            ("completion", " Hé 🙂 Hello<|im_end|>"),
            ("prompt", "user: ok<|im_end|>assistant: "),  # " " stays a token of its own
            ("completion", "東京 é"),
            ("separator", "<|im_end|>"),
        ]
    ]


def test_apply_chat_template_reads_conversation_lines_as_they_are(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", CHATML)
    lines = ({"messages": CONVERSATION[:2]}, {"prompt": "Hi", "completion": ""})
    result, out = tokenize(tmp_path, folder, *lines, extra=("--apply-chat-template",))
    assert result.exit_code == 0, result.output
    assert runs(out, folder) == [chatml_expected(CONVERSATION[:2], {1})]
    metrics = json.loads(result.stdout)
    assert metrics["conversations"] == 1 and metrics["pairs_skipped_prompt_only"] == 1


def test_a_tool_call_turn_learns_its_call(tmp_path):
    template = """\
{%- for m in messages %}
    {{- '<|im_start|>' + m.role + '\\n' }}
    {%- if m.content %}{{- m.content }}{%- endif %}
    {%- for call in m.tool_calls or [] %}{{- '<tool>' + call | tojson + '</tool>' }}{%- endfor %}
    {{- '<|im_end|>\\n' }}
{%- endfor %}
"""
    folder = make_tokenizer(tmp_path / "tok", template)
    call = {"name": "add", "arguments": {"a": 1}}
    messages = [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "2"},
        {"role": "assistant", "content": "2"},
    ]
    _, out = tokenize(tmp_path, folder, {"messages": messages})
    assert runs(out, folder) == [
        [
            ("prompt", "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n"),
            ("completion", '<tool>{"name": "add", "arguments": {"a": 1}}</tool><|im_end|>'),
            ("prompt", "\n<|im_start|>tool\n2<|im_end|>\n<|im_start|>assistant\n"),
            ("completion", "2"),
            ("separator", "<|im_end|>"),
        ]
    ]


# One assistant message written as two messages of the model's own: a reasoning one ended by
# <|eot_id|>, then a header and the answer ended by <|im_end|> (gpt-oss's harmony shape: its
# <|end|> is not where generation stops, <|return|> is). With `stop` as the inner marker
# instead, the message is two turns (DeepSeek-R1's tool calls, then an empty answer).
TWO_PART_TURN = """\
{%- for m in messages %}
    {%- if m.role == 'assistant' %}
        {{- '<|im_start|>assistant' }}
        {%- if m.thinking %}{{- ' think:' + m.thinking + STOP + '<|im_start|>assistant' }}{%- endif %}
        {{- ' say:' + m.content + '<|im_end|>' }}
    {%- else %}
        {{- '<|im_start|>' + m.role + ':' + m.content + '<|im_end|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant' }}{%- endif %}
"""


@pytest.mark.parametrize("stop", ["<|eot_id|>", "<|im_end|>"])
def test_a_header_inside_a_turn_is_learned_unless_after_its_end_marker(tmp_path, stop):
    folder = make_tokenizer(tmp_path / "tok", TWO_PART_TURN.replace("STOP", repr(stop)))
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "thinking": "c"},
        {"role": "user", "content": "d"},
        {"role": "assistant", "content": "e"},
    ]
    _, out = tokenize(tmp_path, folder, {"messages": messages})
    header = "<|im_start|>assistant"
    if stop == "<|eot_id|>":  # the model writes the second header: the turn is one
        first = [("completion", f" think:c<|eot_id|>{header} say:b<|im_end|>")]
    else:  # the model stopped at <|im_end|>: the second header is given to it
        first = [
            ("completion", " think:c<|im_end|>"),
            ("prompt", header),
            ("completion", " say:b<|im_end|>"),
        ]
    assert runs(out, folder) == [
        [
            ("prompt", f"<|im_start|>user:a<|im_end|>{header}"),
            *first,
            ("prompt", f"<|im_start|>user:d<|im_end|>{header}"),
            ("completion", " say:e"),
            ("separator", "<|im_end|>"),
        ]
    ]


# Command-R7B's shape: the generation prompt written after the loop whatever
# add_generation_prompt says, and the answer wrapped in special tags before the EOS.
PROMPT_ALWAYS = """\
{%- for m in messages %}
    {%- if m.role == 'assistant' %}
        {{- '<|im_start|>assistant<|start_header_id|>' + m.content + '<|end_header_id|><|im_end|>' }}
    {%- else %}
        {{- '<|im_start|>' + m.role + ':' + m.content + '<|im_end|>' }}
    {%- endif %}
{%- endfor %}
{{- '<|im_start|>assistant' }}
"""


def test_an_unconditional_generation_prompt_and_a_closing_tag_before_the_eos(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", PROMPT_ALWAYS)
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    _, out = tokenize(tmp_path, folder, {"messages": messages})
    header = "<|im_start|>assistant"  # given to the model: the tags and the EOS it writes
    assert runs(out, folder) == [
        [
            ("prompt", f"<|im_start|>user:a<|im_end|>{header}"),
            ("completion", "<|start_header_id|>b<|end_header_id|><|im_end|>"),
            ("prompt", f"<|im_start|>user:c<|im_end|>{header}"),
            ("completion", "<|start_header_id|>d<|end_header_id|><|im_end|>"),
            ("prompt", header),
            ("separator", "<|im_end|>"),
        ]
    ]
