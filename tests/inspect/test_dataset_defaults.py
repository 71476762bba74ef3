"""inspect on a dataset folder decodes with the folder's own tokenizer/, and its HTML report
charts the ledger kept beside the folder."""

from __future__ import annotations

from tests.helpers import CODON_MODEL_CONFIG, CODON_VOCAB, invoke, write_pairs


def _dataset(tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", 20)
    folder = tmp_path / "ds"
    result = invoke(
        "tokenize", source, "--dataset", folder, "--tokenizer", CODON_VOCAB, "--model-config",
        CODON_MODEL_CONFIG, "--max-seq-length", 8, "--train-files", 2, "-q",
        "--ledger", tmp_path / "ds.ledger.jsonl",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return folder


def test_rows_of_a_dataset_folder_are_decoded_with_its_tokenizer(tmp_path):
    folder = _dataset(tmp_path)
    for path in (folder, folder / "train_1_of_2.hdf5"):
        result = invoke("inspect", path, "--rows", "0", "--color", "never")
        assert result.exit_code == 0, result.output
        assert any(codon in result.stdout for codon in ("ATG", "GAA", "GCC", "GGC", "GAC"))


def test_the_html_report_finds_the_folders_ledger(tmp_path):
    folder = _dataset(tmp_path)
    page = tmp_path / "report.html"
    result = invoke("inspect", folder, "--html", page, "-q")
    assert result.exit_code == 0, result.output
    assert "ds.ledger.jsonl" in page.read_text()
