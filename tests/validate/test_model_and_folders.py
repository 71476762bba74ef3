"""Separator runs, lengths beyond the model's positions, a dataset folder's own tokenizer, and
one finding per cause across files."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers import CODON_MODEL_CONFIG, CODON_VOCAB, invoke, write_pairs, write_shard


def _findings(result) -> dict[str, dict]:
    data = json.loads(result.stdout)
    return {f["check"]: f for file in data["files"] for f in file["findings"]}


def test_a_row_ending_in_many_separators_is_a_finding(tmp_path):
    # 41 empty articles: padding typed 3, the classic mistake of types written by hand.
    ids = [9, 5, 6, 10, 7, 8, 2] + [2] * 41
    types = [0, 0, 0, 1, 1, 1, 3] + [3] * 41
    shard = write_shard(tmp_path / "s.h5", [ids, ids[:7] + [2] * 41], [types, types])
    result = invoke("validate", shard, "--json")
    finding = _findings(result)["separator-run"]
    assert finding["severity"] == "warning" and finding["count"] == 2
    assert "longest run: 42" in finding["message"]
    assert invoke("validate", shard, "--strict", "-q").exit_code == 1


def test_one_separator_per_article_is_no_run(tmp_path):
    shard = write_shard(tmp_path / "s.h5", [[9, 2, 10, 2, 69]], [[1, 3, 1, 3, 2]])
    assert "separator-run" not in _findings(invoke("validate", shard, "--json"))


def _tokenizer_folder(tmp_path, positions: int):
    folder = tmp_path / "tok"
    folder.mkdir()
    shutil.copy(CODON_VOCAB, folder / "tokenizer.json")
    (folder / "config.json").write_text(
        json.dumps({"model_type": "llama", "n_positions": positions})
    )
    return folder


def test_max_seq_length_beyond_the_models_positions_warns_in_tokenize_and_validate(tmp_path):
    folder = _tokenizer_folder(tmp_path, 8)
    source = write_pairs(tmp_path / "in.jsonl", 5)
    out = tmp_path / "out.h5"
    result = invoke("tokenize", source, "-o", out, "--tokenizer", folder, "--max-seq-length", 16)
    assert result.exit_code == 0, result.output
    assert "warning: --max-seq-length 16 is longer than the model's 8 positions" in result.stderr
    assert "n_positions" in result.stderr
    fits = invoke("tokenize", source, "-o", out, "--tokenizer", folder, "--max-seq-length", 8,
                  "--overwrite")  # fmt: skip
    assert "positions" not in fits.stderr
    checked = invoke("validate", tmp_path / "out.h5", "--tokenizer", folder, "--json",
                     "--max-seq-length", 16)  # fmt: skip
    finding = _findings(checked)["seq-length-beyond-model"]
    assert finding["severity"] == "warning" and "8 positions" in finding["message"]


@pytest.fixture
def codon_dataset(tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", 64)
    folder = tmp_path / "ds"
    result = invoke(
        "tokenize", source, "--dataset", folder, "--tokenizer", CODON_VOCAB, "--model-config",
        CODON_MODEL_CONFIG, "--max-seq-length", 8, "--train-files", 6, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return folder


def test_a_dataset_folder_is_checked_with_its_own_tokenizer(codon_dataset):
    # The folder's tokenizer knows ids up to 69: an id beyond it is found without --tokenizer.
    import h5py

    with h5py.File(codon_dataset / "train_1_of_6.hdf5", "r+") as handle:
        handle["input_ids"][0, 0] = 500
    result = invoke("validate", codon_dataset, "--json", "--ignore", "hash-mismatch")
    assert "token-id-out-of-vocab" in _findings(result)


def test_a_cause_in_many_files_is_one_finding_naming_the_files(codon_dataset):
    result = invoke("validate", codon_dataset, "--max-seq-length", 16)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert sum(" seq-length: " in line for line in lines) == 1
    named = next(line for line in lines if line.startswith("6 files: "))
    assert "train_1_of_6.hdf5" in named and "and 2 more" in named
    assert len(lines) < 20
