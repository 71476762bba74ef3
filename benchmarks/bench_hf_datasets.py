"""`tokentype tokenize` next to the recipe most users write instead: Hugging Face `datasets`.

The recipe, as its tutorials write it: `load_dataset("json")`, a batched `map` over `--procs`
processes that tokenizes prompt and completion, masks the prompt (labels -100), appends EOS,
and `save_to_disk`. It tokenizes with transformers' `AutoTokenizer` where transformers is
installed (as users do), else with `tokenizers` directly; it does not pack, so its rows vary in
length. tokentype runs `tokenize IN -o OUT.h5 --tokenizer GPT2 --max-seq-length 1024 --packing
greedy::truncate_right` on the same lines (bench_tokenize's Markov-chain prompt/completion JSONL).

Each run is its own process; wall seconds and CPU seconds (user + system of it and every process
it waited for, the recipe's map workers included), best of --repeat rounds taken in turn. On a
machine shared with other work, the CPU ratio is the one to compare. Everything is written in a
temporary folder (the recipe's cache too, through HF_DATASETS_CACHE and TMPDIR) and removed.

Runs only where `datasets` is installed (`pip install datasets`, or `.[compare]`); else it says
so and exits 0. Not a test.

    .venv/bin/python benchmarks/bench_hf_datasets.py --lines 20000 --procs 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tokenize import DEFAULT_TOKENIZER, markov_lines, run_timed

# The reference tool's own figures, as recorded by the project on the same kind of input: its
# CPU time over tokentype's. Printed beside this run's ratio, not measured here.
GDP_CPU_RATIO = "4.5-4.9x"

RECIPE = r"""
import sys
source, out, tokenizer_dir, procs = sys.argv[1:5]
from datasets import disable_progress_bars, load_dataset
disable_progress_bars()
try:
    from transformers import AutoTokenizer
except ImportError:
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(tokenizer_dir + "/tokenizer.json")
    def encode(texts):
        return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    eos = tokenizer.token_to_id("<|endoftext|>")
    used = "tokenizers"
else:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    def encode(texts):
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    used = "transformers AutoTokenizer"

def tokenize(batch):
    prompts = encode(batch["prompt"])
    completions = encode([" " + text for text in batch["completion"]])
    input_ids, labels = [], []
    for prompt, completion in zip(prompts, completions):
        input_ids.append(prompt + completion + [eos])
        labels.append([-100] * len(prompt) + completion + [eos])
    return {"input_ids": input_ids, "labels": labels}

dataset = load_dataset("json", data_files=source, split="train")
dataset = dataset.map(
    tokenize, batched=True, num_proc=int(procs), remove_columns=dataset.column_names
)
dataset.save_to_disk(out)
print(used)
"""


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and what it waited for, stdout)."""
    wall, cpu, _, stdout = run_timed(argv, env)
    return wall, cpu, stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--lines", type=int, default=20_000, help="prompt/completion lines")
    parser.add_argument("--procs", type=int, default=2, help="the recipe's map num_proc")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best of each kept")
    args = parser.parse_args()
    if importlib.util.find_spec("datasets") is None:
        print(
            "bench_hf_datasets: skipped, `datasets` is not installed (pip install datasets, or"
            " pip install -e '.[compare]')"
        )
        return
    if not (args.tokenizer / "tokenizer.json").is_file():
        raise SystemExit(f"{args.tokenizer}: no tokenizer.json (pass --tokenizer GPT2_FOLDER)")
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench-hf-") as folder:
        work = Path(folder)
        source = work / "pairs.jsonl"
        source.write_text("".join(markov_lines(args.lines, seed=0)), encoding="utf-8")
        env = {
            **os.environ,
            "TMPDIR": str(work),
            "HF_HOME": str(work / "hf"),
            "HF_DATASETS_CACHE": str(work / "hf" / "datasets"),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        runs = {
            "tokentype tokenize": [
                python, "-m", "tokentype_cli", "tokenize", str(source), "-o",
                str(work / "out.h5"), "--tokenizer", str(args.tokenizer), "--max-seq-length",
                "1024", "--packing", "greedy::truncate_right", "-q", "--overwrite",
            ],
            f"datasets recipe ({args.procs} processes)": [
                python, "-c", RECIPE, str(source), str(work / "saved"), str(args.tokenizer),
                str(args.procs),
            ],
        }  # fmt: skip
        measured: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        used = ""
        # In turn, round after round: on a shared machine load comes and goes, and each run
        # gets the same chances.
        for _ in range(args.repeat):
            for name, argv in runs.items():
                for leftover in (work / "saved", work / "hf"):
                    shutil.rmtree(leftover, ignore_errors=True)
                wall, cpu, stdout = run_measured(argv, env)
                if name.startswith("datasets"):
                    used = stdout.strip()
                measured[name].append((wall, cpu))
        best = {
            name: (min(w for w, _ in runs_), min(c for _, c in runs_))
            for name, runs_ in measured.items()
        }
    (ours_wall, ours_cpu), (theirs_wall, theirs_cpu) = best.values()
    load = os.getloadavg()[0]
    print(
        f"{args.lines:,} prompt/completion lines, GPT-2; best of {args.repeat}; load average"
        f" {load:.1f} on {os.cpu_count()} CPUs; the recipe tokenizes with {used}"
    )
    print(f"  {'run':<32} {'wall s':>7} {'CPU s':>7}")
    for name, (wall, cpu) in best.items():
        print(f"  {name:<32} {wall:>7.2f} {cpu:>7.2f}")
    print(
        f"  datasets recipe / tokentype: wall {theirs_wall / ours_wall:.2f}x, CPU"
        f" {theirs_cpu / ours_cpu:.2f}x (the reference tool generative_data_prep, as recorded:"
        f" {GDP_CPU_RATIO} tokentype's CPU time)"
    )
    print(
        json.dumps(
            {
                "lines": args.lines,
                "procs": args.procs,
                "tokenizer_in_recipe": used,
                "load_average": load,
                "runs": {name: {"wall_s": w, "cpu_s": c} for name, (w, c) in best.items()},
                "recipe_over_tokentype": {
                    "wall": theirs_wall / ours_wall,
                    "cpu": theirs_cpu / ours_cpu,
                },
                "gdp_over_tokentype_cpu_recorded": GDP_CPU_RATIO,
            }
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
