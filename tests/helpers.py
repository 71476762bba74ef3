"""Helpers the tests share: paths, the source document's examples, in-process CLI runs, shards built
in code under tmp_path (never committed as binaries)."""

from __future__ import annotations

import hashlib
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
from click.testing import CliRunner
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from tokentype_cli.cli import cli
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_IDS
from tokentype_cli.schema.write import ShardWriter

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"
CODON_VOCAB = SAMPLE_DATA / "codon_vocab.json"
CODON_MODEL_CONFIG = SAMPLE_DATA / "codon_model_config.json"
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance"


def conformance_table() -> dict[str, dict[str, str]]:
    """{case: {column: cell}} from the table in the shared conformance README, which gives each
    case's settings; empty where the folder is absent."""
    readme = CONFORMANCE / "README.md"
    if not readme.is_file():
        return {}
    rows = [line.strip() for line in readme.read_text().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    table = {}
    for line in rows[2:]:
        cells = [cell.strip().strip("`") for cell in line.strip("|").split("|")]
        row = dict(zip(header, cells, strict=True))
        table[row["case"]] = row
    return table


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


def wait_for_handlers(process: subprocess.Popen, timeout: float = 60) -> None:
    """Until `process` has installed its SIGINT and SIGTERM handlers (read from /proc): before
    that a signal tests only Python's defaults, and its exit status would be -signum."""
    status = Path(f"/proc/{process.pid}/status")
    wanted = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            lines = status.read_text().splitlines()
        except OSError:  # no /proc here: give the interpreter time to start
            time.sleep(1.0)
            return
        caught = next((int(line.split()[1], 16) for line in lines if line.startswith("SigCgt:")), 0)
        if caught & wanted == wanted:
            return
        time.sleep(0.01)


# Runs the command, reads at most HEAD bytes of its stdout (then closes it, as `| head` does)
# and prints its exit status and peak RSS in MB (the largest process it waited for).
_MEASURE = """
import resource, subprocess, sys
head = int(sys.argv[1])
process = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
process.stdout.read(head) if head else process.stdout.read()
process.stdout.close()
stderr = process.stderr.read()
code = process.wait()
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
sys.stderr.write(stderr.decode(errors="replace"))
"""


def peak_rss(*args, head=0, timeout=120) -> tuple[int, int, str]:
    """(exit code, peak RSS in MB, stderr) of `tokentype ARGS` in a process of its own; with
    `head`, its stdout is closed after that many bytes."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(head), sys.executable, "-m", "tokentype_cli",
         *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )  # fmt: skip
    code, rss = map(int, done.stdout.split())
    return code, rss, done.stderr


def build(inputs, folder: Path, *extra, seq_len: int = 8, packing: str = "single::drop"):
    return invoke(
        "tokenize", *inputs, "--dataset", folder, "--tokenizer", CODON_VOCAB,
        "--model-config", CODON_MODEL_CONFIG, "--max-seq-length", seq_len, "--packing", packing,
        *extra,
    )  # fmt: skip


def folder_digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def manifest_hashes(folder: Path) -> dict[str, str]:
    data = json.loads((folder / "sha256" / "files_metadata.json").read_text())
    return {key: value["sha256"] for key, value in data.items()}


SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)


# ChatML, as in many tokenizer_config.json files, with and without generation markers.
CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def make_tokenizer(folder: Path, template: str | list | None, eos: str = "<|im_end|>", **extra):
    """A tokenizer folder: byte-level BPE over single bytes (plus " H"), chat special tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["ĠH"] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[("Ġ", "H")]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"eos_token": eos, "pad_token": "<|endoftext|>", "bos_token": "<|begin_of_text|>"}
    if template is not None:
        config["chat_template"] = template
    config.update(extra)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def write_lines(path: Path, *records) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records),
        encoding="utf-8",
    )
    return path


def runs(shard: Path, folder: Path) -> list[list[tuple[str, str]]]:
    """Each row as (type, text) runs: consecutive tokens of one type, decoded together."""
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    names = ("prompt", "completion", "padding", "separator")
    out = []
    with h5py.File(shard, "r") as f:
        for ids, types in zip(
            f["input_ids"][:].tolist(), f["token_type_ids"][:].tolist(), strict=True
        ):
            row: list[tuple[str, list[int]]] = []
            for token, kind in zip(ids, types, strict=True):
                if kind == 2:
                    continue
                if row and row[-1][0] == names[kind]:
                    row[-1][1].append(token)
                else:
                    row.append((names[kind], [token]))
            out.append([(k, tokenizer.decode(t, skip_special_tokens=False)) for k, t in row])
    return out


RECIPES = ROOT / "docs" / "recipes"


OPTIONS = (
    f"--max-seq-length 8 --packing single::drop --train-files 4 --dev-files 1 --test-files 1"
    f" --shuffle --seed 3 --model-config {CODON_MODEL_CONFIG}"
)


# Text for comparing encoders: scripts, code, emoji, contractions, odd spaces, special-token
# look-alikes; and every string of up to 8 characters from " \n\ta" (the whitespace splits).
TEXTS = [
    "Grüße aus München, 1234567 Äpfel und 3.14159 Birnen!",
    "日本語のテキストと中文混合，还有한국어 문장도 있습니다。",
    "Привет, мир! Ελληνικά κείμενα — and العربية text ١٢٣",
    "def f(x):\n    return x ** 2  # square\n\n\tif x:\r\n        pass\n" + " " * 40 + "end",
    "emoji 😀👍🏽👨‍👩‍👧🇫🇷 and combining e\u0301 a\u0308\u0301 n\u0303",
    "I'M sure they'll say it's DON'T-stop 'S 'll 've CamelCaseWord HTTPServer iPhone",
    "   leading spaces\u00a0nbsp\u3000ideographic   trailing   ",
    "aaaaaaaaaaaaaaaaaaaaaaaaa ababababababab ========---------======== ............",
    "<|begin_of_text|> <|eot_id|> [INST] </s> <s>",
    "path/to/file\n/usr/bin/env\r\n// comment /* c */",
]
RUNS = ["".join(p) for k in range(1, 9) for p in itertools.product(" \n\ta", repeat=k)]
