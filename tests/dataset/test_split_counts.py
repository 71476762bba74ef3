"""A ratio the reference's arithmetic turns into no file fails loudly, naming what gives one."""

from __future__ import annotations

import pytest

from tests.helpers import CODON_MODEL_CONFIG, CODON_VOCAB, invoke, write_pairs
from tokentype_cli.dataset.plan import plan_splits
from tokentype_cli.errors import OptionError


@pytest.mark.parametrize("train", [4, 8])
def test_a_dev_ratio_giving_no_dev_file_fails_naming_the_counts(train):
    with pytest.raises(OptionError) as error:
        plan_splits(0, train_files=train, dev_ratio=0.1)
    message = str(error.value)
    assert f"--dev-ratio 0.1 of {train} train files gives 0 dev files" in message
    assert "--train-files 9" in message and "--dev-files 1" in message
    assert plan_splits(0, train_files=9, dev_ratio=0.1).dev == 1


def test_the_same_for_test_and_the_references_silent_zero_on_request():
    with pytest.raises(OptionError, match="0 test files"):
        plan_splits(0, train_files=4, test_ratio=0.1)
    assert plan_splits(0, train_files=4, dev_ratio=0.1, accept_zero=True).dev == 0


def test_the_command_line_says_so_and_writes_nothing(tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", 40)
    args = [
        source, "--dataset", tmp_path / "ds", "--tokenizer", CODON_VOCAB, "--model-config",
        CODON_MODEL_CONFIG, "--max-seq-length", 8, "--train-files", 4, "--dev-ratio", 0.1, "-q",
    ]  # fmt: skip
    refused = invoke("tokenize", *args)
    assert refused.exit_code == 2 and "--dev-files 1" in refused.stderr
    assert not (tmp_path / "ds").exists()
    accepted = invoke("tokenize", *args, "--accept-zero-splits")
    assert accepted.exit_code == 0, accepted.output
    assert not list((tmp_path / "ds").glob("dev_*"))
