"""Reading Parquet and Arrow next to reading the same content as JSONL, and peak RSS on a large file.

The content is bench_tokenize's Markov-chain prompt/completion JSONL, written again as Parquet
(zstd, row groups of --row-group-mb) and as an Arrow IPC file, from one table. Each run is its own
process, round-robin over --repeat rounds, best wall time and worst RSS kept:

- `tokentype tokenize IN -o OUT --tokenizer GPT2 --packing greedy::truncate_right
  --max-seq-length 1024` for IN = the JSONL, the Parquet file and the Arrow file;
- the same with `--dataset DIR --train-files 8 --shuffle --workers 1` instead of -o (a build
  reads its input twice: counting, then routing).

The issue's bar is Parquet/JSONL wall <= 1.0; CPU time (user + system) is reported beside it,
being the steadier measure on a machine shared with other work. `--rss-gb G` instead writes one Parquet file of
about G GB (no compression, row groups of --row-group-mb) and reports the peak RSS of tokenizing
it: it must stay flat (bounded by a record batch, not the file). Not a test: run it by hand.

    .venv/bin/python benchmarks/bench_parquet.py --tokenizer ../shared/conformance/tokenizer-gpt2
    .venv/bin/python benchmarks/bench_parquet.py --mb 50 --repeat 3
    .venv/bin/python benchmarks/bench_parquet.py --rss-gb 1 --row-group-mb 100
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tokenize import DEFAULT_TOKENIZER, OUT
from bench_tokenize import run_timed as run_measured

CONVERT = r"""
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
source, parquet, arrow, row_group_mb, compression = sys.argv[1:6]
rows = [json.loads(line) for line in open(source, encoding="utf-8")]
table = pa.Table.from_pylist(rows)
per_row = max(1, table.nbytes // max(1, len(rows)))
pq.write_table(table, parquet, compression=None if compression == "none" else compression,
               row_group_size=max(1, int(float(row_group_mb) * 1e6) // per_row))
if arrow != "-":
    with pa.OSFile(arrow, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=10_000):
            writer.write_batch(batch)
print(len(rows))
"""

# A Parquet file of about G GB from one smaller JSONL, its rows repeated, one row group at a time
# (the writer never holds the file).
GROW = r"""
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
source, parquet, gigabytes, row_group_mb = sys.argv[1:5]
table = pa.Table.from_pylist([json.loads(line) for line in open(source, encoding="utf-8")])
per_row = max(1, table.nbytes // table.num_rows)
group_rows = max(1, int(float(row_group_mb) * 1e6) // per_row)
target = float(gigabytes) * 1e9
written = rows = 0
with pq.ParquetWriter(parquet, table.schema, compression="none") as writer:
    while written < target:
        group = pa.concat_tables([table] * (group_rows // table.num_rows + 1)).slice(0, group_rows)
        writer.write_table(group, row_group_size=group_rows)
        written += group.nbytes
        rows += group.num_rows
print(rows)
"""


def generate(megabytes: float, python: str) -> Path:
    source = OUT / f"tokenize_{megabytes:g}mb.jsonl"
    subprocess.run(
        [python, str(Path(__file__).parent / "bench_tokenize.py"), "--generate", str(source),
         "--mb", str(megabytes)],
        check=True, capture_output=True,
    )  # fmt: skip
    return source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--mb", type=float, default=50.0, help="Size of the JSONL input.")
    parser.add_argument("--repeat", type=int, default=3, help="Rounds; best wall is kept.")
    parser.add_argument("--row-group-mb", type=float, default=100.0)
    parser.add_argument("--rss-gb", type=float, default=None, help="Measure RSS on G GB instead.")
    args = parser.parse_args()
    if not (args.tokenizer / "tokenizer.json").is_file():
        raise SystemExit(f"{args.tokenizer}: no tokenizer.json (pass --tokenizer GPT2_FOLDER)")
    OUT.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    tokenize = [
        python, "-m", "tokentype_cli", "tokenize", "--tokenizer", str(args.tokenizer),
        "--packing", "greedy::truncate_right", "--max-seq-length", "1024", "--json", "-q",
        "--overwrite",
    ]  # fmt: skip
    if args.rss_gb is not None:
        big = OUT / f"rss_{args.rss_gb:g}gb.parquet"
        if not big.exists():
            small = generate(20, python)
            subprocess.run(
                [python, "-c", GROW, str(small), str(big), str(args.rss_gb),
                 str(args.row_group_mb)],
                check=True,
            )  # fmt: skip
        wall, _, rss, stdout = run_measured([*tokenize, str(big), "-o", str(OUT / "rss.h5")])
        metrics = json.loads(stdout)
        print(
            f"{big.name}: {big.stat().st_size / 2**30:.2f} GiB, {metrics['lines']:,} rows,"
            f" {metrics['input_tokens']:,} tokens: wall {wall:.1f} s, peak RSS {rss:.0f} MiB"
        )
        return
    source = generate(args.mb, python)
    parquet, arrow = OUT / f"{source.stem}.parquet", OUT / f"{source.stem}.arrow"
    if not parquet.exists() or not arrow.exists():
        subprocess.run(
            [python, "-c", CONVERT, str(source), str(parquet), str(arrow),
             str(args.row_group_mb), "zstd"],
            check=True, capture_output=True,
        )  # fmt: skip
    runs = {}
    for name, path in (("jsonl", source), ("parquet", parquet), ("arrow", arrow)):
        runs[f"-o {name}"] = [*tokenize, str(path), "-o", str(OUT / "parquet_bench.h5")]
    for name, path in (("jsonl", source), ("parquet", parquet)):
        runs[f"--dataset {name}"] = [
            *tokenize, str(path), "--dataset", str(OUT / "parquet_bench_ds"), "--overwrite",
            "--train-files", "8", "--shuffle", "--workers", "1",
        ]  # fmt: skip
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    rsses: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, argv in runs.items():
            wall, cpu, rss, _ = run_measured(argv)
            walls[name].append(wall)
            cpus[name].append(cpu)
            rsses[name].append(rss)
    shutil.rmtree(OUT / "parquet_bench_ds", ignore_errors=True)
    sizes = {"jsonl": source, "parquet": parquet, "arrow": arrow}
    print(
        f"{'run':<20} {'input MB':>9} {'wall s':>8} {'/jsonl':>7} {'CPU s':>8} {'/jsonl':>7}"
        f" {'RSS MiB':>8}"
    )
    results = []
    for name in runs:
        kind, fmt = name.split()
        wall, cpu, rss = min(walls[name]), min(cpus[name]), max(rsses[name])
        ratio = wall / min(walls[f"{kind} jsonl"])
        cpu_ratio = cpu / min(cpus[f"{kind} jsonl"])
        size = sizes[fmt].stat().st_size / 1e6
        print(
            f"{name:<20} {size:>9.1f} {wall:>8.2f} {ratio:>7.3f} {cpu:>8.2f} {cpu_ratio:>7.3f}"
            f" {rss:>8.0f}"
        )
        results.append({"run": name, "input_mb": round(size, 1), "wall_s": round(wall, 2),
                        "wall_ratio_to_jsonl": round(ratio, 3), "cpu_s": round(cpu, 2),
                        "cpu_ratio_to_jsonl": round(cpu_ratio, 3),
                        "peak_rss_mib": round(rss, 1)})  # fmt: skip
    (OUT / "bench_parquet.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
