"""assign-types on a ChatML shard: the README's example runs, and the mistakes it invites warn."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT, SAMPLE_DATA, invoke, jsonl

CONVERSATION = {
    "messages": [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Ciao"},
    ]
}


@pytest.fixture
def chat_shard(tmp_path, conformance_dir):
    chatml = conformance_dir / "tokenizer-chatml"
    source = jsonl(tmp_path / "chat.jsonl", CONVERSATION, CONVERSATION)
    shard = tmp_path / "chat.h5"
    result = invoke("tokenize", source, "-o", shard, "--tokenizer", chatml, "--max-seq-length", 64)
    assert result.exit_code == 0, result.output
    return shard, chatml


def test_the_readme_chatml_example_runs(tmp_path):
    # As the README runs it: on the quick start's chat.h5 and chat-tok/.
    subprocess.run(
        [sys.executable, str(SAMPLE_DATA / "make_chat_tokenizer.py"),
         str(SAMPLE_DATA / "chat.jsonl"), str(tmp_path / "chat-tok")],
        check=True,
    )  # fmt: skip
    shard = tmp_path / "chat.h5"
    made = invoke(
        "tokenize", SAMPLE_DATA / "chat.jsonl", "-o", shard, "--max-seq-length", 64,
        "--tokenizer", tmp_path / "chat-tok", "--packing", "single::drop",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"tokentype assign-types chat\.h5 [^`]*?=prompt'", readme, re.S).group(0)
    args = re.findall(r"'[^']*'|\S+", command.replace("\\\n", " "))[1:]
    args = [a.strip("'") for a in args if a != "\\"]
    args = [str(tmp_path / a) if a in ("chat.h5", "chat-tok/") else a for a in args]
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rules"][0]["articles_not_matched"] == 0 and data["warnings"] == []


def test_separators_at_every_turn_end_and_a_rule_matching_nothing_warn(chat_shard):
    shard, chatml = chat_shard
    result = invoke(
        "assign-types", shard, "--tokenizer", chatml, "--overwrite", "--dry-run",
        "--rule", 'between:"<|user|>" .. "<|assistant|>"=prompt',
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 2
    assert "places 8 separators where the file has 2" in warnings[0]
    assert "--from-existing" in warnings[0]
    assert "matched no article" in warnings[1] and "--explain" in warnings[1]
