"""How tokenize reads its inputs: compression, folders, streams, BOMs, line ends, blank lines."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import threading

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import CODON_PAIR, CODON_VOCAB, jsonl, read
from tests.helpers import invoke_tokenize as invoke
from tokentype_cli.errors import InputError
from tokentype_cli.tokenize.read import input_lines, line_blocks

PAIR_IDS = [9, 5, 6, 10, 7, 8, 2]
PAIR_TYPES = [0, 0, 0, 1, 1, 1, 3]
OTHER = {"prompt": "GAA", "completion": "ATG"}
OTHER_IDS = [9, 10, 2]


def run(tmp_path, *inputs, extra=()):
    out = tmp_path / "out.h5"
    result = invoke(
        *inputs, "-o", out, "--tokenizer", CODON_VOCAB, "--packing", "single::drop",
        "--max-seq-length", 7, "--json", *extra,
    )  # fmt: skip
    return result, out


def rows(out):
    ids, _ = read(out)
    return [[t for t in row if t != 69] for row in ids]  # 69 is the codon vocabulary's PAD


def pairs_bytes(*records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_inputs_are_read_directly(suffix, tmp_path):
    data = pairs_bytes(CODON_PAIR, OTHER)
    packed = gzip.compress(data) if suffix.endswith("gz") else zstandard.compress(data)
    source = tmp_path / f"in{suffix}"
    source.write_bytes(packed)
    result, out = run(tmp_path, source)
    assert result.exit_code == 0, result.output
    assert rows(out) == [PAIR_IDS, OTHER_IDS]


def test_damaged_compressed_input_is_one_line(tmp_path):
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(gzip.compress(pairs_bytes(CODON_PAIR) * 50)[:30])
    result, out = run(tmp_path, source)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {source}: cannot read")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_byte_order_mark_is_skipped(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + pairs_bytes(CODON_PAIR, OTHER))
    result, out = run(tmp_path, source)
    assert result.exit_code == 0, result.output
    assert rows(out) == [PAIR_IDS, OTHER_IDS]


def test_blank_jsonl_lines_are_skipped_counted_and_in_the_ledger(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(pairs_bytes(CODON_PAIR) + b"\n   \r\n" + pairs_bytes(OTHER))
    ledger = tmp_path / "ledger.jsonl"
    result, out = run(tmp_path, source, extra=("--ledger", ledger))
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["lines"] == 4 and metrics["lines_blank"] == 2
    assert rows(out) == [PAIR_IDS, OTHER_IDS]
    records = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [(r["line"], r["status"], r["reason"]) for r in records] == [
        (1, "packed", None),
        (2, "dropped", "blank"),
        (3, "dropped", "blank"),
        (4, "packed", None),
    ]


def test_crlf_jsonl_lines_are_accepted(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(pairs_bytes(CODON_PAIR, OTHER).replace(b"\n", b"\r\n"))
    result, out = run(tmp_path, source)
    assert result.exit_code == 0, result.output
    assert rows(out) == [PAIR_IDS, OTHER_IDS]


def test_txt_lines_end_at_lf_crlf_and_a_lone_cr(tmp_path):
    source = tmp_path / "in.txt"
    source.write_bytes(b"GAA GGC\rGCC\r\nATG ATC\nGAC")
    ledger = tmp_path / "ledger.jsonl"
    result, out = run(tmp_path, source, extra=("--ledger", ledger))
    assert result.exit_code == 0, result.output
    assert rows(out) == [[9, 5, 2], [6, 2], [10, 7, 2], [8, 2]]
    assert [json.loads(line)["line"] for line in ledger.read_text().splitlines()] == [1, 2, 3, 4]


def test_last_line_without_newline_does_not_join_the_next_file(tmp_path):
    first = tmp_path / "a.txt"
    first.write_bytes(b"GAA GGC")  # no newline at the end
    second = tmp_path / "b.txt"
    second.write_bytes(b"ATG\n")
    result, out = run(tmp_path, first, second)
    assert result.exit_code == 0, result.output
    assert rows(out) == [[9, 5, 2], [10, 2]]


def test_a_folder_is_its_files_sorted_by_name(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    jsonl(folder / "b.jsonl", OTHER)
    jsonl(folder / "a.jsonl", CODON_PAIR)
    (folder / "notes.md").write_text("ignored")
    result, out = run(tmp_path, folder)
    assert result.exit_code == 0, result.output
    assert rows(out) == [PAIR_IDS, OTHER_IDS]


def test_a_folder_mixing_formats_names_both(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    jsonl(folder / "a.jsonl", CODON_PAIR)
    (folder / "b.txt").write_text("GAA\n")
    result, out = run(tmp_path, folder)
    assert result.exit_code == 1
    assert "a.jsonl" in result.stderr and "b.txt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_json_array_file_gets_the_jq_hint(tmp_path):
    source = tmp_path / "data.json"
    source.write_text(json.dumps([CODON_PAIR, OTHER], indent=2))
    result, out = run(tmp_path, source)
    assert result.exit_code == 1
    assert f"{source}:1: " in result.stderr and "jq -c '.[]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "name, says",
    [("data.parquet", "not a readable Parquet file"), ("data.jsonl", "name it .parquet")],
)
def test_a_damaged_or_misnamed_parquet_file_is_one_line(name, says, tmp_path):
    pytest.importorskip("pyarrow", reason="reading Parquet needs the tokentype[parquet] extra")
    source = tmp_path / name
    source.write_bytes(b"PAR1\x00\x00\x15\x04" + b"\x00" * 64)
    result, out = run(tmp_path, source)
    assert result.exit_code == 1
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_fifo_is_read_as_a_stream(tmp_path):
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    data = pairs_bytes(CODON_PAIR, OTHER)

    def feed() -> None:
        with open(fifo, "wb") as handle:
            handle.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    result, out = run(tmp_path, fifo)
    writer.join()
    assert result.exit_code == 0, result.output
    assert rows(out) == [PAIR_IDS, OTHER_IDS]


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(
        st.sampled_from([b"a", b"b", b" ", b"\n", b"\r", b"\r\n", b"\xef\xbb\xbf", "é".encode()]),
        max_size=40,
    ),
    block=st.sampled_from([1, 2, 3, 5, 8, 1 << 20]),
)
def test_line_blocks_see_the_lines_input_lines_sees(pieces, block):
    # The dataset build counts and routes lines a block at a time; the tokenizer reads them one
    # by one. Both must agree on every line end (\n, \r\n, a lone \r), the BOM and the last line.
    data = b"".join(pieces)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "in.txt")
        with open(path, "wb") as handle:
            handle.write(data)
        try:
            expected = [line.raw for line in input_lines(path)]
        except InputError:
            expected = "empty"
        try:
            got = []
            for chunk, ends in line_blocks(path, block=block):
                starts = [0, *ends[:-1].tolist()]
                got += [chunk[a:b] for a, b in zip(starts, ends.tolist(), strict=True)]
        except InputError:
            got = "empty"
    assert got == expected
