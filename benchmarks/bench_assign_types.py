"""Benchmark `assign-types`: M tokens/s for token and text rules next to plain h5py.

Two baselines, plain h5py with the schema's storage settings and types from one numpy comparison
(so they compress like real ones): `h5py` copies input_ids into a new file, reads it block by
block and writes token_type_ids (what `assign-types -o` does); `h5py_in_place` adds
token_type_ids to the file itself, with no copy and no atomicity. Ratios are against the faster.
Each measurement runs in its own process so its peak RSS is its own; a shard a tenth of the size
shows whether memory grows with the file.

Text rules (`until_text`, `between_text`, `until_re`) run on the same shard with the GPT-2
tokenizer (`--tokenizer`, default ../shared/conformance/tokenizer-gpt2; skipped when absent),
which decodes the marker ids as the text they look for: 3 `$`, 4 `%`, 10 11 `+,` (and the random
ids also hold ` $`, so `between_text` finds more STARTs than `between`). Their time includes
loading the tokenizer, as a run of the command does.

Each result has wall-clock and CPU seconds (user + system of the measuring process). On a machine
shared with other work, wall-clock time mostly measures the others; the CPU ratios are the ones
to compare there.

    .venv/bin/python benchmarks/bench_assign_types.py                 # builds a 102M-token shard
    .venv/bin/python benchmarks/bench_assign_types.py --rows 5000 --json | jq '.results'
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tokentype_cli.rules.assign import assign_types  # noqa: E402
from tokentype_cli.rules.parse import Structure, parse_rule_spec  # noqa: E402
from tokentype_cli.schema import names, storage, write  # noqa: E402

SEQ_LEN = 2048
SEP, PAD, USER, ASSISTANT = 2, 69, 3, 4
BASELINES = ("h5py", "h5py_in_place")
RULES = {
    "span": "span:0:64=prompt",
    "until": "until:10 11=prompt",
    "between": "between:3 .. 4=prompt",
}
TEXT_RULES = {
    "until_text": 'until:"+,"=prompt',
    "between_text": 'between:"$" .. "%"=prompt',
    "until_re": 'until:re:"[+],"=prompt',
}
GPT2 = ROOT.parent / "shared" / "conformance" / "tokenizer-gpt2"


def build_shard(path: Path, rows: int, seed: int = 0) -> None:
    """Rows of articles (sep 2), chat markers 3/4, a two-token marker 10 11, and end padding."""
    rng = np.random.default_rng(seed)
    step = storage.step_rows(SEQ_LEN)
    with write.ShardWriter(path, SEQ_LEN, (names.INPUT_IDS,)) as writer:
        for start in range(0, rows, step):
            n = min(step, rows - start)
            ids = rng.integers(5, 1000, size=(n, SEQ_LEN), dtype=np.int32)
            ids[ids == PAD] = 70
            ids[ids == 10] = 12
            roll = rng.random((n, SEQ_LEN))
            ids[roll < 1 / 600] = SEP
            ids[(roll > 0.5) & (roll < 0.5 + 1 / 150)] = USER
            ids[(roll > 0.6) & (roll < 0.6 + 1 / 150)] = ASSISTANT
            marker = np.flatnonzero(((roll > 0.7) & (roll < 0.7 + 1 / 400)).ravel())
            marker = marker[(marker % SEQ_LEN) < SEQ_LEN - 1]
            ids.ravel()[marker] = 10
            ids.ravel()[marker + 1] = 11
            pad_from = SEQ_LEN - rng.integers(0, 200, size=n)
            ids[np.arange(SEQ_LEN)[None, :] >= pad_from[:, None]] = PAD
            ids[np.arange(n), pad_from - 1] = SEP
            writer.append(input_ids=ids)


def _types_dataset(target: h5py.File, rows: int, seq_len: int) -> h5py.Dataset:
    return target.create_dataset(
        names.TOKEN_TYPE_IDS,
        shape=(rows, seq_len),
        dtype=storage.DTYPE,
        chunks=(storage.chunk_rows(seq_len), seq_len),
        compression=storage.COMPRESSION,
        compression_opts=storage.COMPRESSION_LEVEL,
        shuffle=storage.SHUFFLE,
    )


def _stream(ids: h5py.Dataset, types: h5py.Dataset) -> None:
    rows, seq_len = ids.shape
    step = storage.step_rows(seq_len)
    for row in range(0, rows, step):
        block = ids[row : row + step]
        types[row : row + len(block)] = (block == SEP).astype(np.int32) * 2 + 1


def run_baseline(shard: Path, out: Path) -> None:
    """New file: copy input_ids, read it, write token_type_ids (what assign-types -o does)."""
    with h5py.File(shard, "r") as source, h5py.File(out, "w") as target:
        source.copy(source[names.INPUT_IDS], target, name=names.INPUT_IDS)
        ids = source[names.INPUT_IDS]
        _stream(ids, _types_dataset(target, *ids.shape))


def run_baseline_in_place(copy: Path) -> None:
    """Add token_type_ids to the file itself: no copy, no atomicity (the cheapest possible)."""
    with h5py.File(copy, "a") as shard:
        ids = shard[names.INPUT_IDS]
        _stream(ids, _types_dataset(shard, *ids.shape))


def run_rule(shard: Path, out: Path, kind: str, tokenizer_path: Path) -> None:
    tokenizer = None
    if kind in TEXT_RULES:
        from tokentype_cli.tokenizer_loader import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_path)
    spec = {**RULES, **TEXT_RULES}[kind]
    rule = parse_rule_spec(spec, f"--rule {kind}", tokenizer)
    assign_types(shard, Structure(sep=(SEP,), pad=PAD), [rule], output=out, tokenizer=tokenizer)


def measure(shard: Path, kind: str, tokenizer_path: Path = GPT2) -> dict[str, float]:
    """Run one measurement in this process; print seconds and peak RSS."""
    with tempfile.TemporaryDirectory(dir=shard.parent) as folder:
        out = Path(folder) / "out.h5"
        if kind == "h5py_in_place":
            shutil.copyfile(shard, out)  # not timed
        started = time.perf_counter()
        cpu_started = time.process_time()
        if kind == "h5py":
            run_baseline(shard, out)
        elif kind == "h5py_in_place":
            run_baseline_in_place(out)
        else:
            run_rule(shard, out, kind, tokenizer_path)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process's peak RSS. ru_maxrss would do, but Linux carries it over from the parent
    across fork and exec, so a child would report the shard builder's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_subprocess(shard: Path, kind: str, tokenizer_path: Path) -> dict[str, float]:
    output = subprocess.run(
        [
            sys.executable,
            __file__,
            "--measure",
            kind,
            "--shard",
            str(shard),
            "--tokenizer",
            str(tokenizer_path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=50_000, help="rows of 2048 tokens (50000: 102M)"
    )
    parser.add_argument("--shard", type=Path, default=None, help="shard to build/reuse")
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs")
    parser.add_argument("--small", type=int, default=5_000, help="rows of the memory-check shard")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.add_argument(
        "--tokenizer", type=Path, default=GPT2, help="byte-level tokenizer for the text rules"
    )
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.shard, args.measure, args.tokenizer)))
        return
    folder = Path(tempfile.gettempdir())
    shard = args.shard or folder / f"bench_assign_types_{args.rows}.h5"
    small = folder / f"bench_assign_types_{args.small}.h5"
    for path, rows in ((shard, args.rows), (small, args.small)):
        if not path.exists():
            print(f"building {path} ({rows} x {SEQ_LEN} tokens)", file=sys.stderr)
            build_shard(path, rows)
    with h5py.File(shard, "r") as f:
        tokens = f[names.INPUT_IDS].size
    rules = [*RULES]
    if args.tokenizer.exists():
        rules += [*TEXT_RULES]
    else:
        print(f"no tokenizer at {args.tokenizer}: text rules skipped", file=sys.stderr)
    results = {}
    for kind in (*BASELINES, *rules):
        runs = [in_subprocess(shard, kind, args.tokenizer) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["seconds"])
        small_run = in_subprocess(small, kind, args.tokenizer)
        results[kind] = {
            "m_tokens_per_s": tokens / best["seconds"] / 1e6,
            "m_tokens_per_cpu_s": tokens / min(r["cpu_seconds"] for r in runs) / 1e6,
            "seconds": best["seconds"],
            "cpu_seconds": min(r["cpu_seconds"] for r in runs),
            "peak_rss_mib": best["peak_rss_mib"],
            "peak_rss_mib_small_shard": small_run["peak_rss_mib"],
        }
        print(f"{kind}: {results[kind]['m_tokens_per_s']:.1f} M tokens/s", file=sys.stderr)
    # Against the faster of the two baselines, so the ratio is never flattered.
    base = max(results[kind]["m_tokens_per_s"] for kind in BASELINES)
    cpu_base = max(results[kind]["m_tokens_per_cpu_s"] for kind in BASELINES)
    for kind in rules:
        results[kind]["ratio_to_h5py"] = results[kind]["m_tokens_per_s"] / base
        results[kind]["cpu_ratio_to_h5py"] = results[kind]["m_tokens_per_cpu_s"] / cpu_base
    summary = {
        "tokens": tokens,
        "shard": str(shard),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "results": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"{tokens / 1e6:.1f}M tokens ({shard}), load average {os.getloadavg()[0]:.1f} on"
        f" {os.cpu_count()} CPUs; M tokens/s by wall clock and by CPU time, ratios to the"
        f" faster h5py; peak RSS on this shard / on a {args.small}-row one"
    )
    for kind, r in results.items():
        wall = f"{r['ratio_to_h5py']:.2f}x" if kind in rules else "base"
        cpu = f"{r['cpu_ratio_to_h5py']:.2f}x" if kind in rules else "base"
        print(
            f"  {kind:<14} wall {r['m_tokens_per_s']:6.1f} ({wall:>5})"
            f"  cpu {r['m_tokens_per_cpu_s']:6.1f} ({cpu:>5})"
            f"  RSS {r['peak_rss_mib']:4.0f} / {r['peak_rss_mib_small_shard']:4.0f} MiB"
        )


if __name__ == "__main__":
    main()
