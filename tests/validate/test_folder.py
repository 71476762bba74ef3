"""`validate DIR` and `inspect DIR` on dataset folders: a valid folder passes, each damage is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tests.helpers import (
    CODON_VOCAB,
    EXAMPLE2_IDS,
    EXAMPLE2_TYPES,
    assert_one_line_error,
    invoke,
    write_shard,
)
from tokentype_cli.dataset.layout import (
    MANIFEST,
    METADATA,
    manifest_files,
    manifest_key,
    sha256_of,
    split_file_name,
)
from tokentype_cli.dataset.read import split_files
from tokentype_cli.validate.findings import FIXES, ValidateOptions
from tokentype_cli.validate.folder import check_dataset

SEQ_LEN = len(EXAMPLE2_IDS)
VOCAB = 70  # the codon vocabulary: ids 2..69
LLAMA = "<class 'transformers.models.llama.configuration_llama.LlamaConfig'>"


def rows(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` rows shaped like the document's example 2, each with its own codons."""
    rng = np.random.default_rng(seed)
    ids = np.tile(np.asarray(EXAMPLE2_IDS, np.int32), (count, 1))
    ids[:, :6] = rng.integers(5, 11, size=(count, 6))
    return ids, np.tile(np.asarray(EXAMPLE2_TYPES, np.int32), (count, 1))


def write_manifest(folder: Path) -> None:
    """sha256/files_metadata.json over every other file, as the writer makes it."""
    manifest = {}
    for path in manifest_files(folder):
        stat = path.stat()
        manifest[manifest_key(path.relative_to(folder))] = {
            "sha256": sha256_of(path),
            "size": stat.st_size,
            "modified_time": stat.st_mtime,
        }
    target = folder / MANIFEST
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(manifest, indent=2))


def edit_metadata(folder: Path, rehash: bool = True, **changes) -> None:
    """Set (or with None as the value of a `drop_` name, remove) metadata keys."""
    path = folder / METADATA
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if key.startswith("drop_"):
            del data[key.removeprefix("drop_")]
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    if rehash:
        write_manifest(folder)


def build_dataset(
    folder: Path, train=(3, 3, 2), dev=(2,), test_lines=(2,), **metadata_changes
) -> Path:
    """A folder as `tokenize --dataset` writes it: balanced shards, metadata, tokenizer, manifest."""
    folder.mkdir(parents=True)
    for split, counts in (("train", train), ("dev", dev)):
        for k, count in enumerate(counts, 1):
            ids, types = rows(count, seed=k + 10 * len(split))
            write_shard(folder / split_file_name(split, k, len(counts)), ids, types)
    if test_lines:
        (folder / "test_files").mkdir()
        for k, count in enumerate(test_lines, 1):
            line = json.dumps({"prompt": "GAA GGC GCC", "completion": "ATG ATC GAC"})
            (
                folder / "test_files" / split_file_name("test", k, len(test_lines), "jsonl")
            ).write_text((line + "\n") * count)
    (folder / "tokenizer").mkdir()
    shutil.copy(CODON_VOCAB, folder / "tokenizer" / "tokenizer.json")
    metadata = {
        "max_seq_length": SEQ_LEN,
        "token_type_ids": True,
        "vocab_size": VOCAB,
        "tokenizer_model_type": LLAMA,
        "number_of_training_files": len(train),
        "number_of_dev_files": len(dev),
        "number_of_test_files": len(test_lines),
        "max_batch_size_train": min(train),
        "max_batch_size_dev": min(dev) if dev else None,
        "train_sequences": sum(train),
        "dev_sequences": sum(dev),
        "seed": 0,
    }
    metadata.update(metadata_changes)
    (folder / METADATA).write_text(yaml.safe_dump(metadata, sort_keys=False))
    write_manifest(folder)
    return folder


@pytest.fixture
def dataset(tmp_path) -> Path:
    return build_dataset(tmp_path / "ds")


