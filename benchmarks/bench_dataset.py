"""Wall time and memory of `tokenize --dataset` next to today's single-file `tokenize`.

The input is bench_tokenize's Markov-chain prompt/completion JSONL (at least 200,000 lines and
80 MB, then twice that). Each run is its own process, round-robin over --repeat rounds:

- single: `tokentype tokenize IN -o OUT.h5 --tokenizer GPT2 --packing greedy::truncate_right
  --max-seq-length 1024`
- dataset, workers 1 and 2: the same with `--dataset DIR --train-files 16 --dev-ratio 0.1
  --shuffle` instead of -o.

Peak RSS is per process: the tokentype process itself, and the largest of its worker processes
(RUSAGE_CHILDREN, read in a wrapper around the command). A build's wall time is split into
phases by when its progress messages came: start-up (imports, the tokenizer, the encoder's
proof), scan (count and fingerprint the input), route (write each split's lines to its bucket,
while the worker processes start), tokenize (the splits, until the last is done) and finish
(balance, metadata, tokenizer, manifest, the rename). Not a test: run it by hand.

    .venv/bin/python benchmarks/bench_dataset.py --tokenizer ../shared/conformance/tokenizer-gpt2
    .venv/bin/python benchmarks/bench_dataset.py --mb 82 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tokenize import DEFAULT_TOKENIZER, OUT

# Runs tokentype in this process, then reports its own and its children's peak RSS, and when
# each of the build's progress messages came (the build shows them only on a terminal, so
# stderr here says it is one and stamps each message instead of showing it).
WRAPPER = r"""
import json, resource, sys, time
started = time.perf_counter()
stamps = []


class Stamped:
    def __init__(self):
        self.held = ""

    def write(self, text):
        self.held += text.replace("\r", "\n")
        *done, self.held = self.held.split("\n")
        stamps.extend((time.perf_counter() - started, line) for line in done if line.strip())
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return True


if __name__ == "__main__":  # the build's worker processes import this module again
    from tokentype_cli.cli import cli
    if "--dataset" in sys.argv:
        sys.stderr = Stamped()
    try:
        cli.main(args=sys.argv[2:], prog_name="tokentype", standalone_mode=False)
    finally:
        usage = {
            "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "stamps": stamps + [(time.perf_counter() - started, "end")],
        }
        with open(sys.argv[1], "w") as handle:
            json.dump(usage, handle)
"""

# Where a build's time goes: (phase, the message that starts it). A phase ends where the next
# begins; "finish" runs from the last split tokenized to the end.
PHASES = [
    ("start-up", None),
    ("scan", "reading the inputs"),
    ("route", "routing "),
    ("tokenize", "tokenizing "),
    ("finish", "balancing "),
]


def phases(stamps: list[tuple[float, str]]) -> dict[str, float]:
    """Seconds in each of PHASES, from a run's stamped progress messages."""
    starts = {"start-up": 0.0}
    last_tokenized = None
    for when, line in stamps:
        for name, prefix in PHASES[1:]:
            if prefix and line.startswith(prefix) and name not in starts:
                starts[name] = when
        if line.startswith("tokenized "):
            last_tokenized = when
    end = stamps[-1][0]
    if last_tokenized is not None:
        starts["finish"] = last_tokenized
    order = [name for name, _ in PHASES if name in starts]
    bounds = [starts[name] for name in order] + [end]
    return {name: round(bounds[k + 1] - bounds[k], 2) for k, name in enumerate(order)}


def run(argv: list[str], rss_file: Path) -> tuple[float, float, float, dict[str, float]]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr}")
    usage = json.loads(rss_file.read_text())
    return wall, usage["self"], usage["children"], phases(usage["stamps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--mb", type=float, default=82.0, help="Size of the first input.")
    parser.add_argument("--lines", type=int, default=200_000, help="At least this many lines.")
    parser.add_argument("--repeat", type=int, default=1, help="Rounds; the best wall is kept.")
    parser.add_argument("--no-double", action="store_true", help="Skip the doubled input.")
    args = parser.parse_args()
    if not (args.tokenizer / "tokenizer.json").is_file():
        raise SystemExit(f"{args.tokenizer}: no tokenizer.json (pass --tokenizer GPT2_FOLDER)")
    OUT.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    sizes = [(args.mb, args.lines)] + ([] if args.no_double else [(2 * args.mb, 2 * args.lines)])
    rss_file = OUT / "dataset_rss.json"
    results = []
    for megabytes, lines in sizes:
        source = OUT / f"dataset_{megabytes:g}mb.jsonl"
        if not source.exists():
            generate = (
                "import sys; sys.path.insert(0, sys.argv[1]); from bench_tokenize import make_input;"
                " print(make_input(__import__('pathlib').Path(sys.argv[2]), float(sys.argv[3]),"
                " int(sys.argv[4])))"
            )
            subprocess.run(
                [python, "-c", generate, str(Path(__file__).parent), str(source), str(megabytes),
                 str(lines)],
                check=True, capture_output=True,
            )  # fmt: skip
        with open(source, "rb") as handle:
            count = sum(1 for _ in handle)
        # No -q for a build: its progress messages time the phases.
        common = [
            "--tokenizer", str(args.tokenizer), "--packing", "greedy::truncate_right",
            "--max-seq-length", "1024",
        ]  # fmt: skip
        dataset = ["--train-files", "16", "--dev-ratio", "0.1", "--shuffle"]
        folder = OUT / "dataset_dir"
        runs = {
            "single -o": ["tokenize", str(source), "-o", str(OUT / "single.h5"), "--overwrite", *common, "-q"],
            "dataset, workers 1": [
                "tokenize", str(source), "--dataset", str(folder), "--overwrite", *common,
                *dataset, "--workers", "1",
            ],
            "dataset, workers 2": [
                "tokenize", str(source), "--dataset", str(folder), "--overwrite", *common,
                *dataset, "--workers", "2",
            ],
        }  # fmt: skip
        measured: dict[str, list[tuple[float, float, float, dict[str, float]]]] = {
            name: [] for name in runs
        }
        for _ in range(args.repeat):
            for name, argv in runs.items():
                measured[name].append(run([python, "-c", WRAPPER, str(rss_file), *argv], rss_file))
        shutil.rmtree(folder, ignore_errors=True)
        single = min(wall for wall, *_ in measured["single -o"])
        for name, rounds in measured.items():
            best = min(rounds, key=lambda r: r[0])
            results.append(
                {
                    "input_mb": round(source.stat().st_size / 1e6, 1),
                    "lines": count,
                    "run": name,
                    "wall_s": round(best[0], 2),
                    "ratio_to_single": round(best[0] / single, 3),
                    "rss_mib": round(max(r[1] for r in rounds), 1),
                    "worker_rss_mib": round(max(r[2] for r in rounds), 1),
                    "phases_s": best[3] if name != "single -o" else {},
                }
            )
    print(
        f"{'input':>9} {'lines':>8} {'run':<20} {'wall s':>7} {'/single':>8} {'RSS':>6} {'worker':>7}"
        "  where the time went (fastest round), s"
    )
    for r in results:
        where = " ".join(f"{name} {seconds:g}" for name, seconds in r["phases_s"].items())
        print(
            f"{r['input_mb']:>7}MB {r['lines']:>8} {r['run']:<20} {r['wall_s']:>7}"
            f" {r['ratio_to_single']:>8} {r['rss_mib']:>6} {r['worker_rss_mib']:>7}  {where}"
        )
    (OUT / "bench_dataset.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
