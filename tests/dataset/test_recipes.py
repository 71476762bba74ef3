"""The README's recipes for many machines, run for real: a Makefile under make -j and a Slurm
array script with the variables Slurm sets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import CODON_MODEL_CONFIG as MODEL_CONFIG
from tests.helpers import CODON_VOCAB, OPTIONS, RECIPES, ROOT, invoke, manifest_hashes, write_pairs


@pytest.fixture
def reference(tmp_path) -> tuple[Path, Path]:
    source = write_pairs(tmp_path / "data.jsonl", 200)
    folder = tmp_path / "one_process"
    result = invoke(
        "tokenize", source, "--dataset", folder, "--tokenizer", CODON_VOCAB, *OPTIONS.split()
    )
    assert result.exit_code == 0, result.output
    return source, folder


def environment() -> dict[str, str]:
    # The venv's bin holds the tokentype script; nothing assumes a bare `python`.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_recipe_under_make_j(reference, tmp_path):
    source, expected = reference
    command = [
        "make", "-f", str(RECIPES / "dataset.mk"), "-j3", f"INPUT={source.name}",
        f"TOKENIZER={CODON_VOCAB}", "DATASET=ds", "TASKS=3", f"OPTIONS={OPTIONS}",
    ]  # fmt: skip
    first = subprocess.run(command, cwd=tmp_path, env=environment(), capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert manifest_hashes(tmp_path / "ds") == manifest_hashes(expected)
    assert not (tmp_path / ".ds.tokentype-tasks").exists()
    # Up to date: nothing runs again.
    stamp = (tmp_path / "ds" / "metadata.yaml").stat().st_mtime_ns
    again = subprocess.run(command, cwd=tmp_path, env=environment(), capture_output=True, text=True)
    assert again.returncode == 0 and "tokenize" not in again.stdout, again.stdout
    assert (tmp_path / "ds" / "metadata.yaml").stat().st_mtime_ns == stamp
    # A new input rebuilds the folder in place.
    time.sleep(0.01)
    write_pairs(source, 150, seed=9)
    rebuilt = subprocess.run(
        command, cwd=tmp_path, env=environment(), capture_output=True, text=True
    )
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert manifest_hashes(tmp_path / "ds") != manifest_hashes(expected)


def test_slurm_array_recipe(reference, tmp_path):
    source, expected = reference
    script = RECIPES / "slurm_dataset.sh"
    # A value with spaces inside OPTIONS, quoted as the script's comment says.
    config = tmp_path / "model config.json"
    shutil.copyfile(MODEL_CONFIG, config)
    options = OPTIONS.replace(f"--model-config {MODEL_CONFIG}", f'--model-config "{config}"')
    env = {
        **environment(),
        "INPUT": str(source),
        "TOKENIZER": str(CODON_VOCAB),
        "DATASET": str(tmp_path / "ds"),
        "OPTIONS": options + " --quiet",
        "TASKS": "3",
        "SLURM_ARRAY_TASK_COUNT": "3",
        "SLURM_CPUS_PER_TASK": "1",
    }

    def task(index: int, **extra) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(script)], env={**env, "SLURM_ARRAY_TASK_ID": str(index), **extra},
            capture_output=True, text=True,
        )  # fmt: skip

    def finish() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(script), "--finish"], env=env, capture_output=True, text=True
        )

    done = task(1)
    assert done.returncode == 0, done.stderr
    # Even with --quiet in OPTIONS, a task's log says what it built.
    assert f"task 1/3 of {tmp_path / 'ds'} built" in done.stdout
    early = finish()
    assert early.returncode == 1
    assert "tasks 0/3, 2/3 have not finished" in early.stderr
    # Rerunning one task as `sbatch --array=K` does: Slurm counts one task in that submission.
    for index in (0, 2):
        done = task(index, SLURM_ARRAY_TASK_COUNT="1")
        assert done.returncode == 0, done.stderr
    finished = finish()
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert manifest_hashes(tmp_path / "ds") == manifest_hashes(expected)
    unset = task(0, TASKS="")
    assert unset.returncode == 2 and "set TASKS" in unset.stderr


def test_the_docs_show_the_recipes_that_run_here():
    doc = (ROOT / "docs" / "many-machines.md").read_text()
    for recipe in ("dataset.mk", "slurm_dataset.sh"):
        assert (RECIPES / recipe).read_text() in doc, f"docs/many-machines.md's {recipe} is stale"
    assert "docs/many-machines.md" in (ROOT / "README.md").read_text()
