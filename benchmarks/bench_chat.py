"""Throughput and memory of `tokentype tokenize` on chat conversations next to a floor.

Generates 100,000 synthetic 3-turn conversations (a system prompt, then three user/assistant
exchanges of Markov-chain English, see bench_tokenize.py) and runs, each in its own process:

- tokentype (auto), tokentype (tokenizers): `tokentype tokenize chat.jsonl -o OUT --tokenizer
  CHATML --max-seq-length 1024 --packing greedy::truncate_right [--encoder tokenizers]` (render
  with the tokenizer's template, encode, place tokens, type per character, pack, write; auto
  encodes with tiktoken where fast_bpe proves it gives the tokenizer's ids; on Linux the
  conversations are read and rendered in a child process, tokenize/reader_process.py)
- floor: `Tokenizer.encode_batch` of the already rendered conversations in batches, ids to numpy
  and h5py writing arrays of the same shape and storage (input_ids and token_type_ids). Rendering
  is not in the floor: the ratio shows what rendering, typing and packing cost on top.

Reports conversations/s, the tokentype/floor wall-clock ratio and peak RSS (target: <= 1.3x,
<= 250 MiB; with tiktoken, issue 20 asks <= 0.7x). Not a test: run it by hand, on a quiet machine if you can.

    .venv/bin/python benchmarks/bench_chat.py --tokenizer ../shared/conformance/tokenizer-chatml
    .venv/bin/python benchmarks/bench_chat.py --conversations 20000 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tokenize import FLOOR, OUT, SEED_TEXT, run_measured

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOKENIZER = ROOT.parent / "shared" / "conformance" / "tokenizer-chatml"
SYSTEM = "You are a careful assistant. Answer the question about the town in plain English."

# The bench_tokenize floor, reading one rendered conversation per line as it is.
FLOOR_CHAT = FLOOR.replace(
    '                texts.append(record.get("prompt", ""))\n'
    '                texts.append(" " + record["completion"])\n',
    '                texts.append(record["completion"])\n',
)
assert FLOOR_CHAT.count("texts.append(") == 1


def conversations(count: int, seed: int) -> list[dict]:
    """`count` conversations of bigram-chain text, built with numpy over many chains at once."""
    rng = np.random.default_rng(seed)
    words = SEED_TEXT.split()
    vocab = sorted(set(words))
    index = {w: i for i, w in enumerate(vocab)}
    successors: list[list[int]] = [[] for _ in vocab]
    for a, b in zip(words, words[1:] + words[:1], strict=True):
        successors[index[a]].append(index[b])
    counts = np.array([len(s) for s in successors])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    flat = np.array([x for s in successors for x in s])
    names = np.array(vocab, dtype=object)

    def chains(lengths: np.ndarray) -> list[str]:
        state = rng.integers(0, len(vocab), len(lengths))
        grid = np.empty((int(lengths.max()), len(lengths)), dtype=np.int64)
        for t in range(len(grid)):
            grid[t] = state
            state = flat[starts[state] + (rng.random(len(lengths)) * counts[state]).astype(int)]
        return [" ".join(names[grid[:n, k]]) for k, n in enumerate(lengths.tolist())]

    turns = []
    for _ in range(3):
        turns.append(chains(rng.integers(8, 40, count)))  # user
        turns.append(chains(rng.integers(20, 120, count)))  # assistant
    out = []
    for k in range(count):
        messages = [{"role": "system", "content": SYSTEM}]
        for turn in range(3):
            messages.append({"role": "user", "content": turns[2 * turn][k]})
            messages.append({"role": "assistant", "content": turns[2 * turn + 1][k]})
        out.append({"messages": messages})
    return out


def make_inputs(chat_path: Path, rendered_path: Path, count: int, tokenizer: Path) -> None:
    """The chat JSONL, and the same conversations rendered (for the floor) as one line each."""
    from tokentype_cli.tokenize.chat import Chat, chat_line
    from tokentype_cli.tokenize.options import TokenizeOptions
    from tokentype_cli.tokenizer_loader import load_tokenizer

    loaded = load_tokenizer(tokenizer)
    chat = Chat(loaded, TokenizeOptions(), loaded.eos_id)
    with open(chat_path, "w", encoding="utf-8") as lines, open(rendered_path, "w") as rendered:
        for first in range(0, count, 20000):
            for record in conversations(min(20000, count - first), seed=first):
                lines.write(json.dumps(record) + "\n")
                text = chat.conversation(chat_line(record)).text
                rendered.write(json.dumps({"completion": text}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="Rounds; best wall, worst RSS.")
    parser.add_argument("--generate", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        make_inputs(*args.generate, args.conversations, args.tokenizer)
        return
    if not (args.tokenizer / "tokenizer.json").is_file():
        raise SystemExit(f"{args.tokenizer}: no tokenizer.json (pass --tokenizer CHATML_FOLDER)")
    OUT.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    chat_path = OUT / f"chat_{args.conversations}.jsonl"
    rendered_path = OUT / f"chat_{args.conversations}_rendered.jsonl"
    if not (chat_path.exists() and rendered_path.exists()):
        # In a child: a child's peak RSS starts from its parent's at fork time.
        subprocess.run(
            [
                python, __file__, "--generate", str(chat_path), str(rendered_path),
                "--conversations", str(args.conversations), "--tokenizer", str(args.tokenizer),
            ],
            check=True,
        )  # fmt: skip
    tokenize = [
        python, "-m", "tokentype_cli", "tokenize", str(chat_path), "-o", str(OUT / "chat.h5"),
        "--tokenizer", str(args.tokenizer), "--packing", "greedy::truncate_right",
        "--max-seq-length", "1024", "--json", "-q", "--overwrite",
    ]  # fmt: skip
    runs = {
        "tokentype (auto)": tokenize,
        "tokentype (tokenizers)": [*tokenize, "--encoder", "tokenizers"],
        "floor (encode_batch)": [
            python, "-c", FLOOR_CHAT, str(rendered_path), str(OUT / "chat_floor.h5"),
            str(args.tokenizer), "encode_batch",
        ],
    }  # fmt: skip
    walls: dict[str, list[float]] = {name: [] for name in runs}
    rsses: dict[str, list[float]] = {name: [] for name in runs}
    metrics = {}
    for _ in range(args.repeat):  # round-robin: load on a shared machine comes and goes
        for name, argv in runs.items():
            wall, rss, stdout = run_measured(argv)
            if name.startswith("tokentype"):
                metrics = json.loads(stdout)
            walls[name].append(wall)
            rsses[name].append(rss)
    floor = min(walls["floor (encode_batch)"])
    print(
        f"{args.conversations:,} conversations, {metrics['input_tokens']:,} tokens,"
        f" {metrics['seams']} seams",
    )
    print(f"{'run':<22} {'wall s':>7} {'conv/s':>8} {'tokens/s':>10} {'RSS MiB':>8} {'/floor':>7}")
    results = []
    for name in runs:
        wall, rss = min(walls[name]), max(rsses[name])
        row = {
            "run": name,
            "conversations": args.conversations,
            "wall_s": round(wall, 2),
            "conversations_per_s": round(args.conversations / wall),
            "tokens_per_s": round(metrics["input_tokens"] / wall),
            "peak_rss_mib": round(rss, 1),
            "ratio_to_floor": round(wall / floor, 3),
        }
        results.append(row)
        print(
            f"{name:<22} {row['wall_s']:>7} {row['conversations_per_s']:>8}"
            f" {row['tokens_per_s']:>10} {row['peak_rss_mib']:>8} {row['ratio_to_floor']:>7}"
        )
    (OUT / "bench_chat.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
