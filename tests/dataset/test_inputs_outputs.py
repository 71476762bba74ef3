"""`--dataset DIR` against its inputs and outputs: a DIR that would take an input or an output
with it, many splits under a low open-file limit, a full disk, odd entries in an input folder."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    CODON_MODEL_CONFIG,
    CODON_VOCAB,
    assert_one_line_error,
    invoke,
    write_pairs,
)


def build(inputs, folder, *extra):
    return invoke(
        "tokenize", *inputs, "--dataset", folder, "--tokenizer", CODON_VOCAB,
        "--model-config", CODON_MODEL_CONFIG, "--max-seq-length", 8, "--packing",
        "single::drop", "--train-files", 2, *extra,
    )  # fmt: skip


def command(*args) -> list[str]:
    return [
        sys.executable, "-m", "tokentype_cli", "tokenize", *map(str, args), "--tokenizer",
        str(CODON_VOCAB), "--model-config", str(CODON_MODEL_CONFIG), "--max-seq-length", "8",
        "--packing", "single::drop",
    ]  # fmt: skip


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    write_pairs(folder / "a.jsonl", 40)
    write_pairs(folder / "b.jsonl", 40, seed=1)
    return folder


@pytest.mark.parametrize(
    ("given", "dataset", "how"),
    [
        ("data", "data", "is the input data"),
        ("data/a.jsonl", "data", "contains the input data/a.jsonl"),
        ("data", "data/ds", "lies inside the input data"),
    ],
)
def test_a_dir_that_would_take_an_input_with_it_is_refused(
    data, tmp_path, monkeypatch, given, dataset, how
):
    monkeypatch.chdir(tmp_path)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    result = build([given], dataset, "--overwrite")
    assert_one_line_error(result, 2, f"--dataset {dataset} {how}")
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


@pytest.mark.parametrize("dataset", [".", "..", "../data"])
def test_the_current_folder_or_its_parent_is_refused(data, monkeypatch, dataset):
    monkeypatch.chdir(data)
    result = build(["a.jsonl"], dataset, "--overwrite")
    assert_one_line_error(result, 2, "is the current folder or holds it")


@pytest.mark.parametrize("flag", ["--ledger", "--skip-bad-lines"])
def test_an_output_inside_the_dir_being_replaced_is_refused(data, tmp_path, flag):
    folder = tmp_path / "ds"
    assert build([data], folder).exit_code == 0
    result = build([data], folder, "--overwrite", flag, folder / "out.jsonl")
    assert_one_line_error(result, 2, f"{flag} {folder / 'out.jsonl'} lies inside --dataset")
    assert (folder / "metadata.yaml").is_file()


def test_many_splits_under_a_low_open_file_limit(tmp_path):
    source = write_pairs(tmp_path / "in.jsonl", 500)

    def limit() -> None:
        # Two files per split held open at once would need 400 descriptors.
        resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))

    done = subprocess.run(
        command(source, "--dataset", tmp_path / "ds", "--train-files", "200", "--workers", "1"),
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "ds").glob("train_*_of_200.hdf5"))) == 200


def limited(size: int):
    def limit() -> None:
        # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as on a full disk.
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


@pytest.mark.parametrize("size", [20_000, 60_000, 100_000])
def test_a_file_size_limit_during_a_build_is_one_line_and_leaves_nothing(tmp_path, size):
    source = write_pairs(tmp_path / "in.jsonl", 6000)
    for extra in (("--workers", "2"), ("--task", "0/2")):
        done = subprocess.run(
            command(source, "--dataset", tmp_path / "ds", "--train-files", "2", *extra),
            capture_output=True,
            text=True,
            preexec_fn=limited(size),
            timeout=300,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert f"--dataset {tmp_path / 'ds'}: cannot be built: the file size limit" in done.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_a_file_size_limit_during_a_finish_leaves_the_shares_to_finish_again(tmp_path):
    source = write_pairs(tmp_path / "in.jsonl", 6000)
    build_ = command(source, "--dataset", tmp_path / "ds", "--train-files", "2")
    for index in range(2):
        subprocess.run([*build_, "--task", f"{index}/2"], check=True, capture_output=True)
    done = subprocess.run(
        [*build_, "--finish"], capture_output=True, text=True, preexec_fn=limited(5_000)
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot be built: the file size limit is exceeded" in done.stderr
    assert not (tmp_path / "ds").exists()
    finished = subprocess.run([*build_, "--finish"], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_a_broken_link_in_an_input_folder_is_named(data, tmp_path, kind):
    link = data / "c.jsonl"
    if kind == "dangling":
        link.symlink_to(tmp_path / "gone.jsonl")
    else:
        link.symlink_to(link)
    result = build([data], tmp_path / "ds")
    why = "a dangling symbolic link" if kind == "dangling" else "a symbolic link loop"
    assert_one_line_error(result, 1, f"{link}: {why} in the input folder {data}")
    assert not (tmp_path / "ds").exists()


def test_names_with_line_breaks_and_terminal_escapes_stay_one_inert_line(data, tmp_path):
    hostile = data / "x\n\x1b[2J\u2028.jsonl"
    write_pairs(hostile, 10)
    with open(hostile, "a") as handle:
        handle.write('{"prompt": "AUG", "completion": \n')
    for result in (build([hostile], tmp_path / "ds"), build([data], tmp_path / "ds")):
        assert result.exit_code == 1, result.output
        assert result.stderr.count("\n") == 1, result.stderr
        assert "\x1b" not in result.stderr and "\u2028" not in result.stderr
        assert "x\\n\\x1b[2J\\u2028.jsonl" in result.stderr
    hostile.unlink()
    link = data / "y\n.jsonl"
    link.symlink_to(tmp_path / "gone")
    result = build([data], tmp_path / "ds")
    assert result.stderr.count("\n") == 1 and "y\\n.jsonl" in result.stderr
    missing = invoke("validate", tmp_path / "no\nsuch\x1b[0m.h5")
    assert missing.exit_code == 1 and "no\\nsuch\\x1b[0m.h5: 1 error" in missing.stdout
    assert "\x1b" not in missing.stdout