def run(folder: Path, *options):
    """`validate FOLDER --json`: (exit code, the folder's findings by check, every file's)."""
    result = invoke("validate", folder, "--json", *options)
    assert result.stderr == "", result.stderr
    data = json.loads(result.stdout)
    by_check: dict[str, dict] = {}
    for file in data["files"]:
        for finding in file["findings"]:
            by_check.setdefault(finding["check"], finding)
    return result.exit_code, by_check, data


# --- a valid folder ------------------------------------------------------------------------------


def test_a_valid_folder_passes_with_every_training_option(dataset):
    code, found, data = run(
        dataset,
        "--tokenizer",
        CODON_VOCAB,
        "--max-seq-length",
        SEQ_LEN,
        "--require-types",
        "--prompt-loss-weight",
        0,
        "--batch-size",
        2,
        "--workers",
        3,
        "--eval",
        "--model-vocab-size",
        VOCAB,
        "--strict",
    )
    assert (code, found) == (0, {})
    # The folder's own report first, then train 1..3 and dev 1, in numbering order.
    assert [Path(f["path"]).name for f in data["files"]] == [
        "ds",
        "train_1_of_3.hdf5",
        "train_2_of_3.hdf5",
        "train_3_of_3.hdf5",
        "dev_1_of_1.hdf5",
    ]


def test_text_report_names_the_folder_and_each_file(dataset):
    result = invoke("validate", dataset)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"{dataset}: ok (10 rows x {SEQ_LEN})"
    assert lines[1] == f"{dataset / 'train_1_of_3.hdf5'}: ok (3 rows x {SEQ_LEN})"
    assert lines[-1] == "5 files: 0 errors, 0 warnings"


def test_a_folder_without_dev_or_test_files_passes(tmp_path):
    folder = build_dataset(tmp_path / "ds", train=(2, 2), dev=(), test_lines=())
    assert run(folder)[:2] == (0, {})


def test_large_numbers_sort_by_number_not_by_name(tmp_path):
    folder = build_dataset(tmp_path / "ds", train=(1,) * 11, dev=())
    names = [f.path.name for f in split_files(folder)["train"]]
    assert names == [f"train_{k}_of_11.hdf5" for k in range(1, 12)]
    assert run(folder)[:2] == (0, {})


def test_the_library_returns_the_folder_report_then_each_shard(dataset):
    reports = check_dataset(dataset, ValidateOptions())
    assert [r.path.name for r in reports][:2] == ["ds", "train_1_of_3.hdf5"]
    assert reports[0].rows == 10 and reports[0].seq_len == SEQ_LEN
    assert all(not r.findings for r in reports)


# --- damaged folders: each names its problem -----------------------------------------------------


def remove(path: Path) -> None:
    path.unlink()


def rename(folder: Path, old: str, new: str) -> None:
    (folder / old).rename(folder / new)


def rewrite_train(folder: Path, counts: tuple[int, ...]) -> None:
    for path in folder.glob("train_*.hdf5"):
        path.unlink()
    for k, count in enumerate(counts, 1):
        write_shard(folder / split_file_name("train", k, len(counts)), *rows(count, seed=k))


def edit_manifest(folder: Path, change) -> None:
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def same_size_edit(folder: Path) -> None:
    path = folder / "test_files" / "test_1_of_1.jsonl"
    text = path.read_text()
    path.write_text(text.replace("GAA", "GGA", 1))
    assert len(path.read_text()) == len(text)


def other_hash(manifest: dict) -> None:
    entry = manifest["train_2_of_3.hdf5"]
    entry["sha256"] = "0" * 64


def widen(folder: Path) -> None:
    ids, types = rows(3, seed=1)
    pad = np.full((3, 1), 69, np.int32)
    (folder / "train_1_of_3.hdf5").unlink()
    write_shard(
        folder / "train_1_of_3.hdf5",
        np.hstack([ids, pad]),
        np.hstack([types, np.full((3, 1), 2, np.int32)]),
    )
    write_manifest(folder)


def without_types(folder: Path) -> None:
    path = folder / "dev_1_of_1.hdf5"
    ids, _ = rows(2, seed=31)
    path.unlink()
    write_shard(path, ids)
    write_manifest(folder)


