"""Throughput of validate, inspect (summary) and add-types next to plain h5py on the same data.

Generates shards of realistic token ids (Zipf-distributed, prompt/completion/separator/padding
structure), then times each command in its own process and records its peak RSS, at two sizes so
that flat memory shows. Not a test: run it by hand (`make bench`) and read the table.

    .venv/bin/python benchmarks/bench_foundation.py --tokens 100e6 --small-tokens 25e6
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tokentype_cli.schema.storage import chunk_rows, step_rows
from tokentype_cli.schema.write import ShardWriter

SEQ_LEN = 1024
VOCAB = 50257
EOS = 50256
RANK_TO_ID = np.random.default_rng(1).permutation(VOCAB - 1).astype(np.int32)


def synthetic_block(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of one article each: prompt, completion, EOS separator, EOS padding."""
    # Zipf ranks mapped through a fixed permutation: frequent ids spread over the vocabulary
    # as in real text, so compression is realistic.
    ids = RANK_TO_ID[np.minimum(rng.zipf(1.2, (rows, SEQ_LEN)), VOCAB - 1) - 1]
    columns = np.arange(SEQ_LEN)
    prompt_end = rng.integers(8, SEQ_LEN // 3, rows)[:, None]
    separator_at = rng.integers(SEQ_LEN // 2, SEQ_LEN, rows)[:, None]
    types = np.where(columns < prompt_end, 0, 1).astype(np.int32)
    types[columns == separator_at] = 3
    types[columns > separator_at] = 2
    ids[types >= 2] = EOS
    return ids, types


def make_shard(path: Path, tokens: int, types_npy: Path) -> int:
    rows = max(1, int(tokens) // SEQ_LEN)
    rng = np.random.default_rng(0)
    source = np.lib.format.open_memmap(types_npy, mode="w+", dtype=np.int8, shape=(rows, SEQ_LEN))
    with ShardWriter(path, SEQ_LEN) as writer:
        step = step_rows(SEQ_LEN)
        for first in range(0, rows, step):
            ids, types = synthetic_block(rng, min(step, rows - first))
            writer.append(input_ids=ids, token_type_ids=types)
            # add-types gets a different typing so that it writes real data
            source[first : first + len(types)] = np.where(types == 0, 1, types)
    source.flush()
    del source
    return rows * SEQ_LEN


# Runs a command inside a fresh interpreter and reports that interpreter's own VmHWM at exit.
# ru_maxrss will not do: Linux carries it over from the parent across fork and exec, so every
# child would report the shard builder's peak.
MEASURED = """
import atexit, runpy, sys
report, kind, target, *args = sys.argv[1:]
def peak():
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    with open(report, "w") as out:
        out.write(str(kib))
atexit.register(peak)
sys.argv = [target, *args]
if kind == "module":
    runpy.run_module(target, run_name="__main__")
else:
    exec(compile(target, "<benchmark>", "exec"), {"__name__": "__main__"})
"""


def run_measured(kind: str, target: str, args: list[str], report: Path) -> tuple[float, float]:
    """Run a module (`kind` "module") or code (`kind` "code"); return (wall s, peak RSS MiB)."""
    argv = [sys.executable, "-c", MEASURED, str(report), kind, target, *args]
    started = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f"{target} {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return elapsed, int(report.read_text()) / 1024


PLAIN_READ = """
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    a, b = f["input_ids"], f["token_type_ids"]
    step = a.chunks[0] * 16
    for i in range(0, a.shape[0], step):
        a[i:i + step].sum(); b[i:i + step].sum()
"""

PLAIN_WRITE = """
import sys, h5py
from tokentype_cli.schema.storage import create_rows_dataset, step_rows
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as out:
    a = f["token_type_ids"]
    step = step_rows(a.shape[1])
    d = create_rows_dataset(out, "token_type_ids", a.shape[1], rows=a.shape[0])
    for i in range(0, a.shape[0], step):
        d[i:i + step] = a[i:i + step]
"""


def measure(folder: Path, tokens_wanted: float) -> dict:
    shard = folder / f"bench_{int(tokens_wanted)}.h5"
    types = folder / f"types_{int(tokens_wanted)}.npy"
    tokens = make_shard(shard, int(tokens_wanted), types)
    tt = ("module", "tokentype_cli")
    runs = {
        "plain h5py read (both datasets)": ("code", PLAIN_READ, [str(shard)]),
        "plain h5py write (token_type_ids)": (
            "code",
            PLAIN_WRITE,
            [str(shard), str(folder / "plain_write.h5")],
        ),
        "validate": (
            *tt,
            ["validate", str(shard), "--vocab-size", str(VOCAB), "--prompt-loss-weight", "0"],
        ),
        "inspect (summary)": (*tt, ["inspect", str(shard), "--json", "--prompt-loss-weight", "0"]),
        "add-types (-o, .npy source)": (
            *tt,
            [
                "add-types",
                str(shard),
                str(types),
                "--overwrite",
                "-o",
                str(folder / "typed.h5"),
                "-q",
            ],
        ),
    }
    results = {"tokens": tokens, "file_mib": shard.stat().st_size / 2**20, "runs": {}}
    for name, (kind, target, args) in runs.items():
        seconds, rss = run_measured(kind, target, args, folder / "peak_rss_kib")
        results["runs"][name] = {
            "seconds": round(seconds, 2),
            "mtok_per_s": round(tokens / seconds / 1e6, 1),
            "peak_rss_mib": round(rss, 1),
        }
    for path in (shard, types, folder / "plain_write.h5", folder / "typed.h5"):
        path.unlink(missing_ok=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=float, default=100e6, help="tokens in the large shard")
    parser.add_argument(
        "--small-tokens", type=float, default=25e6, help="tokens in the small shard"
    )
    parser.add_argument("--folder", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--json", action="store_true", help="print raw results as JSON")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    results = [measure(args.folder, args.small_tokens), measure(args.folder, args.tokens)]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"chunk rows {chunk_rows(SEQ_LEN)}, seq_len {SEQ_LEN}")
    for result in results:
        read_rate = result["runs"]["plain h5py read (both datasets)"]["mtok_per_s"]
        write_rate = result["runs"]["plain h5py write (token_type_ids)"]["mtok_per_s"]
        print(f"\n{result['tokens'] / 1e6:.0f}M tokens, {result['file_mib']:.0f} MiB on disk")
        print(f"{'run':36} {'s':>7} {'Mtok/s':>8} {'ratio':>7} {'RSS MiB':>8}")
        for name, run in result["runs"].items():
            base = write_rate if name.startswith(("add-types", "plain h5py write")) else read_rate
            print(
                f"{name:36} {run['seconds']:7.2f} {run['mtok_per_s']:8.1f}"
                f" {run['mtok_per_s'] / base:7.2f} {run['peak_rss_mib']:8.1f}"
            )


if __name__ == "__main__":
    main()
