"""A run that writes no row names the real cause with its count, and keeps the ledger."""

from __future__ import annotations

import json

from tests.helpers import CODON_VOCAB, invoke, jsonl


def _tokenize(tmp_path, *records, extra=()):
    source = jsonl(tmp_path / "in.jsonl", *records)
    out, ledger = tmp_path / "out.h5", tmp_path / "out.ledger.jsonl"
    result = invoke(
        "tokenize", source, "-o", out, "--tokenizer", CODON_VOCAB, "--ledger", ledger, *extra
    )
    assert result.exit_code == 1
    assert not out.exists()
    return result.stderr.strip().splitlines()[-1], ledger


def test_every_article_longer_than_a_row_under_drop(tmp_path):
    long = {"prompt": "GAA " * 10, "completion": "ATG " * 10}
    last, ledger = _tokenize(
        tmp_path, long, long, extra=("--max-seq-length", 8, "--packing", "single::drop")
    )
    assert "every one of the 2 articles is longer than --max-seq-length 8" in last
    assert "single::drop" in last and "--completion-key" not in last
    lines = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [(line["status"], line["reason"]) for line in lines] == [("dropped", "too_long")] * 2


def test_conversations_without_an_assistant_turn(tmp_path, conformance_dir):
    chatml = conformance_dir / "tokenizer-chatml"
    source = jsonl(
        tmp_path / "chat.jsonl",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ]
        },
    )
    result = invoke("tokenize", source, "-o", tmp_path / "o.h5", "--tokenizer", chatml)
    assert result.exit_code == 1, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert "none of the 1 conversations has a turn that learns" in last
    assert "--role-map FROM=assistant" in last


def test_every_pair_with_an_empty_completion(tmp_path):
    last, _ = _tokenize(
        tmp_path, {"prompt": "GAA", "completion": ""}, extra=("--max-seq-length", 8)
    )
    assert "every one of the 1 pairs has an empty completion" in last