def extra_shard(folder: Path) -> None:
    write_shard(folder / "train_old.hdf5", *rows(3, seed=9))
    write_manifest(folder)


def gap(folder: Path) -> None:
    rename(folder, "train_3_of_3.hdf5", "train_4_of_3.hdf5")
    write_manifest(folder)


def missing_then_rehash(folder: Path) -> None:
    remove(folder / "train_2_of_3.hdf5")
    write_manifest(folder)


def unbalanced(folder: Path) -> None:
    rewrite_train(folder, (5, 3, 3))
    edit_metadata(folder, max_batch_size_train=3)


def model_config(folder: Path, model_type: str) -> None:
    (folder / "tokenizer" / "config.json").write_text(json.dumps({"model_type": model_type}))
    write_manifest(folder)


def not_yaml(folder: Path) -> None:
    (folder / METADATA).write_text("max_seq_length: [11\n")
    write_manifest(folder)


# (id, damage, options, check expected, exit code)
DAMAGES = [
    ("missing file", lambda d: remove(d / "train_2_of_3.hdf5"), (), "missing-file", 1),
    ("missing file, manifest rebuilt", missing_then_rehash, (), "file-count", 1),
    ("missing file leaves the manifest stale", lambda d: remove(d / "dev_1_of_1.hdf5"), (), "manifest-extra", 1),
    ("extra shard", extra_shard, (), "extra-file", 1),
    ("extra shard not in manifest", lambda d: write_shard(d / "dev_2_of_1.hdf5", *rows(1, 5)), (), "not-in-manifest", 1),
    ("extra test file", lambda d: (d / "test_files" / "notes.txt").write_text("x\n"), (), "extra-file", 1),
    ("a gap in the numbering", gap, (), "missing-file", 1),
    ("edited value, manifest stale", lambda d: edit_metadata(d, False, number_of_training_files=4), (), "hash-mismatch", 1),
    ("edited file count", lambda d: edit_metadata(d, number_of_training_files=4), (), "file-count", 1),
    ("wrong type", lambda d: edit_metadata(d, max_seq_length=str(SEQ_LEN)), (), "metadata-type", 1),
    ("bool for int", lambda d: edit_metadata(d, number_of_dev_files=True), (), "metadata-type", 1),
    ("missing key", lambda d: edit_metadata(d, drop_vocab_size=None), (), "metadata-missing-key", 1),
    ("missing nullable key", lambda d: edit_metadata(d, drop_max_batch_size_dev=None), (), "metadata-missing-key", 1),
    ("not YAML", not_yaml, (), "metadata-invalid", 1),
    ("negative count", lambda d: edit_metadata(d, number_of_test_files=-1), (), "metadata-value", 1),
    ("model type not a class", lambda d: edit_metadata(d, tokenizer_model_type="llama"), (), "metadata-model-type", 1),
    ("model type not tokenizer/config.json's", lambda d: model_config(d, "gpt2"), (), "metadata-model-type", 0),
    ("token types false", lambda d: edit_metadata(d, token_type_ids=False), (), "metadata-token-types", 0),
    ("token types false, required", lambda d: edit_metadata(d, token_type_ids=False), ("--require-types",), "metadata-token-types", 1),
    ("token types promised, file lacks them", without_types, (), "metadata-token-types", 1),
    ("wrong hash", lambda d: edit_manifest(d, other_hash), (), "hash-mismatch", 1),
    ("same-size edit", same_size_edit, (), "hash-mismatch", 1),
    ("file missing from manifest", lambda d: edit_manifest(d, lambda m: m.pop(METADATA)), (), "not-in-manifest", 1),
    ("manifest lists a ghost", lambda d: edit_manifest(d, lambda m: m.update(ghost=m[METADATA])), (), "manifest-extra", 1),
    ("manifest entry malformed", lambda d: edit_manifest(d, lambda m: m.update({METADATA: "x"})), (), "manifest-invalid", 1),
    ("manifest not JSON", lambda d: (d / MANIFEST).write_text("{"), (), "manifest-invalid", 1),
    ("manifest missing", lambda d: remove(d / MANIFEST), (), "manifest-missing", 1),
    ("unbalanced train files", unbalanced, (), "unbalanced", 0),
    ("unbalanced train files, strict", unbalanced, ("--strict",), "unbalanced", 1),
    ("max_batch_size_train wrong", lambda d: edit_metadata(d, max_batch_size_train=3), (), "max-batch-size", 1),
    ("max_batch_size_dev null with dev files", lambda d: edit_metadata(d, max_batch_size_dev=None), (), "max-batch-size", 1),
    ("width is not max_seq_length", widen, (), "metadata-seq-length", 1),
    ("max_seq_length edited", lambda d: edit_metadata(d, max_seq_length=SEQ_LEN + 1), (), "metadata-seq-length", 1),
    ("ids beyond vocab_size", lambda d: edit_metadata(d, vocab_size=60), (), "metadata-vocab-size", 1),
    ("batch size too big", lambda d: None, ("--batch-size", 3), "batch-size", 1),
    ("workers more than train files", lambda d: None, ("--workers", 4), "workers", 1),
    ("model vocabulary too small", lambda d: None, ("--model-vocab-size", 69), "model-vocab-size", 1),
    ("run's max_seq_length", lambda d: None, ("--max-seq-length", SEQ_LEN + 1), "run-seq-length", 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "options", "check", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in DAMAGES],
)
def test_each_damage_is_named(dataset, damage, options, check, code):
    damage(dataset)
    exit_code, found, _ = run(dataset, *options)
    assert check in found, sorted(found)
    assert exit_code == code
    finding = found[check]
    assert finding["fix"] == FIXES[check]
    assert finding["message"].startswith(str(dataset))
    assert finding["severity"] == ("error" if code else "warning")


