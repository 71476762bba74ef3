"""ShareGPT and Alpaca records, role mapping and unknown roles, in JSONL (Parquet rows take the same
path: tests/test_input_parquet.py)."""

from __future__ import annotations

import json

import h5py
import pytest

from tests.helpers import (
    CHATML,
    CODON_VOCAB,
    assert_one_line_error,
    invoke,
    make_tokenizer,
    write_lines,
)

MESSAGES = [
    {"role": "system", "content": "Be brief"},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello"},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "Ciao"},
]
SHAREGPT_TURNS = [
    {"from": "system", "value": "Be brief"},
    {"from": "human", "value": "Hi"},
    {"from": "gpt", "value": "Hello"},
    {"from": "user", "value": "Bye"},
    {"from": "assistant", "value": "Ciao"},
]


@pytest.fixture
def folder(tmp_path):
    return make_tokenizer(tmp_path / "tok", CHATML)


def run(tmp_path, tokenizer, *records, extra=(), name="in.jsonl"):
    source = write_lines(tmp_path / name, *records)
    out = tmp_path / f"{name}.h5"
    result = invoke(
        "tokenize", source, "-o", out, "--tokenizer", tokenizer, "--max-seq-length", 96,
        "--packing", "single::drop", "--json", "--overwrite", *extra,
    )  # fmt: skip
    return result, out


def arrays(path):
    with h5py.File(path, "r") as shard:
        return shard["input_ids"][:].tolist(), shard["token_type_ids"][:].tolist()


# --- ShareGPT ---------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [(), ("--input-format", "sharegpt")])
def test_sharegpt_is_the_messages_conversation(tmp_path, folder, extra):
    _, a = run(tmp_path, folder, {"messages": MESSAGES}, name="messages.jsonl")
    result, b = run(tmp_path, folder, {"conversations": SHAREGPT_TURNS}, extra=extra)
    assert result.exit_code == 0, result.output
    assert arrays(a) == arrays(b)
    assert json.loads(result.stdout)["conversations"] == 1


def test_a_top_level_system_and_role_content_conversations(tmp_path, folder):
    _, a = run(tmp_path, folder, {"messages": MESSAGES}, name="messages.jsonl")
    sharegpt = {"system": "Be brief", "conversations": SHAREGPT_TURNS[1:]}
    result, b = run(tmp_path, folder, sharegpt, name="system.jsonl")
    assert result.exit_code == 0, result.output
    assert arrays(a) == arrays(b)
    result, c = run(tmp_path, folder, {"conversations": MESSAGES}, name="roles.jsonl")
    assert result.exit_code == 0, result.output
    assert arrays(a) == arrays(c)


def test_function_call_learns_and_observation_is_a_tool_message(tmp_path, folder):
    turns = [
        {"from": "human", "value": "Weather?"},
        {"from": "function_call", "value": '{"name": "weather"}'},
        {"from": "observation", "value": "sunny"},
        {"from": "gpt", "value": "Sunny"},
    ]
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": '{"name": "weather"}'},
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": "Sunny"},
    ]
    _, a = run(tmp_path, folder, {"messages": messages}, name="messages.jsonl")
    result, b = run(tmp_path, folder, {"conversations": turns})
    assert result.exit_code == 0, result.output
    assert arrays(a) == arrays(b)


def test_an_unknown_role_names_the_line_and_the_roles_seen(tmp_path, folder):
    turns = [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "Hello"}]
    good = {"conversations": SHAREGPT_TURNS}
    result, out = run(tmp_path, folder, good, {"conversations": turns})
    assert_one_line_error(
        result, 1, "in.jsonl:2: unknown role 'bot' (roles seen: human, bot)", "--role-map bot="
    )
    assert not out.exists()
    mapped, _ = run(
        tmp_path, folder, good, {"conversations": turns}, extra=("--role-map", "bot=gpt")
    )
    assert mapped.exit_code == 2 and "'gpt' is not a chat role" in mapped.stderr
    mapped, out = run(
        tmp_path, folder, good, {"conversations": turns}, extra=("--role-map", "bot=assistant")
    )
    assert mapped.exit_code == 0, mapped.output
    assert json.loads(mapped.stdout)["conversations"] == 2


def test_a_gpt_role_in_messages_is_an_error_not_silent_prompt(tmp_path, folder):
    messages = [{"role": "user", "content": "Hi"}, {"role": "gpt", "content": "Hello"}]
    result, out = run(tmp_path, folder, {"messages": messages})
    assert_one_line_error(result, 1, "in.jsonl:1: unknown role 'gpt' (roles seen: user, gpt)")
    result, out = run(tmp_path, folder, messages, extra=("--role-map", "gpt=assistant"))
    assert result.exit_code == 0, result.output
    _, expected = run(tmp_path, folder, {"messages": [messages[0], {**messages[1], "role": "assistant"}]},
                      name="expected.jsonl")  # fmt: skip
    assert arrays(out) == arrays(expected)


def test_role_map_to_itself_passes_a_role_the_template_knows(tmp_path, folder):
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "observation", "content": "data"},
        {"role": "assistant", "content": "Hello"},
    ]
    result, _ = run(tmp_path, folder, {"messages": messages})
    assert result.exit_code == 1 and "unknown role 'observation'" in result.stderr
    result, out = run(tmp_path, folder, {"messages": messages}, extra=("--role-map", "observation=observation"))  # fmt: skip
    assert result.exit_code == 0, result.output
    with h5py.File(out) as shard:
        assert shard["input_ids"].shape[0] == 1


