"""Every command example of the README runs, in order, in a folder where the names it uses
exist (built from sample_data/): none is a usage error or a traceback. Findings are allowed
(validate and diff exit 1 on purpose); a usage error means the README went stale."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.helpers import CODON_MODEL_CONFIG, CODON_VOCAB, ROOT, SAMPLE_DATA, write_pairs

# Blocks that set the machine up rather than run tokentype (a clone needs the network: _world
# makes the folder it would give).
SETUP = ("make ", "eval ", "_TOKENTYPE_COMPLETE", "git clone ")


def examples() -> list[str]:
    """Each README sh block's commands, a continued line joined, comments dropped."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#") and not line.startswith(SETUP):
                commands.append(line)
    return commands


def _tokenizer_folder(folder: Path) -> None:
    folder.mkdir()
    shutil.copy(CODON_VOCAB, folder / "tokenizer.json")
    shutil.copy(CODON_MODEL_CONFIG, folder / "config.json")


def _world(tmp: Path, env: dict) -> None:
    """The files and folders the README names, small and built from the codon examples."""
    (tmp / "sample_data").symlink_to(SAMPLE_DATA)

    def run(*args: str) -> None:
        done = subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (args, done.stderr)

    _tokenizer_folder(tmp / "llama3")
    _tokenizer_folder(tmp / "tok")
    (tmp / "data").mkdir()
    write_pairs(tmp / "data" / "pairs.jsonl", 80)
    # qwen/: a ChatML tokenizer knowing the words of the chat sample and of pairs.jsonl.
    shutil.copy(SAMPLE_DATA / "chat.jsonl", tmp / "chat.jsonl")
    (tmp / "pairs.jsonl").write_text(
        json.dumps({"prompt": "Say hello.", "completion": "Hello, nice to meet you."}) + "\n"
    )
    run(sys.executable, str(SAMPLE_DATA / "make_chat_tokenizer.py"), "chat.jsonl", "qwen")
    if not (tmp / "qwen" / "config.json").exists():  # a model folder carries one
        shutil.copy(CODON_MODEL_CONFIG, tmp / "qwen" / "config.json")
    pairs = str(tmp / "data" / "pairs.jsonl")
    common = ["--tokenizer", "tok/", "--max-seq-length", "16", "-q"]
    run("tokentype", "tokenize", pairs, "-o", "shard.h5", "--no-types", *common)
    with h5py.File(tmp / "shard.h5") as handle:
        rows = handle["input_ids"].shape
    np.save(tmp / "types.npy", np.ones(rows, np.int32))
    (tmp / "shards").mkdir()
    run("tokentype", "tokenize", pairs, "-o", "shards/a.h5", *common)
    run("tokentype", "tokenize", pairs, "-o", "out.h5", "--ledger", "out.ledger.jsonl", *common)
    run("tokentype", "tokenize", pairs, "-o", "old.h5", *common)
    run("tokentype", "tokenize", pairs, "-o", "new.h5", "--packing", "greedy::drop", *common)
    # hub/: what cloning a Hub dataset gives, Parquet shards under data/ (words qwen/ knows).
    (tmp / "hub" / "data").mkdir(parents=True)
    record = json.loads((tmp / "pairs.jsonl").read_text())
    for k in range(4):
        table = pa.Table.from_pylist([record] * 20)
        pq.write_table(table, tmp / "hub" / "data" / f"train-{k:05d}-of-00004.parquet")
    for name in ("dataset", "build-v1", "build-v2", "old", "new"):
        run("tokentype", "tokenize", pairs, "--dataset", name, "--train-files", "8", *common)


def test_the_readme_examples_run(tmp_path):
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["NO_COLOR"] = "1"
    _world(tmp_path, env)
    ran = 0
    for command in examples():
        # A pager would wait for a terminal; the rest runs as written.
        line = command.replace("| less -R", "| cat")
        if "| jq" in line and shutil.which("jq") is None:
            continue
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", line],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        # Only the checking commands exit 1 on purpose (findings, differences).
        allowed = (0, 1) if re.match(r"tokentype (validate|diff) ", command) else (0,)
        assert done.returncode in allowed, (command, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, (command, done.stderr[-2000:])
        assert "Usage:" not in done.stderr, (command, done.stderr[-2000:])
        ran += 1
    assert ran >= 25
