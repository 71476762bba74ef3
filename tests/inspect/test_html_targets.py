"""`inspect --html` never writes onto what it reads: the shard, a shard of the folder, the ledger."""

from __future__ import annotations

import pytest

from tests.helpers import (
    CODON_MODEL_CONFIG,
    CODON_VOCAB,
    assert_one_line_error,
    digest,
    invoke,
    write_pairs,
)


@pytest.fixture
def made(tmp_path):
    source = write_pairs(tmp_path / "in.jsonl", 40)
    shard, ledger = tmp_path / "s.h5", tmp_path / "s.ledger.jsonl"
    common = ("--tokenizer", CODON_VOCAB, "--max-seq-length", 8, "--packing", "single::drop")
    assert invoke("tokenize", source, "-o", shard, "--ledger", ledger, *common).exit_code == 0
    folder = tmp_path / "ds"
    result = invoke(
        "tokenize", source, "--dataset", folder, "--model-config", CODON_MODEL_CONFIG,
        "--train-files", 2, *common,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return shard, ledger, folder


def test_html_onto_its_own_inputs_is_refused(made):
    shard, ledger, folder = made
    cases = [
        ((shard,), shard, "is the shard it reads"),
        ((shard,), ledger, "is the ledger"),
        ((shard, "--ledger", ledger), ledger, "is the ledger"),
        ((folder,), folder / "train_1_of_2.hdf5", "is the shard train_1_of_2.hdf5 it reads"),
        ((folder,), folder / "metadata.yaml", "is the folder's metadata.yaml"),
    ]
    for args, target, why in cases:
        before = digest(target)
        result = invoke("inspect", *args, "--html", target)
        assert_one_line_error(result, 2, f"--html {target} {why}")
        assert digest(target) == before
