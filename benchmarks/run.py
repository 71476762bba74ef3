"""Run the benchmarks: `make bench` (the headline ratios, a few minutes) or `make bench-full`.

Each benchmark runs as its own script with the sizes of the chosen profile. Everything they
write (inputs, shards, their temporaries, the Hugging Face cache) goes into one folder under
benchmarks/out, removed at the end whatever happens, and TMPDIR points there, so nothing is left
in the system temporary folder. A benchmark that fails is reported and the others still run;
the exit status is 1 if any failed.

    .venv/bin/python benchmarks/run.py            # quick: the headline ratios
    .venv/bin/python benchmarks/run.py --full     # every benchmark at its own sizes
    .venv/bin/python benchmarks/run.py --only tokenize hf_datasets
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Quick: sizes that keep each ratio meaningful (each run well above process start-up) while the
# whole profile stays within about three minutes on two loaded cores.
QUICK = {
    "tokenize": [
        "bench_tokenize.py",
        "--mb",
        "4",
        "--min-lines",
        "6000",
        "--repeat",
        "1",
        "--quick",
    ],
    "hf_datasets": ["bench_hf_datasets.py", "--lines", "6000", "--repeat", "1"],
    "dataset": ["bench_dataset.py", "--mb", "4", "--lines", "6000", "--no-double"],
    "assign_types": ["bench_assign_types.py", "--rows", "4000", "--small", "400"],
    "foundation": ["bench_foundation.py", "--tokens", "12e6", "--small-tokens", "3e6"],
    "diff": ["bench_diff.py", "--tokens", "6e6"],
    # The issue-20 size: at 2,000 conversations start-up is a third of the run and hides the ratio.
    "chat": ["bench_chat.py", "--conversations", "20000", "--repeat", "1"],
    "parquet": ["bench_parquet.py", "--mb", "4", "--repeat", "1"],
}
FULL = {
    "foundation": ["bench_foundation.py"],
    "assign_types": ["bench_assign_types.py"],
    "tokenize": ["bench_tokenize.py"],
    "dataset": ["bench_dataset.py"],
    "diff": ["bench_diff.py"],
    "chat": ["bench_chat.py"],
    "parquet": ["bench_parquet.py"],
    "hf_datasets": ["bench_hf_datasets.py", "--lines", "20000", "--repeat", "3"],
}
# Scripts that take a --folder for what they build.
TAKES_FOLDER = {"bench_foundation.py", "bench_diff.py"}


def run(script: str, options: list[str], env: dict[str, str]) -> int:
    """Run one benchmark in a session of its own; on the way out (Ctrl-C, SIGTERM, an error)
    its whole process tree is ended, so nothing goes on writing into the folder being removed."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / script), *options], env=env, start_new_session=True
    )
    try:
        return process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _stop(signum: int, _frame: object) -> None:
    # SIGTERM as Ctrl-C: unwinds through the `with` that removes the folder.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="every benchmark at its own sizes")
    parser.add_argument("--only", nargs="+", choices=sorted(QUICK), help="these benchmarks only")
    args = parser.parse_args()
    profile = FULL if args.full else QUICK
    chosen = [name for name in profile if not args.only or name in args.only]
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    failed = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".run-", dir=out) as folder:
        work = Path(folder)
        env = {
            **os.environ,
            "TMPDIR": str(work),
            "TOKENTYPE_BENCH_OUT": str(work),
            "HF_HOME": str(work / "hf"),
        }
        for name in chosen:
            script, *options = profile[name]
            if script in TAKES_FOLDER:
                options += ["--folder", str(work / name)]
            print(f"\n== {name}: {script} {' '.join(options)}", flush=True)
            began = time.monotonic()
            if run(script, options, env):
                failed.append(name)
            print(f"   ({time.monotonic() - began:.0f} s)", flush=True)
            # Each benchmark's files go before the next starts: the disk holds one at a time.
            for entry in work.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
    print(f"\n{len(chosen)} benchmarks in {time.monotonic() - started:.0f} s", end="")
    print(f"; failed: {', '.join(failed)}" if failed else "")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
