"""Throughput and memory of `tokentype tokenize` next to a floor that only encodes and writes.

Generates prompt/completion JSONL of Markov-chain English (no internet: the chain is built from
a paragraph written for this file), with a few percent of articles longer than a row. Then runs,
each in its own process, at two input sizes:

- tokentype (tiktoken) and tokentype (tokenizers): `tokentype tokenize IN -o OUT --tokenizer GPT2
  --packing greedy::truncate_right --max-seq-length 1024 --encoder auto|tokenizers` (auto runs
  tiktoken for GPT-2; the benchmark checks that it did)
- floor: json.loads each line, `Tokenizer.encode_batch` of the same prompts and completions in
  batches, ids to numpy, and h5py writing arrays of the same shape and storage settings
  (input_ids and token_type_ids, 1024 wide). No packing rules, no checks, no ledger.

Reports tokens/s, the tokentype/floor wall-clock ratio and peak RSS, and the time to build the
tiktoken encoder (its checks and ranks) for GPT-2 and for a 150k-token byte-level BPE trained
here once (cached in benchmarks/out). Not a test: run it by hand.

    .venv/bin/python benchmarks/bench_tokenize.py --tokenizer ../shared/conformance/tokenizer-gpt2
    .venv/bin/python benchmarks/bench_tokenize.py --mb 50 --small-mb 25 --repeat 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/run.py points this at a folder it removes afterwards.
OUT = Path(os.environ.get("TOKENTYPE_BENCH_OUT", ROOT / "benchmarks" / "out"))
DEFAULT_TOKENIZER = ROOT.parent / "shared" / "conformance" / "tokenizer-gpt2"

SEED_TEXT = """
The river town woke slowly in the grey light of early spring, and the first boats pushed out
from the landing while the baker was still pulling bread from the ovens. Most people in the town
had never travelled farther than the market at the end of the valley, yet they talked about the
wide world as if they knew it well. The old ferryman liked to say that every road leads back to
the water, and nobody could prove him wrong. When the council met in the hall above the library,
they argued about the bridge, the school, the price of grain and the new railway that would
change everything or nothing at all. A young engineer from the city had drawn plans for a
station near the mill, and she explained them patiently to anyone who would listen. Some of the
farmers worried that the trains would frighten the cattle; others hoped to sell their apples in
distant towns. In the evenings the square filled with children, dogs and musicians, and the
smell of roasted chestnuts drifted across the stones. How does a small place decide its own
future? The question is older than any of the houses on the hill. Records kept at the church
show that in 1847 the town voted to build a canal, and in 1852 it voted to fill it in again.
What would you do if you had to choose between the quiet you know and the noise of progress?
The teacher asked her students to write an essay about it, and their answers were surprisingly
wise. One boy wrote that a town is not its buildings but the people who keep coming back. A girl
wrote that change is like the river: you cannot stop it, but you can learn where it runs deep.
Scientists who studied the valley found that the climate had grown warmer over the last century,
with shorter winters, heavier summer storms and more frequent floods along the lower fields.
The report recommended planting trees on the slopes, restoring the wetlands and moving the
grain stores to higher ground. Please summarise the main arguments for and against the railway,
and explain which side you find more convincing and why. Answer in three short paragraphs.
"""


def markov_lines(lines: int, seed: int) -> list[str]:
    """JSONL lines of bigram-chain text; many chains are advanced at once with numpy."""
    words = SEED_TEXT.split()
    vocab = sorted(set(words))
    index = {w: i for i, w in enumerate(vocab)}
    successors: list[list[int]] = [[] for _ in vocab]
    for a, b in itertools.pairwise(words):
        successors[index[a]].append(index[b])
    successors[index[words[-1]]].append(index[words[0]])
    counts = np.array([len(s) for s in successors])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    flat = np.array([x for s in successors for x in s])
    names = np.array(vocab, dtype=object)
    rng = np.random.default_rng(seed)

    def chains(lengths: np.ndarray) -> list[str]:
        steps = int(lengths.max())
        state = rng.integers(0, len(vocab), len(lengths))
        grid = np.empty((steps, len(lengths)), dtype=np.int64)
        for t in range(steps):
            grid[t] = state
            state = flat[starts[state] + (rng.random(len(lengths)) * counts[state]).astype(int)]
        out = []
        for k, n in enumerate(lengths.tolist()):
            text = " ".join(names[grid[:n, k]])
            out.append(text)
        return out

    prompt_len = rng.integers(8, 40, lines)
    completion_len = np.minimum(rng.lognormal(3.7, 0.6, lines).astype(int) + 5, 700)
    long = rng.random(lines) < 0.02  # articles longer than a 1024-token row
    completion_len[long] = rng.integers(900, 1500, int(long.sum()))
    result = []
    for first in range(0, lines, 20000):
        end = min(lines, first + 20000)
        prompts = chains(prompt_len[first:end])
        completions = chains(completion_len[first:end])
        for k, (p, c) in enumerate(zip(prompts, completions, strict=True)):
            if (first + k) % 11 == 0:
                c = c.replace(". ", ".\n", 2)
            result.append(json.dumps({"prompt": p + "\n\nAnswer:", "completion": c}) + "\n")
    return result


def make_input(path: Path, megabytes: float, min_lines: int) -> int:
    """Write a JSONL of at least `megabytes` MB and `min_lines` lines; return its line count."""
    if path.exists():
        with path.open("rb") as existing:
            return sum(1 for _ in existing)
    target = int(megabytes * 1e6)
    written = count = 0
    seed = 0
    # The full-size inputs keep their 20,000-line chunks (and so their bytes); small ones stop
    # closer to what was asked.
    chunk = 20000 if min_lines >= 20000 else 4000
    with open(path, "w", encoding="utf-8") as handle:
        while written < target or count < min_lines:
            for line in markov_lines(chunk, seed):
                handle.write(line)
                written += len(line.encode())
                count += 1
            seed += 1
    return count


FLOOR = r"""
import itertools, json, sys
import h5py, numpy as np
from tokenizers import Tokenizer
from tokentype_cli.schema.storage import chunk_rows, COMPRESSION, COMPRESSION_LEVEL, SHUFFLE
source, out, tokenizer, method = sys.argv[1:5]
L = 1024
tok = Tokenizer.from_file(tokenizer + "/tokenizer.json")
encode = getattr(tok, method)
with h5py.File(out, "w") as f:
    kw = dict(maxshape=(None, L), dtype="<i4", chunks=(chunk_rows(L), L),
              compression=COMPRESSION, compression_opts=COMPRESSION_LEVEL, shuffle=SHUFFLE)
    ids_ds = f.create_dataset("input_ids", shape=(0, L), **kw)
    types_ds = f.create_dataset("token_type_ids", shape=(0, L), **kw)
    carry = np.empty(0, np.int32)
    rows = 0
    def write(block):
        global rows
        n = len(block)
        for ds, data in ((ids_ds, block), (types_ds, np.ones_like(block))):
            ds.resize(rows + n, axis=0)
            ds[rows:rows + n] = data
        rows += n
    def batches(handle, size=2048):
        while True:
            lines = list(itertools.islice(handle, size))
            if not lines:
                return
            yield lines
    with open(source, "rb") as handle:
        for lines in batches(handle):
            texts = []
            for line in lines:
                record = json.loads(line)
                texts.append(record.get("prompt", ""))
                texts.append(" " + record["completion"])
            encodings = encode(texts)
            total = sum(len(e) for e in encodings)
            flat = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int32, total)
            stream = np.concatenate([carry, flat])
            full = len(stream) // L
            step = chunk_rows(L) * 16
            for first in range(0, full, step):
                write(stream[first * L:min(full, first + step) * L].reshape(-1, L))
            carry = stream[full * L:]
    if len(carry):
        write(np.pad(carry, (0, L - len(carry)), constant_values=50256)[None])