def test_at_least_a_dozen_distinct_checks_are_exercised():
    assert len({case[3] for case in DAMAGES}) >= 12
    assert all(case[3] in FIXES for case in DAMAGES)


def test_a_damage_with_the_manifest_rebuilt_names_only_its_own_checks(dataset):
    edit_metadata(dataset, max_batch_size_train=3)
    _, found, _ = run(dataset)
    assert sorted(found) == ["max-batch-size"]
    assert found["max-batch-size"]["message"] == (
        f"{dataset}: {METADATA}: max_batch_size_train is 3 but the fewest rows in a train file"
        " is 2 (train_3_of_3.hdf5)"
    )


def test_missing_and_extra_files_are_listed_with_counts(dataset):
    gap(dataset)
    _, found, _ = run(dataset)
    assert sorted(found) == ["extra-file", "missing-file"]
    assert found["missing-file"]["count"] == 1
    assert "train_3_of_3.hdf5" in found["missing-file"]["message"]
    assert "train_4_of_3.hdf5" in found["extra-file"]["message"]


def test_same_size_edit_is_caught_by_the_hash_and_says_so(dataset):
    same_size_edit(dataset)
    _, found, _ = run(dataset)
    assert sorted(found) == ["hash-mismatch"]
    message = found["hash-mismatch"]["message"]
    assert "test_files/test_1_of_1.jsonl (same size, another sha256)" in message


def test_ids_beyond_metadata_vocab_size_are_counted_per_file(dataset):
    edit_metadata(dataset, vocab_size=69)
    _, _, data = run(dataset)
    by_file = {Path(f["path"]).name: f["findings"] for f in data["files"]}
    assert by_file["ds"] == []
    (finding,) = by_file["train_1_of_3.hdf5"]
    with h5py.File(dataset / "train_1_of_3.hdf5") as shard:
        ids = shard["input_ids"][:]
    row, column = np.argwhere(ids >= 69)[0]
    assert finding["check"] == "metadata-vocab-size"
    assert (finding["count"], finding["row"], finding["column"]) == (
        int((ids >= 69).sum()),
        row,
        column,
    )
    assert f"vocab_size 69 of {dataset / METADATA}" in finding["message"]


