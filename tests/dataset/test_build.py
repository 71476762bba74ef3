"""`tokenize --dataset DIR`: the folder the trainer takes, reproducible however it is built."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import (
    CODON_MODEL_CONFIG,
    CODON_VOCAB,
    CODONS,
    build,
    digest,
    folder_digests,
    invoke,
    manifest_hashes,
    peak_rss,
    write_pairs,
)
from tokentype_cli import processes
from tokentype_cli.dataset import build as build_module
from tokentype_cli.dataset.balance import plan_balance
from tokentype_cli.dataset.layout import REQUIRED_METADATA, manifest_files, manifest_key
from tokentype_cli.dataset.plan import Permutation, destinations, plan_splits
from tokentype_cli.schema.temporary import exchange, temporary_name

MODEL_CONFIG = CODON_MODEL_CONFIG


def rows_of(path: Path) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    with h5py.File(path, "r") as shard:
        ids = shard["input_ids"][:]
        types = shard["token_type_ids"][:]
    return [(tuple(a), tuple(b)) for a, b in zip(ids.tolist(), types.tolist(), strict=True)]


def hdf5_files(folder: Path, kind: str) -> list[Path]:
    return sorted(folder.glob(f"{kind}_*_of_*.hdf5"), key=lambda p: int(p.name.split("_")[1]))


def without_manifest(digests: dict[str, str]) -> dict[str, str]:
    """Folder digests less the manifest, whose modified times differ between builds."""
    return {name: value for name, value in digests.items() if name != "sha256/files_metadata.json"}


@pytest.fixture
def pairs(tmp_path) -> Path:
    return write_pairs(tmp_path / "pairs.jsonl", 120)


# --- the folder ------------------------------------------------------------------------------


def test_folder_layout_and_metadata(pairs, tmp_path):
    folder = tmp_path / "ds"
    result = build([pairs], folder, "--train-files", 4, "--dev-ratio", 0.2, "--test-files", 1)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert names == [
        "dev_1_of_1.hdf5",
        "metadata.yaml",
        "sha256/files_metadata.json",
        "test_files/test_1_of_1.jsonl",
        "tokenizer/config.json",
        "tokenizer/tokenizer.json",
        "train_1_of_4.hdf5",
        "train_2_of_4.hdf5",
        "train_3_of_4.hdf5",
        "train_4_of_4.hdf5",
    ]
    metadata = yaml.safe_load((folder / "metadata.yaml").read_text())
    for key, types in REQUIRED_METADATA.items():
        assert key in metadata
        value = metadata[key]
        assert (value is None and None in types) or isinstance(value, tuple(t for t in types if t))
    assert metadata["max_seq_length"] == 8
    assert metadata["token_type_ids"] is True
    assert metadata["vocab_size"] == 70
    assert metadata["tokenizer_model_type"] == (
        "<class 'transformers.models.llama.configuration_llama.LlamaConfig'>"
    )
    assert (metadata["number_of_training_files"], metadata["number_of_dev_files"]) == (4, 1)
    assert metadata["number_of_test_files"] == 1
    train_rows = [len(rows_of(p)) for p in hdf5_files(folder, "train")]
    assert metadata["max_batch_size_train"] == min(train_rows)
    assert metadata["max_batch_size_dev"] == len(rows_of(folder / "dev_1_of_1.hdf5"))
    assert metadata["train_sequences"] == sum(train_rows)
    for key in ("articles", "prompt_tokens", "completion_tokens", "padding_tokens"):
        assert isinstance(metadata[f"train_{key}"], int) and isinstance(metadata[f"dev_{key}"], int)
    assert metadata["seed"] == 0 and metadata["tokentype_version"]
    # The manifest covers every other file, with its hash, and is written last.
    manifest = json.loads((folder / "sha256" / "files_metadata.json").read_text())
    covered = {manifest_key(p.relative_to(folder)): p for p in manifest_files(folder)}
    assert set(manifest) == set(covered)
    for key, path in covered.items():
        assert manifest[key]["sha256"] == digest(path)
        assert manifest[key]["size"] == path.stat().st_size
    # Nothing is left beside the folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "pairs.jsonl"]


def test_no_dev_means_max_batch_size_dev_null(pairs, tmp_path):
    folder = tmp_path / "ds"
    result = build([pairs], folder, "--train-files", 3)
    assert result.exit_code == 0, result.output
    metadata = yaml.safe_load((folder / "metadata.yaml").read_text())
    assert "max_batch_size_dev" in metadata and metadata["max_batch_size_dev"] is None
    assert metadata["number_of_dev_files"] == 0 and not list(folder.glob("dev_*"))


def test_gpt2_folder_copies_the_tokenizer_files(conformance_dir, tmp_path):
    source = conformance_dir / "generative_tuning" / "input.jsonl"
    folder = tmp_path / "ds"
    result = invoke(
        "tokenize", source, "--dataset", folder, "--tokenizer", conformance_dir / "tokenizer-gpt2",
        "--max-seq-length", 1024, "--packing", "single::drop", "--train-files", 2,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "config.json",
    ):
        assert digest(folder / "tokenizer" / name) == digest(
            conformance_dir / "tokenizer-gpt2" / name
        )
    metadata = yaml.safe_load((folder / "metadata.yaml").read_text())
    assert metadata["vocab_size"] == 50257
    assert metadata["tokenizer_model_type"] == (
        "<class 'transformers.models.gpt2.configuration_gpt2.GPT2Config'>"
    )


def test_single_packing_rows_are_those_of_a_single_file_build(pairs, tmp_path):
    shard = tmp_path / "one.h5"
    single = invoke(
        "tokenize", pairs, "-o", shard, "--tokenizer", CODON_VOCAB, "--max-seq-length", 8,
        "--packing", "single::truncate_right",
    )  # fmt: skip
    assert single.exit_code == 0, single.output
    folder = tmp_path / "ds"
    result = build(
        [pairs], folder, "--train-files", 5, "--dev-files", 2, "--shuffle", "--seed", 3,
        packing="single::truncate_right",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    built = Counter(row for path in sorted(folder.glob("*.hdf5")) for row in rows_of(path))
    assert built == Counter(rows_of(shard))


def test_balanced_within_one_row_and_nothing_lost(tmp_path):
    # Lines of very different lengths under greedy packing leave the files uneven before balancing.
    source = tmp_path / "in.txt"
    rng = np.random.default_rng(1)
    source.write_text(
        "".join(" ".join(rng.choice(CODONS, rng.integers(1, 7))) + "\n" for _ in range(300))
    )
    unbalanced, balanced = tmp_path / "raw", tmp_path / "ds"
    common = ("--train-files", 7, "--dev-files", 3)
    first = build([source], unbalanced, *common, "--no-balance", packing="greedy::drop")
    second = build([source], balanced, *common, packing="greedy::drop")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    for kind in ("train", "dev"):
        before = [rows_of(p) for p in hdf5_files(unbalanced, kind)]
        after = [rows_of(p) for p in hdf5_files(balanced, kind)]
        sizes = [len(rows) for rows in after]
        assert max(sizes) - min(sizes) <= 1
        assert sizes == sorted(sizes, reverse=True)  # earlier files get the extra row
        assert Counter(r for rows in before for r in rows) == Counter(
            r for rows in after for r in rows
        )
        assert len({len(rows) for rows in before}) > 1  # the case did need balancing


# --- reproducible however built --------------------------------------------------------------


def test_seed_reproduces_and_another_seed_reorders(pairs, tmp_path):
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        result = build([pairs], tmp_path / name, "--train-files", 3, "--shuffle", "--seed", seed)
        assert result.exit_code == 0, result.output
        runs[name] = tmp_path / name
    assert manifest_hashes(runs["a"]) == manifest_hashes(runs["b"])
    assert folder_digests(runs["a"]) | {"sha256/files_metadata.json": ""} == folder_digests(
        runs["b"]
    ) | {"sha256/files_metadata.json": ""}
    first = rows_of(runs["a"] / "train_1_of_3.hdf5")
    assert first != rows_of(runs["c"] / "train_1_of_3.hdf5")
    unshuffled = tmp_path / "plain"
    assert build([pairs], unshuffled, "--train-files", 3).exit_code == 0
    assert first != rows_of(unshuffled / "train_1_of_3.hdf5")


def test_shuffle_holds_no_input_in_memory(tmp_path):
    # 32 MB of long lines, 95% of them routed to the test split (copied as text, never
    # tokenized): a shuffle that held the input, or even its lines' text, would add that much
    # to the peak of the same build unshuffled.
    rng = np.random.default_rng(5)
    words = rng.choice(CODONS, (64, 500))
    block = "".join(
        json.dumps({"prompt": " ".join(row[:200]), "completion": " ".join(row[200:])}) + "\n"
        for row in words
    )  # 64 distinct lines, repeated: the build cannot tell, and writing them is quick
    source = tmp_path / "in.jsonl"
    source.write_text(block * 250)
    assert source.stat().st_size > 30 << 20
    peaks = {}
    for order in ("--shuffle", "--no-shuffle"):
        code, peaks[order], stderr = peak_rss(
            "tokenize", source, "--dataset", tmp_path / order.strip("-"), "--tokenizer",
            CODON_VOCAB, "--model-config", MODEL_CONFIG, "--max-seq-length", 1024,
            "--train-files", 1, "--test-ratio", 0.95, "--workers", 1, "-q", order,
        )  # fmt: skip
        assert code == 0, stderr
    assert peaks["--shuffle"] - peaks["--no-shuffle"] < 8, peaks


def test_workers_and_tasks_give_byte_identical_folders(pairs, tmp_path):
    common = ("--train-files", 4, "--dev-files", 2, "--test-files", 1, "--shuffle", "--seed", 5)
    one, two, tasks = tmp_path / "one", tmp_path / "two", tmp_path / "tasks"
    assert build([pairs], one, *common, "--workers", 1).exit_code == 0
    assert build([pairs], two, *common, "--workers", 2).exit_code == 0
    for index in range(3):
        result = build([pairs], tasks, *common, "--task", f"{index}/3", "--workers", 1)
        assert result.exit_code == 0, result.output
        assert not tasks.exists()
    finished = build([pairs], tasks, *common, "--finish")
    assert finished.exit_code == 0, finished.output
    expected = folder_digests(one)
    del expected["sha256/files_metadata.json"]  # modified times differ; the hashes may not
    for other in (two, tasks):
        digests = folder_digests(other)
        del digests["sha256/files_metadata.json"]
        assert digests == expected
        assert manifest_hashes(other) == manifest_hashes(one)
    assert not (tmp_path / ".tasks.tokentype-tasks").exists()


def test_a_share_built_by_worker_processes_holds_only_its_recorded_files(pairs, tmp_path):
    # Workers are handed the encoder through a temporary file: it must not be published with
    # the share (nor anything else the record does not vouch for), nor be left behind.
    folder = tmp_path / "ds"
    common = ("--train-files", 4, "--dev-files", 1, "--shuffle")
    assert build([pairs], folder, *common, "--task", "0/2", "--workers", 2).exit_code == 0
    root = tmp_path / ".ds.tokentype-tasks"
    record = json.loads((root / "tasks" / "task_0_of_2.json").read_text())
    share = root / record["share"]
    held = {str(path.relative_to(share)) for path in share.rglob("*") if path.is_file()}
    assert held == set(record["files"])
    assert not [path for path in tmp_path.rglob("*") if path.name.endswith(".tmp")]


def test_overwrite_swaps_the_folders_so_dir_is_never_missing(pairs, tmp_path, monkeypatch):
    # Moving the old folder aside, then the new one in, left neither at DIR for a moment: a kill
    # there lost the old build to a temporary name the next run deletes.
    probe = [tmp_path / "probe" / name for name in "ab"]
    for path in probe:
        path.mkdir(parents=True)
    if not exchange(*probe):
        pytest.skip(f"{tmp_path}'s filesystem (or system) cannot swap paths in one step")
    folder = tmp_path / "ds"
    assert build([pairs], folder, "--train-files", 2, "--seed", 1).exit_code == 0
    before = (folder / "train_1_of_2.hdf5").read_bytes()
    moved_away = []
    replace = os.replace

    def watched(source, target):
        moved_away.append(Path(source) == folder)
        return replace(source, target)

    monkeypatch.setattr(os, "replace", watched)
    rebuilt = build([pairs], folder, "--train-files", 2, "--seed", 2, "--overwrite")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert moved_away and not any(moved_away)
    assert (folder / "train_1_of_2.hdf5").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("threads_since_import", [0, 1])
def test_forked_and_spawned_workers_build_the_same_folder(
    pairs, tmp_path, monkeypatch, threads_since_import
):
    # Workers are forked while no library has started a thread since import, else spawned
    # (and handed the encoder through a file): both give the bytes of a one-process build.
    if processes.threads() is None or not sys.platform.startswith("linux"):
        pytest.skip("workers are forked only on Linux, where /proc counts the threads")
    common = ("--train-files", 4, "--dev-files", 2, "--shuffle", "--seed", 5)
    one = tmp_path / "one"
    assert build([pairs], one, *common, "--workers", 1).exit_code == 0
    methods = []
    choose = build_module._start_method
    monkeypatch.setattr(processes, "THREADS_AT_IMPORT", processes.threads() - threads_since_import)
    monkeypatch.setattr(
        build_module, "_start_method", lambda: methods.append(choose()) or methods[-1]
    )
    many = tmp_path / "many"
    assert build([pairs], many, *common, "--workers", 2).exit_code == 0
    assert methods == ["spawn" if threads_since_import else "fork"]
    expected = folder_digests(one)
    digests = folder_digests(many)
    for digests_ in (expected, digests):
        del digests_["sha256/files_metadata.json"]  # modified times differ
    assert digests == expected
    assert not [path for path in tmp_path.rglob("*") if path.name.endswith(".tmp")]


def test_a_finish_reads_each_shard_once(pairs, tmp_path, monkeypatch):
    # The shards are checked against their task's sha256 while they are copied into DIR, not
    # hashed first and read again to copy (on a cluster's shared filesystem, twice the reading).
    folder = tmp_path / "ds"
    common = ("--train-files", 4, "--dev-files", 1, "--test-files", 1, "--keep-splits")
    for index in range(2):
        assert build([pairs], folder, *common, "--task", f"{index}/2").exit_code == 0
    hashed = []
    whole = build_module.sha256_of
    monkeypatch.setattr(build_module, "sha256_of", lambda path: hashed.append(path) or whole(path))
    finished = build([pairs], folder, *common, "--finish")
    assert finished.exit_code == 0, finished.output
    assert hashed and all("/parts/" in str(path) for path in hashed), hashed
    assert len(list(folder.glob("*.hdf5"))) == 5


def test_finish_refuses_a_missing_or_mismatched_share(pairs, tmp_path):
    folder = tmp_path / "ds"
    common = ("--train-files", 4, "--shuffle")
    assert build([pairs], folder, *common, "--task", "0/2").exit_code == 0
    missing = build([pairs], folder, *common, "--finish")
    assert missing.exit_code == 1
    assert "task 1/2 has not finished" in missing.stderr and "--task 1/2" in missing.stderr
    assert build([pairs], folder, *common, "--seed", 9, "--task", "1/2").exit_code == 0
    mismatched = build([pairs], folder, *common, "--finish")
    assert mismatched.exit_code == 1
    assert "task 1/2 was built from another --seed" in mismatched.stderr
    other_input = write_pairs(tmp_path / "other.jsonl", 120, seed=4)
    assert build([other_input], folder, *common, "--task", "1/2").exit_code == 0
    assert "other inputs" in build([pairs], folder, *common, "--finish").stderr
    assert not folder.exists()
    # A share tokenized with another vocabulary (one token more) would put other ids in rows.
    vocabulary = json.loads(CODON_VOCAB.read_text())
    other_vocab = tmp_path / "other_vocab.json"
    other_vocab.write_text(json.dumps({**vocabulary, "NEW": max(vocabulary.values()) + 1}))
    other = invoke(
        "tokenize", pairs, "--dataset", folder, "--tokenizer", other_vocab, "--model-config",
        MODEL_CONFIG, "--max-seq-length", 8, "--packing", "single::drop", *common,
        "--task", "1/2",
    )  # fmt: skip
    assert other.exit_code == 0, other.output
    refused = build([pairs], folder, *common, "--finish")
    assert refused.exit_code == 1 and not folder.exists()
    assert "task 1/2 was built from another tokenizer than this --finish" in refused.stderr
    assert build([pairs], folder, *common, "--task", "1/2").exit_code == 0
    assert build([pairs], folder, *common, "--finish").exit_code == 0
    assert folder.is_dir()


@pytest.mark.parametrize("existing", [False, True])
def test_a_killed_build_leaves_nothing_once_the_next_starts(tmp_path, existing):
    # existing: the kill comes during an --overwrite of a built folder, which must stay as it
    # was; else no folder may appear. Either way the next build removes what the dead one left.
    source = write_pairs(tmp_path / "in.jsonl", 30000)
    small = write_pairs(tmp_path / "small.jsonl", 40)
    folder = tmp_path / "ds"
    before = None
    if existing:
        assert build([small], folder, "--train-files", 4).exit_code == 0
        before = folder_digests(folder)
    command = [
        sys.executable, "-m", "tokentype_cli", "tokenize", str(source), "--dataset", str(folder),
        "--tokenizer", str(CODON_VOCAB), "--model-config", str(MODEL_CONFIG),
        "--max-seq-length", "8", "--packing", "single::drop", "--train-files", "4",
        "--workers", "1", "--overwrite",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob(".ds.tokentype-*.tmp")):
        time.sleep(0.01)
    time.sleep(0.3)
    assert process.poll() is None, "the build ended before the kill"
    process.send_signal(signal.SIGKILL)
    process.wait()
    if existing:
        assert folder_digests(folder) == before
    else:
        assert not folder.exists()
    assert list(tmp_path.glob(".ds.tokentype-*.tmp"))  # a killed build cannot clean up
    result = build([small], folder, "--train-files", 4, "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "in.jsonl", "small.jsonl"]


def test_an_existing_folder_needs_overwrite(pairs, tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    refused = build([pairs], folder, "--train-files", 2)
    assert refused.exit_code == 2 and "--overwrite" in refused.stderr
    assert (folder / "keep.txt").read_text() == "mine"
    replaced = build([pairs], folder, "--train-files", 2, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert not (folder / "keep.txt").exists() and (folder / "train_2_of_2.hdf5").is_file()


def test_too_few_lines_names_the_counts_and_the_flag(tmp_path):
    source = write_pairs(tmp_path / "in.jsonl", 5)
    result = build([source], tmp_path / "ds", "--train-files", 4, "--dev-files", 3)
    assert result.exit_code == 2
    assert "5 lines for 7 splits" in result.stderr and "lower --train-files" in result.stderr
    assert not (tmp_path / "ds").exists()


# --- what else comes out ---------------------------------------------------------------------


def test_ledger_accounts_for_every_line_where_it_ended(pairs, tmp_path):
    folder, ledger = tmp_path / "ds", tmp_path / "ledger.jsonl"
    result = build(
        [pairs], folder, "--train-files", 3, "--dev-files", 1, "--test-files", 1, "--shuffle",
        "--ledger", ledger,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert sorted(r["line"] for r in records) == list(range(1, 121))
    source_lines = pairs.read_text().splitlines()
    test_lines = (folder / "test_files" / "test_1_of_1.jsonl").read_text().splitlines()
    for record in records:
        if record["split"] == "test":
            assert test_lines[record["test_line"] - 1] == source_lines[record["line"] - 1]
            continue
        assert record["status"] == "packed"
        ((name, row, offset, count),) = record["rows"]
        with h5py.File(folder / name, "r") as shard:
            placed = shard["input_ids"][row, offset : offset + count]
        assert len(placed) == count == record["tokens"]


def test_keep_splits_and_test_files_hold_the_lines(pairs, tmp_path):
    folder = tmp_path / "ds"
    result = build(
        [pairs], folder, "--train-files", 2, "--test-files", 1, "--keep-splits", "--shuffle"
    )
    assert result.exit_code == 0, result.output
    kept = [folder / "splits" / f"train_{k}_of_2.jsonl" for k in (1, 2)]
    test = folder / "test_files" / "test_1_of_1.jsonl"
    lines = [line for path in [*kept, test] for line in path.read_text().splitlines()]
    assert sorted(lines) == sorted(pairs.read_text().splitlines())
    assert len(test.read_text().splitlines()) == 40


def test_stdin_builds_the_same_folder(pairs, tmp_path):
    from_file, from_stdin = tmp_path / "a", tmp_path / "b"
    assert build([pairs], from_file, "--train-files", 2, "--shuffle").exit_code == 0
    result = invoke(
        "tokenize", "-", "--dataset", from_stdin, "--tokenizer", CODON_VOCAB,
        "--model-config", MODEL_CONFIG, "--max-seq-length", 8, "--packing", "single::drop",
        "--train-files", 2, "--shuffle", input=pairs.read_text(),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert manifest_hashes(from_file) == manifest_hashes(from_stdin)


def _with_categories(path: Path, count: int) -> Path:
    """Pairs of varied lengths, every third in category "b", the rest in "a"."""
    rng = np.random.default_rng(0)
    lines = [
        {"prompt": " ".join(rng.choice(CODONS, rng.integers(1, 4))),
         "completion": " ".join(rng.choice(CODONS, rng.integers(1, 7))),
         "category": "b" if k % 3 == 0 else "a"}
        for k in range(count)
    ]  # fmt: skip
    return jsonl_lines(path, *lines)


def test_reference_spellings_do_what_ours_do(tmp_path):
    # Each reference spelling builds the folder its own spelling builds, file for file; and each
    # option visibly acts (a spelling accepted and ignored would pass a names-only check).
    source = _with_categories(tmp_path / "in.jsonl", 120)
    names = tmp_path / "categories.json"
    names.write_text(json.dumps(["a", "b"]))
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    packed = {"seq_len": 16, "packing": "greedy::drop"}
    assert build(
        [source], ours, "--train-files", 3, "--dev-ratio", 0.25, "--shuffle", "--no-balance",
        "--keep-splits", "--categories", names, "--workers", 1, **packed,
    ).exit_code == 0  # fmt: skip
    ported = build(
        [source], theirs, "--num_training_splits", 3, "--dev_ratio", 0.25, "--shuffle", "on_RAM",
        "--do_not_balance_hdf5", "--keep_split_jsonls", "--categories_path", names,
        "--num_workers", 1, **packed,
    )  # fmt: skip
    assert ported.exit_code == 0, ported.output
    assert without_manifest(folder_digests(theirs)) == without_manifest(folder_digests(ours))
    # --keep_split_jsonls kept each split's lines; --categories_path typed every token.
    kept = sorted(theirs.glob("splits/*.jsonl"))
    assert [p.name for p in kept] == [
        "dev_1_of_1.jsonl", "train_1_of_3.jsonl", "train_2_of_3.jsonl", "train_3_of_3.jsonl",
    ]  # fmt: skip
    assert sorted(line for p in kept for line in p.read_text().splitlines()) == sorted(
        source.read_text().splitlines()
    )
    assert json.loads((theirs / "category_to_id.json").read_text()) == {"a": 0, "b": 1}
    for path in theirs.glob("*.hdf5"):
        with h5py.File(path, "r") as f:
            categories, types = f["category_ids"][:], f["token_type_ids"][:]
        assert ((categories == -1) == (types == 2)).all() and set(categories.ravel()) >= {0, 1}
    # --do_not_balance_hdf5 left the train files uneven, which balancing would not.
    sizes = [len(rows_of(p)) for p in hdf5_files(theirs, "train")]
    assert max(sizes) - min(sizes) > 1, sizes
    # --shuffle on_RAM shuffled, and --shuffle False is --no-shuffle.
    plain, off = tmp_path / "plain", tmp_path / "off"
    rest = ("--train-files", 3, "--dev-ratio", 0.25, "--keep-splits")
    assert build([source], plain, *rest, "--no-shuffle", **packed).exit_code == 0
    unshuffled = build([source], off, *rest, "--shuffle", "False", **packed)
    assert unshuffled.exit_code == 0, unshuffled.output
    assert without_manifest(folder_digests(off)) == without_manifest(folder_digests(plain))
    lines = source.read_text().splitlines()
    assert (plain / "splits" / "train_1_of_3.jsonl").read_text().splitlines() == lines[0::4]
    assert (theirs / "splits" / "train_1_of_3.jsonl").read_text().splitlines() != lines[0::4]


def test_missing_model_config_is_one_line_before_any_work(pairs, tmp_path):
    result = invoke(
        "tokenize", pairs, "--dataset", tmp_path / "ds", "--tokenizer", CODON_VOCAB,
        "--train-files", 2,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--model-config" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]


def test_dataset_flags_without_dataset_are_usage_errors(pairs, tmp_path):
    result = invoke(
        "tokenize", pairs, "-o", tmp_path / "x.h5", "--tokenizer", CODON_VOCAB, "--shuffle"
    )
    assert result.exit_code == 2 and "--shuffle needs --dataset" in result.stderr


# --- the plan, the permutation and the balance -----------------------------------------------


def test_split_counts_follow_the_reference_arithmetic():
    plan = plan_splits(1000, train_files=16, dev_ratio=0.1)
    assert (plan.train, plan.dev, plan.test) == (16, 1, 0)  # int(16 / 0.9) = 17 splits
    plan = plan_splits(1000, train_files=32, dev_ratio=0.1, test_ratio=0.1)
    assert (plan.train, plan.test, plan.dev) == (32, 4, 4)  # 40 splits, int(40 * 0.1) test
    assert plan_splits(11 << 30).train == 128 and plan_splits(200 << 30).train == 256
    assert plan_splits(5).train == 32
    names = [split.file_name() for split in plan_splits(1, 2, 1, 1).splits]
    assert names == [
        "train_1_of_2.hdf5",
        "train_2_of_2.hdf5",
        "test_1_of_1.hdf5",
        "dev_1_of_1.hdf5",
    ]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5000), seed=st.integers(0, 2**64 - 1))
def test_permutation_is_a_bijection(n, seed):
    permuted = Permutation(n, seed)(np.arange(n))
    assert sorted(permuted.tolist()) == list(range(n))
    again = np.concatenate(
        [Permutation(n, seed)(block) for block in np.array_split(np.arange(n), 3)]
    )
    assert again.tolist() == permuted.tolist()  # blocks give the same answer as the whole


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), splits=st.integers(1, 40), shuffle=st.booleans())
def test_every_split_gets_floor_or_ceil_of_the_lines(n, splits, shuffle):
    where, position = destinations(np.arange(n), n, splits, shuffle, seed=11)
    sizes = np.bincount(where, minlength=splits)
    assert sizes.max() - sizes.min() <= 1
    for split in range(splits):
        assert sorted(position[where == split].tolist()) == list(range(sizes[split]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=12))
def test_balance_plan_moves_rows_to_within_one(rows):
    targets, moves = plan_balance(rows)
    total = sum(rows)
    assert sum(targets) == total and max(targets) - min(targets) <= 1
    assert targets == sorted(targets, reverse=True)
    counts = list(rows)
    taken = [0] * len(rows)
    for move in moves:
        assert move.start >= targets[move.source] and move.at == counts[move.target]
        counts[move.target] += move.count
        taken[move.source] += move.count
    final = [
        min(c, t) if rows[k] > t else c
        for k, (c, t) in enumerate(zip(counts, targets, strict=True))
    ]
    assert final == targets
    assert all(taken[k] == max(0, rows[k] - targets[k]) for k in range(len(rows)))


def test_environment_has_no_stray_build_folders(tmp_path):
    # The staging folder's name carries the host and pid so a later build can tell it is stale.
    source = write_pairs(tmp_path / "in.jsonl", 10)
    # Named as this host's temporaries are, with an owner that is gone.
    own = temporary_name(tmp_path / "ds").name
    stale = tmp_path / own.replace(f"-{os.getpid()}-", "-999999999-")
    stale.mkdir()
    (stale / "junk").write_text("x")
    result = build([source], tmp_path / "ds", "--train-files", 2)
    assert result.exit_code == 0, result.output
    assert not stale.exists()


# --- categories ------------------------------------------------------------------------------


def test_categories_give_each_pairs_tokens_its_index(tmp_path):
    names = tmp_path / "categories.json"
    names.write_text(json.dumps(["math", "code"]))
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps([
            {"prompt": "GAA", "completion": "ATG", "category": "code"},
            {"prompt": "GGC", "completion": "ATC GAC"},
        ]) + "\n" + json.dumps({"prompt": "GCC", "completion": "GAC", "category": "math"}) + "\n"
    )  # fmt: skip
    shard = tmp_path / "out.h5"
    result = invoke(
        "tokenize", source, "-o", shard, "--tokenizer", CODON_VOCAB, "--max-seq-length", 10,
        "--packing", "single::drop", "--categories", names,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with h5py.File(shard, "r") as f:
        assert f["category_ids"].shape == f["input_ids"].shape
        assert f["category_ids"].dtype == np.int32
        categories = f["category_ids"][:].tolist()
        types = f["token_type_ids"][:].tolist()
    # Pair 1 (code): GAA ATG eos; pair 2 (none): GGC ATC GAC eos; then padding.
    assert categories[0] == [1, 1, 1, -1, -1, -1, -1, -1, -1, -1]
    assert types[0] == [0, 1, 1, 0, 1, 1, 3, 2, 2, 2]
    assert categories[1] == [0, 0, 0, -1, -1, -1, -1, -1, -1, -1]
    assert types[1] == [0, 1, 3, 2, 2, 2, 2, 2, 2, 2]


def test_unknown_category_names_file_and_line(tmp_path):
    names = tmp_path / "categories.json"
    names.write_text(json.dumps(["math"]))
    source = jsonl_lines(
        tmp_path / "in.jsonl", {"prompt": "GAA", "completion": "ATG", "category": "art"}
    )
    result = invoke(
        "tokenize", source, "-o", tmp_path / "o.h5", "--tokenizer", CODON_VOCAB,
        "--categories", names,
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"{source}:1: category 'art'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_dataset_writes_category_to_id_and_balances_categories(tmp_path):
    names = tmp_path / "categories.json"
    names.write_text(json.dumps(["a", "b"]))
    rng = np.random.default_rng(2)
    lines = [
        {"prompt": "GAA", "completion": " ".join(rng.choice(CODONS, rng.integers(1, 5))),
         "category": ["a", "b"][k % 2]}
        for k in range(60)
    ]  # fmt: skip
    source = jsonl_lines(tmp_path / "in.jsonl", *lines)
    folder = tmp_path / "ds"
    result = build(
        [source], folder, "--train-files", 3, "--categories", names, packing="greedy::drop"
    )
    assert result.exit_code == 0, result.output
    assert json.loads((folder / "category_to_id.json").read_text()) == {"a": 0, "b": 1}
    for path in hdf5_files(folder, "train"):
        with h5py.File(path, "r") as f:
            categories, types = f["category_ids"][:], f["token_type_ids"][:]
        assert categories.shape == types.shape
        assert ((categories == -1) == (types == 2)).all()


def jsonl_lines(path: Path, *records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_added_tokens_in_the_data_validate(conformance_dir, tmp_path):
    # metadata's vocab_size is the base vocabulary, as Hugging Face counts it; ChatML's added
    # <|im_start|> and <|im_end|> lie beyond it and are still the folder's own tokens.
    source = tmp_path / "chat.jsonl"
    line = {"prompt": "<|im_start|>user hi<|im_end|>", "completion": "hello"}
    source.write_text((json.dumps(line) + "\n") * 10)
    folder = tmp_path / "ds"
    result = invoke(
        "tokenize", source, "--dataset", folder, "--tokenizer", conformance_dir / "tokenizer-chatml",
        "--max-seq-length", 32, "--train-files", 2,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((folder / "metadata.yaml").read_text())["vocab_size"] == 50257
    checked = invoke("validate", folder)
    assert checked.exit_code == 0, checked.output


def test_sigterm_stops_a_build_with_worker_processes_and_leaves_nothing(tmp_path):
    source = write_pairs(tmp_path / "in.jsonl", 60000)
    folder = tmp_path / "ds"
    command = [
        sys.executable, "-m", "tokentype_cli", "tokenize", str(source), "--dataset", str(folder),
        "--tokenizer", str(CODON_VOCAB), "--model-config", str(MODEL_CONFIG),
        "--max-seq-length", "8", "--packing", "single::drop", "--train-files", "4",
        "--workers", "2",
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as process:
        # A worker is writing a split's shard: the build is mid-tokenize.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(tmp_path.glob(".ds.*/.train_*.tmp")):
            time.sleep(0.01)
        # Stopped, the build cannot reach its rename however loaded the machine is; the SIGTERM
        # is then pending and lands as soon as it runs again.
        process.send_signal(signal.SIGSTOP)
        assert process.poll() is None, "the build ended before the signal could land"
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        process.send_signal(signal.SIGCONT)
        process.wait(timeout=60)
        stopped = time.monotonic() - started
        stderr = process.stderr.read().decode()
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("Aborted: SIGTERM received")
    assert stopped < 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_model_type_table_matches_transformers(tmp_path):
    # transformers is not a dependency: where it is installed it is the oracle for the strings
    # metadata.yaml's tokenizer_model_type must equal.
    transformers = pytest.importorskip(
        "transformers", reason="transformers is not installed (not a dependency): no oracle"
    )
    from tokentype_cli.dataset.metadata import MODEL_CONFIG_CLASSES, model_type_string

    for model_type in MODEL_CONFIG_CLASSES:
        config = tmp_path / f"{model_type}.json"
        config.write_text(json.dumps({"model_type": model_type}))
        cls = transformers.CONFIG_MAPPING[model_type]
        assert model_type_string(config) == str(cls), model_type


def test_a_ledger_naming_an_input_is_refused(pairs, tmp_path):
    before = pairs.read_bytes()
    linked = tmp_path / "same.jsonl"
    os.link(pairs, linked)  # another name for the input: refused by inode too
    for ledger in (pairs, linked):
        result = build([pairs], tmp_path / "ds", "--train-files", 2, "--ledger", ledger)
        assert result.exit_code == 2, result.output
        assert "is also the input" in result.stderr
    assert pairs.read_bytes() == before and not (tmp_path / "ds").exists()