"""


def run_timed(
    argv: list[str], env: dict[str, str] | None = None
) -> tuple[float, float, float, str]:
    """Run a command; return (wall s, CPU s, peak RSS MiB of that process, stdout). CPU time is
    kept beside wall time: on a machine shared with other work, it is the steadier measure."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    stdout = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    error = process.stderr.read().decode()
    process.stdout.close()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{error[-3000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout


def run_measured(argv: list[str]) -> tuple[float, float, str]:
    """Run a command; return (wall seconds, peak RSS MiB of that process, stdout)."""
    elapsed, _, rss, stdout = run_timed(argv)
    return elapsed, rss, stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--mb", type=float, default=100.0, help="Size of the large input.")
    parser.add_argument("--small-mb", type=float, default=50.0, help="Size of the small input.")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="Rounds; the best wall time and the worst RSS are kept.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Only the --mb input, without the encoder build and offsets timings.",
    )
    parser.add_argument(
        "--min-lines", type=int, default=100_000, help="Each input has at least this many lines."
    )
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--train", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train:
        train_large_vocabulary(args.train)
        return
    if args.generate:
        print(make_input(args.generate, args.mb, args.min_lines))
        return
    if not (args.tokenizer / "tokenizer.json").is_file():
        raise SystemExit(f"{args.tokenizer}: no tokenizer.json (pass --tokenizer GPT2_FOLDER)")
    OUT.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    results = []
    for megabytes in (args.mb,) if args.quick else (args.small_mb, args.mb):
        source = OUT / f"tokenize_{megabytes:g}mb.jsonl"
        # Generated in a child process: a child's peak RSS starts from its parent's at fork time,
        # so the parent must stay small for the measurements to mean anything.
        made = subprocess.run(
            [
                python,
                __file__,
                "--generate",
                str(source),
                "--mb",
                str(megabytes),
                "--min-lines",
                str(args.min_lines),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        lines = int(made.stdout)
        size = source.stat().st_size / 1e6
        tokentype = [
            python, "-m", "tokentype_cli", "tokenize", str(source), "-o",
            str(OUT / "tokenize.h5"), "--tokenizer", str(args.tokenizer),
            "--packing", "greedy::truncate_right", "--max-seq-length", "1024", "--json", "-q",
            "--overwrite",
        ]  # fmt: skip
        runs = {
            "tokentype (tiktoken)": [*tokentype, "--encoder", "auto"],
            "tokentype (tokenizers)": [*tokentype, "--encoder", "tokenizers"],
            "floor (encode_batch)": [
                python, "-c", FLOOR, str(source), str(OUT / "floor.h5"), str(args.tokenizer),
                "encode_batch",
            ],
            "floor (encode_batch_fast)": [
                python, "-c", FLOOR, str(source), str(OUT / "floor.h5"), str(args.tokenizer),
                "encode_batch_fast",
            ],
        }  # fmt: skip
        # Round-robin, best of --repeat: on a shared machine, load comes and goes; interleaving
        # gives every run the same chances.
        walls: dict[str, list[float]] = {name: [] for name in runs}
        rsses: dict[str, list[float]] = {name: [] for name in runs}
        tokens = None
        for _ in range(args.repeat):
            for name, argv in runs.items():
                wall, rss, stdout = run_measured(argv)
                if name.startswith("tokentype"):
                    metrics = json.loads(stdout)
                    tokens = metrics["input_tokens"]
                    if metrics["encoder"] not in name:
                        raise SystemExit(f"{name} ran the {metrics['encoder']} encoder")
                walls[name].append(wall)
                rsses[name].append(rss)
        measured = {name: (min(walls[name]), max(rsses[name])) for name in runs}
        for name, (wall, rss) in measured.items():
            results.append(
                {
                    "input_mb": round(size, 1),
                    "lines": lines,
                    "run": name,
                    "wall_s": round(wall, 2),
                    "tokens_per_s": round(tokens / wall),
                    "peak_rss_mib": round(rss, 1),
                    "ratio_to_floor": round(wall / measured["floor (encode_batch)"][0], 3),
                    "ratio_to_fast_floor": round(
                        wall / measured["floor (encode_batch_fast)"][0], 3
                    ),
                }
            )
        print(f"{size:.1f} MB, {lines} lines, {tokens} tokens", file=sys.stderr)
    builds, offsets = {}, {}
    if not args.quick:
        builds = encoder_build_times(args.tokenizer, python)
        offsets = offsets_times(args.tokenizer, OUT / f"tokenize_{args.small_mb:g}mb.jsonl", python)
    header = f"{'input':>8} {'run':<26} {'wall s':>7} {'tokens/s':>10} {'RSS MiB':>8} {'/floor':>7} {'/fast':>7}"
    print(header)
    for r in results:
        print(
            f"{r['input_mb']:>6}MB {r['run']:<26} {r['wall_s']:>7} {r['tokens_per_s']:>10}"
            f" {r['peak_rss_mib']:>8} {r['ratio_to_floor']:>7} {r['ratio_to_fast_floor']:>7}"
        )
    for name, seconds in builds.items():
        print(f"tiktoken encoder build, {name}: {seconds:.3f} s (best of 3)")
    for name, seconds in offsets.items():
        print(f"encode_with_offsets of ChatML-rendered lines, {name}: {seconds:.3f} s (best of 3)")
    (OUT / "bench_tokenize.json").write_text(
        json.dumps({"runs": results, "encoder_build_s": builds, "offsets_s": offsets}, indent=2)
    )


BUILD = r"""
import sys, time
from tokentype_cli.tokenizer_loader import load_tokenizer
from tokentype_cli.tokenize.encoders import build_encoder
times = []
for _ in range(3):
    # As tokenize does: the loader keeps its parsed file for the first build.
    loaded = load_tokenizer(sys.argv[1], keep_definition=True)
    started = time.perf_counter()
    build_encoder(loaded, "tiktoken")
    times.append(time.perf_counter() - started)
print(min(times))
"""


OFFSETS = r"""
import itertools, json, sys, time
from tokentype_cli.tokenizer_loader import load_tokenizer
from tokentype_cli.tokenize.encoders import build_encoder
source, tokenizer = sys.argv[1:3]
texts = []
with open(source, encoding="utf-8") as handle:
    for line in itertools.islice(handle, 20000):
        record = json.loads(line)
        texts.append(
            f"<|im_start|>user\n{record['prompt']}<|im_end|>\n"
            f"<|im_start|>assistant\n{record['completion']}<|im_end|>\n"
        )
loaded = load_tokenizer(tokenizer)
found = {}
for choice in ("tiktoken", "tokenizers"):
    encoder = build_encoder(loaded, choice)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        for first in range(0, len(texts), 2048):
            encoder.encode_with_offsets(texts[first : first + 2048])
        times.append(time.perf_counter() - started)
    found[choice] = min(times)
print(json.dumps(found))
"""


def offsets_times(gpt2: Path, source: Path, python: str) -> dict[str, float]:
    """The chat path's encoder call (ids and character offsets), one thread, both encoders."""
    chatml = gpt2.parent / "tokenizer-chatml"
    tokenizer = chatml if chatml.is_dir() else gpt2
    done = subprocess.run(
        [python, "-c", OFFSETS, str(source), str(tokenizer)], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"timing encode_with_offsets failed: {done.stderr}")
    return {f"{name}, 20,000 lines": seconds for name, seconds in json.loads(done.stdout).items()}


def large_vocabulary(python: str) -> Path:
    """A 150k-token byte-level BPE (Llama-3 split regex), trained once on generated words."""
    path = OUT / "bpe_150k.json"
    if not path.exists():
        subprocess.run([python, __file__, "--train", str(path)], check=True)
    return path


def train_large_vocabulary(path: Path) -> None:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from tokenizers.trainers import BpeTrainer

    from tokentype_cli.tokenize.fast_bpe import PATTERNS

    rng = np.random.default_rng(0)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqzäéßñ"))
    # Zipf-ish word lengths and letters: enough distinct pairs for 150k merges.
    words = [
        "".join(letters[np.minimum(rng.zipf(1.3, n) - 1, len(letters) - 1)])
        for n in rng.integers(2, 16, 1_500_000)
    ]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PATTERNS["llama3"]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = BpeTrainer(
        vocab_size=150_000,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(
        (" ".join(words[i : i + 50]) for i in range(0, len(words), 50)), trainer
    )
    tokenizer.save(str(path))


def encoder_build_times(gpt2: Path, python: str) -> dict[str, float]:
    """Seconds to build the tiktoken encoder (checks, ranks, tiktoken) from a loaded tokenizer."""
    found = {}
    for name, path in (("GPT-2", gpt2), ("150k-token BPE", large_vocabulary(python))):
        done = subprocess.run([python, "-c", BUILD, str(path)], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"building the encoder for {path} failed: {done.stderr}")
        vocab = json.loads(
            path.joinpath("tokenizer.json").read_text() if path.is_dir() else path.read_text()
        )
        found[f"{name} ({len(vocab['model']['vocab']):,} tokens)"] = float(done.stdout)
    return found


if __name__ == "__main__":
    main()