def test_skip_bad_lines_sets_unknown_roles_aside(tmp_path, folder):
    bad = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "Yo"}]}
    rejects = tmp_path / "rejects.jsonl"
    result, _ = run(tmp_path, folder, {"conversations": SHAREGPT_TURNS}, bad,
                    extra=("--skip-bad-lines", rejects))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in rejects.read_text().splitlines()] == [bad]


@pytest.mark.parametrize(
    "value, says",
    [("bot", "write FROM=TO"), ("=user", "write FROM=TO"), ("a=b", "'b' is not a chat role")],
)
def test_a_malformed_role_map_is_a_usage_error(tmp_path, folder, value, says):
    result, _ = run(tmp_path, folder, {"messages": MESSAGES}, extra=("--role-map", value))
    assert result.exit_code == 2 and says in result.stderr


def test_sharegpt_format_refuses_a_line_without_conversations(tmp_path, folder):
    result, _ = run(tmp_path, folder, {"prompt": "a", "completion": "b"},
                    extra=("--input-format", "sharegpt"))  # fmt: skip
    assert_one_line_error(result, 1, 'in.jsonl:1: no "conversations" field')


# --- Alpaca -----------------------------------------------------------------------------------


def test_alpaca_is_a_pair_through_its_templates(tmp_path):
    records = [
        {"instruction": "GAA", "input": "GGC", "output": "ATG"},
        {"instruction": "GCC", "input": "", "output": "ATC"},
        {"instruction": "GCC", "output": "GAC"},
    ]
    pairs = [
        {"prompt": "GAA\n\nGGC", "completion": "ATG"},
        {"prompt": "GCC", "completion": "ATC"},
        {"prompt": "GCC", "completion": "GAC"},
    ]
    _, expected = run(tmp_path, CODON_VOCAB, *pairs, name="pairs.jsonl")
    for extra in ((), ("--input-format", "alpaca")):
        result, out = run(tmp_path, CODON_VOCAB, *records, extra=extra)
        assert result.exit_code == 0, result.output
        assert arrays(out) == arrays(expected)
    custom = ("--alpaca-template", "{input} {instruction}", "--alpaca-template-no-input", "ATC {instruction}")  # fmt: skip
    result, out = run(tmp_path, CODON_VOCAB, *records, extra=custom)
    assert result.exit_code == 0, result.output
    pairs = [
        {"prompt": "GGC GAA", "completion": "ATG"},
        {"prompt": "ATC GCC", "completion": "ATC"},
        {"prompt": "ATC GCC", "completion": "GAC"},
    ]
    _, expected = run(tmp_path, CODON_VOCAB, *pairs, name="custom.jsonl")
    assert arrays(out) == arrays(expected)


def test_alpaca_with_chat_template_is_a_user_and_an_assistant_turn(tmp_path, folder):
    record = {"instruction": "Add", "input": "1 2", "output": "3"}
    messages = [{"role": "user", "content": "Add\n\n1 2"}, {"role": "assistant", "content": "3"}]
    _, expected = run(tmp_path, folder, {"messages": messages}, name="messages.jsonl")
    result, out = run(tmp_path, folder, record, extra=("--apply-chat-template",))
    assert result.exit_code == 0, result.output
    assert arrays(out) == arrays(expected)


def test_a_record_with_prompt_and_completion_keys_stays_a_pair(tmp_path):
    # instruction/output beside the completion key: not unambiguous, so the pair reads as before.
    record = {"instruction": "x", "output": "y", "prompt": "GAA", "completion": "ATG"}
    _, expected = run(tmp_path, CODON_VOCAB, {"prompt": "GAA", "completion": "ATG"}, name="p.jsonl")
    result, out = run(tmp_path, CODON_VOCAB, record)
    assert result.exit_code == 0, result.output
    assert arrays(out) == arrays(expected)


def test_alpaca_errors_name_the_line_and_field(tmp_path):
    result, _ = run(tmp_path, CODON_VOCAB, {"instruction": "GAA", "output": 3})
    assert_one_line_error(result, 1, "in.jsonl:1: field 'output' is int, not a string")
    result, _ = run(tmp_path, CODON_VOCAB, {"instruction": "GAA"}, extra=("--input-format", "alpaca"))  # fmt: skip
    assert_one_line_error(result, 1, "in.jsonl:1: no 'output' field")


@pytest.mark.parametrize(
    "flag, template, says",
    [
        ("--alpaca-template", "{question}", "names 'question'"),
        ("--alpaca-template", "{input}", "has no {instruction}"),
        ("--alpaca-template-no-input", "{instruction} {input}", "names 'input'"),
        ("--alpaca-template", "{instruction", "expected '}'"),
    ],
)
def test_a_bad_alpaca_template_is_refused_before_reading(tmp_path, flag, template, says):
    result, _ = run(tmp_path, CODON_VOCAB, {"instruction": "GAA", "output": "ATG"}, extra=(flag, template))  # fmt: skip
    assert_one_line_error(result, 2, flag, says)
