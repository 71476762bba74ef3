"""Damaged dataset folders for `validate` and `inspect`: YAML that expands without end or nests
without end, files that are not regular files, a split file renamed with a line break."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import CODON_MODEL_CONFIG, CODON_VOCAB, ROOT, invoke, write_pairs

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + k)}: &{chr(98 + k)} [{', '.join([f'*{chr(97 + k)}'] * 9)}]\n" for k in range(9)
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("folder")
    source = write_pairs(base / "in.jsonl", 60)
    folder = base / "ds"
    result = invoke(
        "tokenize", source, "--dataset", folder, "--tokenizer", CODON_VOCAB, "--model-config",
        CODON_MODEL_CONFIG, "--max-seq-length", 8, "--packing", "single::drop",
        "--train-files", 2, "--test-files", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def folder(pristine, tmp_path) -> Path:
    copy = tmp_path / "ds"
    subprocess.run(["cp", "-a", str(pristine), str(copy)], check=True)
    return copy


def run_bounded(*args) -> subprocess.CompletedProcess:
    """`tokentype ARGS` with 1 GB of address space and 60 s: an unbounded read fails it."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        [sys.executable, "-m", "tokentype_cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (LAUGHS, "aliases (*name) are not allowed"),
        ("a: &a [*a]\n", "aliases (*name) are not allowed"),
        ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested"),
        ("a: " + "{b: " * 100_000 + "1" + "}" * 100_000 + "\n", "nested"),
    ],
    ids=["billion-laughs", "self-reference", "deep-lists", "deep-maps"],
)
def test_yaml_bombs_in_metadata_are_refused_at_once(folder, text, why):
    (folder / "metadata.yaml").write_text(text)
    started = time.monotonic()
    for command in (("validate", folder), ("inspect", folder)):
        result = run_bounded(*command)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
        assert "metadata.yaml" in result.stdout + result.stderr
        assert why in result.stdout + result.stderr
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "dangling", "huge"])
def test_metadata_that_is_not_a_bounded_regular_file_is_an_error(folder, tmp_path, kind):
    metadata = folder / "metadata.yaml"
    metadata.unlink()
    if kind == "dev-zero":
        metadata.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(metadata)
    elif kind == "dangling":
        metadata.symlink_to(tmp_path / "gone.yaml")
    else:
        metadata.write_text("a: 1\n" + "# padding\n" * 200_000)
    for command in (("validate", folder), ("inspect", folder)):
        result = run_bounded(*command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert "metadata.yaml" in result.stdout + result.stderr


def test_a_tokenizer_json_that_never_ends_is_not_read_to_its_end(folder):
    tokenizer = folder / "tokenizer" / "tokenizer.json"
    tokenizer.unlink()
    tokenizer.symlink_to("/dev/zero")
    result = run_bounded("validate", folder)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert "tokenizer_tokenizer.json" in result.stdout  # listed, but not a file it can hash


@pytest.mark.parametrize("name", ["train_2_of_2.hdf5", "test_files/test_1_of_1.jsonl"])
def test_a_split_file_renamed_with_a_trailing_line_break_is_missing(folder, name):
    path = folder / name
    path.rename(path.with_name(path.name + "\n"))
    manifest_path = folder / "sha256" / "files_metadata.json"
    manifest = json.loads(manifest_path.read_text())
    key = name.replace("/", "_")
    manifest[key + "\n"] = manifest.pop(key)
    manifest_path.write_text(json.dumps(manifest))
    result = invoke("validate", folder)
    assert result.exit_code == 1, result.stdout
    assert Path(name).name.split(".")[0] in result.stdout