def test_a_smaller_tokenizer_vocabulary_keeps_the_shard_check_name(dataset):
    _, found, _ = run(dataset, "--vocab-size", 60)
    assert "token-id-out-of-vocab" in found and "metadata-vocab-size" not in found


def test_eval_needs_dev_files(tmp_path):
    folder = build_dataset(tmp_path / "ds", dev=())
    assert run(folder)[:2] == (0, {})
    code, found, _ = run(folder, "--eval")
    assert code == 1 and sorted(found) == ["eval-without-dev"]


def test_max_batch_size_dev_must_be_null_without_dev_files(tmp_path):
    folder = build_dataset(tmp_path / "ds", dev=(), max_batch_size_dev=4)
    code, found, _ = run(folder)
    assert code == 1 and sorted(found) == ["max-batch-size"]


def test_training_options_without_a_dataset_folder_are_a_usage_error(tmp_path):
    shard = write_shard(tmp_path / "s.h5", *rows(2, 0))
    result = invoke("validate", shard, "--workers", 2)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "none of PATHS is one" in result.stderr


def test_a_plain_folder_of_shards_is_validated_as_before(tmp_path):
    write_shard(tmp_path / "a.h5", *rows(2, 0))
    code, found, data = run(tmp_path)
    assert (code, found) == (0, {})
    assert [Path(f["path"]).name for f in data["files"]] == ["a.h5"]


def test_a_shard_named_again_beside_its_folder_is_checked_once(dataset):
    _, _, data = run(dataset, dataset / "train_1_of_3.hdf5")
    assert len(data["files"]) == 5


# --- inspect DIR ---------------------------------------------------------------------------------


def test_inspect_shows_the_dataset_before_the_files(dataset):
    result = invoke("inspect", dataset)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        f"{dataset}  (dataset: 3 train, 1 dev, 1 test files)",
        "  train  3 files  8 rows  88 tokens  rows per file 3, 3, 2",
        "    prompt 24 (27.27%)  completion 24 (27.27%)  padding 32 (36.36%)  separator 8 (9.09%)",
        "  dev    1 file  2 rows  22 tokens  rows per file 2",
        "    prompt 6 (27.27%)  completion 6 (27.27%)  padding 8 (36.36%)  separator 2 (9.09%)",
        "  test   1 file  2 lines  lines per file 2",
    ]
    assert lines[6:10] == [
        "  metadata.yaml",
        f"    max_seq_length            {SEQ_LEN}",
        "    token_type_ids            true",
        f"    vocab_size                {VOCAB}",
    ]
    assert "    max_batch_size_dev        2" in lines
    # Then the folder's totals and each file, as for any folder of shards.
    folder = lines.index(f"{dataset}  (4 files)")
    assert lines[folder - 1] == ""
    headers = [line for line in lines[folder:] if line.startswith(f"{dataset}/")]
    assert headers == [
        str(dataset / name)
        for name in (
            "train_1_of_3.hdf5",
            "train_2_of_3.hdf5",
            "train_3_of_3.hdf5",
            "dev_1_of_1.hdf5",
        )
    ]


