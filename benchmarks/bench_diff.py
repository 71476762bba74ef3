"""Throughput and peak RSS of `diff` next to plain h5py reading both files (target: >= 0.5x).

Builds shard A (Zipf-distributed ids, prompt/completion/separator/padding rows) and three B's:
`same` (a byte copy: the CI gate's usual case), `retyped` (1% of rows change some types in
place) and `shuffled` (all rows reordered, 1% retyped: every changed row goes through the second
pass). Each command runs in its own process; plain h5py reads all four datasets of both files
block by block. Tokens per second count the tokens of both files. Not a test: run it by hand
(`make bench`) and read the table.

    .venv/bin/python benchmarks/bench_diff.py --tokens 50e6
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_foundation import SEQ_LEN, run_measured, synthetic_block  # noqa: E402

from tokentype_cli.schema.storage import step_rows  # noqa: E402
from tokentype_cli.schema.write import ShardWriter  # noqa: E402

PLAIN_READ_BOTH = """
import sys, h5py
for name in sys.argv[1:]:
    with h5py.File(name, "r") as f:
        a, b = f["input_ids"], f["token_type_ids"]
        step = a.chunks[0] * 16
        for i in range(0, a.shape[0], step):
            a[i:i + step].sum(); b[i:i + step].sum()
"""


def build(folder: Path, tokens: float) -> dict[str, Path]:
    rows = max(1, int(tokens) // SEQ_LEN)
    rng = np.random.default_rng(0)
    step = step_rows(SEQ_LEN)
    ids_parts, types_parts = [], []
    paths = {name: folder / f"{name}.h5" for name in ("a", "retyped", "shuffled")}
    order = rng.permutation(rows)
    with ShardWriter(paths["a"], SEQ_LEN) as a, ShardWriter(paths["retyped"], SEQ_LEN) as b:
        for first in range(0, rows, step):
            ids, types = synthetic_block(rng, min(step, rows - first))
            a.append(input_ids=ids, token_type_ids=types)
            changed = types.copy()
            pick = rng.random(len(types)) < 0.01
            # A template change: the first completion tokens of those rows become prompt.
            changed[pick, 8:24] = np.where(changed[pick, 8:24] == 1, 0, changed[pick, 8:24])
            b.append(input_ids=ids, token_type_ids=changed)
            ids_parts.append(ids)
            types_parts.append(changed)
    # The shuffled copy is held in memory once: fine for benchmark sizes (2 x 4 bytes a token).
    ids_all, types_all = np.concatenate(ids_parts), np.concatenate(types_parts)
    del ids_parts, types_parts
    with ShardWriter(paths["shuffled"], SEQ_LEN) as writer:
        for first in range(0, rows, step):
            rows_now = order[first : first + step]
            writer.append(input_ids=ids_all[rows_now], token_type_ids=types_all[rows_now])
    del ids_all, types_all
    paths["same"] = folder / "same.h5"
    shutil.copyfile(paths["a"], paths["same"])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=float, default=50e6, help="tokens in each shard")
    parser.add_argument("--folder", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--json", action="store_true", help="print raw results as JSON")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    paths = build(args.folder, args.tokens)
    tokens = 2 * (int(args.tokens) // SEQ_LEN) * SEQ_LEN
    report = args.folder / "peak_rss_kib"
    runs = {"plain h5py read (both files)": ("code", PLAIN_READ_BOTH, [paths["a"], paths["same"]])}
    for name in ("same", "retyped", "shuffled"):
        runs[f"diff a {name}"] = (
            "module",
            "tokentype_cli",
            ["diff", paths["a"], paths[name], "--json", "-q", "--ignore", "order"],
        )
    results = {"tokens": tokens, "file_mib": paths["a"].stat().st_size / 2**20, "runs": {}}
    for name, (kind, target, argv) in runs.items():
        seconds, rss = run_measured(kind, target, [str(a) for a in argv], report)
        results["runs"][name] = {
            "seconds": round(seconds, 2),
            "mtok_per_s": round(tokens / seconds / 1e6, 1),
            "peak_rss_mib": round(rss, 1),
        }
    for path in paths.values():
        path.unlink(missing_ok=True)
    report.unlink(missing_ok=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    base = results["runs"]["plain h5py read (both files)"]["mtok_per_s"]
    print(
        f"2 x {tokens / 2e6:.0f}M tokens, {results['file_mib']:.0f} MiB per file, seq_len {SEQ_LEN}"
    )
    print(f"{'run':30} {'s':>7} {'Mtok/s':>8} {'ratio':>7} {'RSS MiB':>8}")
    for name, run in results["runs"].items():
        print(
            f"{name:30} {run['seconds']:7.2f} {run['mtok_per_s']:8.1f}"
            f" {run['mtok_per_s'] / base:7.2f} {run['peak_rss_mib']:8.1f}"
        )


if __name__ == "__main__":
    main()
