"""tokenize's metrics beyond token counts: special tokens written in the text, articles dropped
and why, prompts truncation removed, over-long lines, and a stdin pipe that stays open."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import CODON_VOCAB, CONFORMANCE, jsonl, read, wait_for_handlers
from tests.helpers import invoke_tokenize as invoke

GPT2 = CONFORMANCE / "tokenizer-gpt2"


def metrics(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def gpt2():
    if not (GPT2 / "tokenizer.json").is_file():
        pytest.skip(f"GPT-2 tokenizer not present at {GPT2} (outside the workplace)")
    return GPT2


def test_special_token_written_in_text_is_counted_and_named(gpt2, tmp_path):
    source = jsonl(
        tmp_path / "in.jsonl",
        {"prompt": "Say hi", "completion": "hi"},
        {"prompt": "Say bye", "completion": "bye<|endoftext|> and more"},
        {"prompt": "<|endoftext|>", "completion": "x"},
    )
    out = tmp_path / "out.h5"
    found = metrics(invoke(source, "-o", out, "--overwrite", "--tokenizer", gpt2, "--json"))
    assert found["special_tokens_in_text"] == 2
    assert found["special_tokens_first"] == f"{source}:2"
    text = invoke(source, "-o", out, "--overwrite", "--tokenizer", gpt2)
    assert f"2 lines write a special token in their text (first: {source}:2)" in text.stderr
    assert "--split-special-tokens" in text.stderr
    ids, _ = read(out)
    split = metrics(
        invoke(
            source,
            "-o",
            out,
            "--overwrite",
            "--tokenizer",
            gpt2,
            "--json",
            "--split-special-tokens",
        )
    )
    assert split["special_tokens_in_text"] == 0
    plain, _ = read(out)
    # As plain text <|endoftext|> is seven tokens (<, |, end, of, text, |, >), not id 50256.
    assert sum(row.count(50256) for row in plain) < sum(row.count(50256) for row in ids)


def test_articles_dropped_are_counted_by_reason(tmp_path):
    source = jsonl(
        tmp_path / "in.jsonl",
        {"prompt": "GAA", "completion": "ATG"},
        {"prompt": "GAA GGC GCC GAA GGC GCC", "completion": "ATG"},  # 8 tokens > 7: too long
        {"prompt": "GAA", "completion": "ATC"},
    )
    found = metrics(
        invoke(
            source, "-o", tmp_path / "o.h5", "--overwrite", "--tokenizer", CODON_VOCAB, "--max-seq-length", 7,
            "--packing", "single::drop", "--json",
        )
    )  # fmt: skip
    assert found["articles_dropped"] == {"too_long": 1, "prompt_only_row": 0}
    assert found["lines_dropped"] == 1
    # truncate_right keeps the long prompt and cuts the answer: the row has no completion left.
    cut = metrics(
        invoke(
            source, "-o", tmp_path / "o.h5", "--overwrite", "--tokenizer", CODON_VOCAB, "--max-seq-length", 6,
            "--packing", "single::truncate_right", "--json",
        )
    )  # fmt: skip
    assert cut["articles_dropped"] == {"too_long": 0, "prompt_only_row": 1}
    assert cut["rows"] == 2 and cut["lines_dropped"] == 1


def test_articles_dropped_in_full_packing_need_every_row_dropped(tmp_path):
    # Rows of 4 under full packing: line 1 (7 prompt tokens, ATG, EOS) spans three rows and only
    # its first is prompt-only, so it is cut, not dropped. Line 2's completion " " encodes to no
    # token, so its prompt and EOS fill rows without a completion token: every row it reached
    # is dropped, and it alone counts.
    source = jsonl(
        tmp_path / "in.jsonl",
        {"prompt": "GAA GAA GAA GAA GAA GAA GAA", "completion": "ATG"},
        {"prompt": "GAA GAA GAA GAA GAA GAA", "completion": " "},
        {"prompt": "GAA", "completion": "ATG"},
    )
    ledger = tmp_path / "ledger.jsonl"
    dropped = metrics(
        invoke(
            source, "-o", tmp_path / "o.h5", "--tokenizer", CODON_VOCAB, "--max-seq-length", 4,
            "--ledger", ledger, "--json",
        )
    )  # fmt: skip
    assert dropped["articles_dropped"] == {"too_long": 0, "prompt_only_row": 1}
    assert dropped["rows_dropped_prompt_only"] == 3 and dropped["lines_dropped"] == 1
    records = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [r["status"] for r in records] == ["partly_dropped", "dropped", "packed"]
    assert records[1]["reason"] == "prompt_only_row"
    kept = metrics(
        invoke(
            source, "-o", tmp_path / "o.h5", "--overwrite", "--tokenizer", CODON_VOCAB, "--max-seq-length", 4,
            "--keep-prompt-only-sequences", "--json",
        )
    )  # fmt: skip
    assert kept["articles_dropped"]["prompt_only_row"] == 0  # kept on request
    assert kept["rows_dropped_prompt_only"] == 0 and kept["lines_dropped"] == 0


def test_a_prompt_cut_away_by_truncate_left_is_warned_about(tmp_path):
    source = jsonl(tmp_path / "in.jsonl", {"prompt": "GAA GGC", "completion": "ATG ATC GAC ATG"})
    args = (
        source,
        "-o",
        tmp_path / "o.h5",
        "--overwrite",
        "--tokenizer",
        CODON_VOCAB,
        "--max-seq-length",
        4,
    )
    found = metrics(invoke(*args, "--packing", "single::truncate_left", "--json"))
    assert found["articles_prompt_cut_away"] == 1
    text = invoke(*args, "--packing", "single::truncate_left")
    assert "lost their whole prompt to truncate_left" in text.stderr
    kept = metrics(invoke(*args, "--packing", "single::truncate_right", "--json"))
    assert kept["articles_prompt_cut_away"] == 0


def test_a_line_over_the_size_limit_is_a_bad_line(tmp_path):
    source = jsonl(
        tmp_path / "in.jsonl",
        {"prompt": "GAA", "completion": "ATG"},
        {"prompt": "GAA", "completion": " ".join(["ATG"] * 40)},
    )
    out = tmp_path / "o.h5"
    result = invoke(source, "-o", out, "--tokenizer", CODON_VOCAB, "--max-line-bytes", 100)
    assert result.exit_code == 1
    assert f"{source}:2: the line is" in result.stderr and "--max-line-bytes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    rejects = tmp_path / "rejects.jsonl"
    skipped = invoke(
        source, "-o", out, "--tokenizer", CODON_VOCAB, "--max-line-bytes", 100,
        "--skip-bad-lines", rejects, "--json",
    )  # fmt: skip
    assert metrics(skipped)["lines_rejected"] == 1 and len(rejects.read_text().splitlines()) == 1


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_a_run_reading_an_open_stdin_pipe(signum, code, tmp_path):
    out = tmp_path / "out.h5"
    process = subprocess.Popen(
        [sys.executable, "-m", "tokentype_cli", "tokenize", "-", "-o", str(out),
         "--tokenizer", str(CODON_VOCAB)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    with process:
        process.stdin.write(b'{"prompt": "GAA", "completion": "ATG"}\n')
        process.stdin.flush()
        wait_for_handlers(process)
        time.sleep(0.5)  # blocked reading the pipe, which stays open
        started = time.monotonic()
        process.send_signal(signum)
        try:
            process.wait(timeout=10)
        finally:
            process.kill()
        stderr = process.stderr.read().decode()
    assert time.monotonic() - started < 8
    assert process.returncode == code, stderr
    assert not out.exists()
    assert [name for name in os.listdir(tmp_path)] == []


@pytest.mark.parametrize("target", ["output", "ledger"])
def test_a_full_disk_is_one_line_and_leaves_nothing(target, tmp_path):
    # RLIMIT_FSIZE stands in for a full disk (EFBIG where a disk gives ENOSPC). HDF5 used to
    # crash the interpreter's exit (SIGSEGV) over the file it could not flush.
    import resource

    source = tmp_path / "in.txt"
    rng = np.random.default_rng(0)
    codons = np.array(["GAA", "GGC", "GCC", "ATG", "ATC", "GAC"])
    source.write_text("".join(" ".join(rng.choice(codons, 12)) + "\n" for _ in range(20000)))
    out, ledger = tmp_path / "out.h5", tmp_path / "ledger.jsonl"
    limit = 64 << 10 if target == "output" else 1 << 30

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = [sys.executable, "-m", "tokentype_cli", "tokenize", str(source), "-o", str(out),
            "--tokenizer", str(CODON_VOCAB), "--max-seq-length", "64"]  # fmt: skip
    if target == "ledger":
        limit = 2 << 20  # the shard fits (about 0.3 MB), the ledger (about 5 MB) does not
        args += ["--ledger", str(ledger)]
    done = subprocess.run(args, capture_output=True, text=True, preexec_fn=small_files)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, lines
    named = out if target == "output" else ledger
    assert lines[0].startswith(f"Error: {named}: cannot be written: the file size limit")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 4)), min_size=1, max_size=30
    ),  # prompt and completion lengths in codons
    packing=st.sampled_from(
        ["full", "greedy::drop", "greedy::truncate_right", "single::drop", "single::truncate_left"]
    ),
    seq_len=st.integers(3, 9),
)
def test_lines_dropped_agrees_with_the_ledger(lines, packing, seq_len):
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.jsonl"
        source.write_text(
            "".join(
                json.dumps({"prompt": " ".join(["GAA"] * p), "completion": " ".join(["ATG"] * c)})
                + "\n"
                for p, c in lines
            )
        )
        ledger = Path(folder) / "ledger.jsonl"
        result = invoke(
            source, "-o", Path(folder) / "o.h5", "--tokenizer", CODON_VOCAB, "--packing", packing,
            "--max-seq-length", seq_len, "--ledger", ledger, "--json",
        )  # fmt: skip
        if result.exit_code != 0:  # every row dropped: no output at all, said as an error
            assert "no rows to write" in result.stderr
            return
        records = [json.loads(line) for line in ledger.read_text().splitlines()]
        placed_nothing = sum(1 for r in records if not r["rows"])
        assert json.loads(result.stdout)["lines_dropped"] == placed_nothing