def test_inspect_json_adds_the_dataset_to_the_folder_summary(dataset):
    result = invoke("inspect", dataset, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert list(data)[:2] == ["path", "dataset"]
    assert data["path"] == str(dataset)
    splits = data["dataset"]["splits"]
    assert [f["rows"] for f in splits["train"]["files"]] == [3, 3, 2]
    assert splits["train"]["files"][0]["path"] == str(dataset / "train_1_of_3.hdf5")
    assert (splits["train"]["rows"], splits["train"]["seq_len"], splits["train"]["tokens"]) == (
        8,
        SEQ_LEN,
        88,
    )
    assert splits["train"]["token_types"]["separator"] == {"count": 8, "share": 8 / 88}
    assert splits["dev"]["rows"] == 2 and splits["dev"]["token_types"]["padding"]["count"] == 8
    assert splits["test"] == {
        "files": [{"path": str(dataset / "test_files" / "test_1_of_1.jsonl"), "lines": 2}],
        "lines": 2,
    }
    metadata = data["dataset"]["metadata"]
    assert metadata["number_of_training_files"] == 3 and metadata["max_batch_size_dev"] == 2
    # The folder summary's own keys stay as for any folder: totals, then each file.
    assert data["rows"] == 10 and data["token_types"]["separator"]["count"] == 10
    assert [Path(f["path"]).name for f in data["files"]] == [
        "train_1_of_3.hdf5",
        "train_2_of_3.hdf5",
        "train_3_of_3.hdf5",
        "dev_1_of_1.hdf5",
    ]


def test_inspect_orders_files_by_number_and_summarises_many_as_a_range(tmp_path):
    counts = (2,) * 7 + (1,) * 6
    folder = build_dataset(tmp_path / "ds", train=counts, dev=(), test_lines=())
    data = json.loads(invoke("inspect", folder, "--json").stdout)
    names = [Path(f["path"]).name for f in data["files"]]
    assert names == [f"train_{k}_of_13.hdf5" for k in range(1, 14)]
    assert data["dataset"]["splits"]["dev"] == {
        "files": [],
        "rows": 0,
        "seq_len": None,
        "tokens": 0,
        "token_types": None,
    }
    text = invoke("inspect", folder).stdout.splitlines()
    assert text[0] == f"{folder}  (dataset: 13 train files)"
    assert text[1] == "  train  13 files  20 rows  220 tokens  rows per file 1..2"
    assert text[3:5] == ["  dev    0 files", "  test   0 files"]


def test_inspect_a_split_without_types_says_so(dataset):
    without_types(dataset)
    result = invoke("inspect", dataset)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[4] == "    token types: none in some file (run tokentype validate)"
    assert (
        json.loads(invoke("inspect", dataset, "--json").stdout)["dataset"]["splits"]["dev"][
            "token_types"
        ]
        is None
    )


def test_inspect_refuses_metadata_that_is_not_yaml_in_one_line(dataset):
    not_yaml(dataset)
    result = invoke("inspect", dataset)
    assert_one_line_error(result, 1, f"{dataset / METADATA}:2: not valid YAML")


def test_a_huge_file_count_is_counted_not_listed(dataset):
    edit_metadata(dataset, number_of_training_files=10**9)
    _, found, _ = run(dataset)
    missing = found["missing-file"]
    assert missing["count"] == 10**9
    assert missing["message"].startswith(
        f"{dataset}: missing train_1_of_1000000000.hdf5, train_2_of_1000000000.hdf5,"
    )
    assert "and 999,999,995 more" in missing["message"]


@pytest.mark.parametrize(
    ("model_type", "config_class"),
    [
        ("llama", LLAMA),
        ("gpt_neox", "<class 'transformers.models.gpt_neox.configuration_gpt_neox.GPTNeoXConfig'>"),
        ("openai-gpt", "<class 'transformers.models.openai.configuration_openai.OpenAIGPTConfig'>"),
        ("my_model", "<class 'transformers_modules.org.configuration_my.MyConfig'>"),
    ],
)
def test_model_type_matching_tokenizer_config_passes(tmp_path, model_type, config_class):
    folder = build_dataset(tmp_path / "ds", tokenizer_model_type=config_class)
    model_config(folder, model_type)
    assert run(folder, "--strict")[:2] == (0, {})


def test_a_damaged_shard_is_its_own_finding_and_the_folder_checks_go_on(dataset):
    (dataset / "train_2_of_3.hdf5").write_bytes(b"not hdf5")
    code, _, data = run(dataset)
    by_file = {Path(f["path"]).name: [x["check"] for x in f["findings"]] for f in data["files"]}
    assert code == 1
    assert by_file["train_2_of_3.hdf5"] == ["cannot-open"]
    # Its rows are unknown, so max_batch_size_train is not judged; its bytes are.
    assert by_file["ds"] == ["hash-mismatch"]
