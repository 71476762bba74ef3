"""Helpers the tests share: paths, the source document's examples, in-process CLI runs, shards built
in code under tmp_path (never committed as binaries)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
from click.testing import CliRunner

from tokentype_cli.cli import cli
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_IDS
from tokentype_cli.schema.write import ShardWriter

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"
CODON_VOCAB = SAMPLE_DATA / "codon_vocab.json"
CODON_MODEL_CONFIG = SAMPLE_DATA / "codon_model_config.json"
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance"

# The source document's genetic-code examples.
EXAMPLE1_IDS = [9, 5, 6, 10, 7, 8, 2]
EXAMPLE1_TYPES = [0, 0, 0, 1, 1, 1, 3]
EXAMPLE1_ALT_TYPES = [1, 1, 0, 0, 1, 1, 3]
EXAMPLE2_IDS = [9, 5, 6, 10, 7, 8, 2, 69, 69, 69, 69]
EXAMPLE2_TYPES = [0, 0, 0, 1, 1, 1, 3, 2, 2, 2, 2]


def invoke(*args, input=None):
    """Run `tokentype ARGS...` in-process; stdout and stderr stay apart on the result."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def assert_one_line_error(result, code: int, *needles: str) -> None:
    """Exit `code`, nothing on stdout, and (for data errors) one `Error: ...` line holding needles."""
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ")
    for needle in needles:
        assert needle in last
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1


def digest(path: Path) -> str:
    """SHA-256 of a file, read in blocks: "byte-identical" checks compare these."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def types_of(path: Path) -> list[list[int]]:
    """A shard's token_type_ids as nested lists."""
    with h5py.File(path, "r") as shard:
        return shard[TOKEN_TYPE_IDS][:].tolist()


def write_shard(path: Path, input_ids, token_type_ids=None) -> Path:
    """Write a shard through the schema layer (types optional)."""
    input_ids = np.asarray(input_ids, dtype=np.int32)
    names = (INPUT_IDS,) if token_type_ids is None else (INPUT_IDS, TOKEN_TYPE_IDS)
    with ShardWriter(path, input_ids.shape[1], names) as writer:
        blocks = {INPUT_IDS: input_ids}
        if token_type_ids is not None:
            blocks[TOKEN_TYPE_IDS] = np.asarray(token_type_ids, dtype=np.int32)
        writer.append(**blocks)
    return path


CODON_PAIR = {"prompt": "GAA GGC GCC", "completion": "ATG ATC GAC"}


def read(path: Path) -> tuple[list, list | None]:
    with h5py.File(path, "r") as f:
        ids = f["input_ids"][:].tolist()
        types = f["token_type_ids"][:].tolist() if "token_type_ids" in f else None
    return ids, types


def jsonl(path: Path, *records) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


CODONS = ["ATG", "ATC", "GAC", "GGC", "GCC", "GAA"]


def write_pairs(path: Path, count: int, seed: int = 0) -> Path:
    """Prompt/completion lines of varied lengths over the codon vocabulary."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(count):
            prompt = " ".join(rng.choice(CODONS, rng.integers(1, 4)))
            completion = " ".join(rng.choice(CODONS, rng.integers(1, 5)))
            handle.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
    return path


def invoke_tokenize(*args, input=None):
    """Run `tokentype tokenize ARGS...` in-process."""
    return invoke("tokenize", *args, input=input)


def hub_cache(root: Path, model_id: str, source: Path, revision: str = "0123abcd") -> Path:
    """A Hugging Face cache under `root` holding `model_id` as the hub lays it out
    (models--ORG--NAME/snapshots/REV, refs/main naming REV), its files copied from `source`."""
    model = root / ("models--" + model_id.replace("/", "--"))
    snapshot = model / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        if file.is_file():
            (snapshot / file.name).write_bytes(file.read_bytes())
    (model / "refs").mkdir()
    (model / "refs" / "main").write_text(revision)
    return snapshot
