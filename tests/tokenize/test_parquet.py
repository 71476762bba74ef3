"""Parquet and Arrow inputs: the same arrays as the same content in JSONL, file:row in the ledger and
messages, Hub and save_to_disk folders, dataset builds, and bad files as one line.

Files are written here with pyarrow (and with `datasets` where it is installed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from tests.helpers import (
    CHATML,
    CODON_VOCAB,
    ROOT,
    assert_one_line_error,
    build,
    folder_digests,
    invoke,
    make_tokenizer,
    manifest_hashes,
    write_pairs,
)

pa = pytest.importorskip("pyarrow", reason="Parquet and Arrow inputs need tokentype[parquet]")
pq = pytest.importorskip("pyarrow.parquet")

PAIRS = [
    {"prompt": "GAA GGC GCC", "completion": "ATG ATC GAC"},
    {"prompt": "GAA", "completion": "ATG"},
    {"prompt": "", "completion": "GGC GCC ATG"},
    {"prompt": "ATC ATC", "completion": ""},  # prompt only: skipped and counted
    {"prompt": "GCC", "completion": "GAA GAA GAA GAA GAA"},
]
CHATS = [
    {
        "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello", "weight": 0},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Ciao", "weight": 1},
        ],
        "id": 7,
    },
    {
        "messages": [
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A"},
        ],
        "id": 8,
    },
]
SHAREGPT = [
    {
        "conversations": [
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"},
            {"from": "human", "value": "Bye"},
            {"from": "gpt", "value": "Ciao"},
        ],
        "system": "Be brief",
    },
    {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
]
ALPACA = [
    {"instruction": "Add", "input": "1 2", "output": "3"},
    {"instruction": "Say hi", "input": "", "output": "hi"},
]


def drop_nulls(value):
    """What a JSON line written by hand holds where Arrow has a null: no key."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def write_jsonl(path: Path, table) -> Path:
    rows = [drop_nulls(row) for row in table.to_pylist()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_arrow(path: Path, table, stream: bool = False, batch_rows: int = 2) -> Path:
    opener = pa.ipc.new_stream if stream else pa.ipc.new_file
    with pa.OSFile(str(path), "wb") as sink, opener(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=batch_rows):
            writer.write_batch(batch)
    return path


def arrays(path: Path):
    with h5py.File(path, "r") as shard:
        return {name: shard[name][:].tolist() for name in shard}


def tokenize(source, out, tokenizer, *extra):
    return invoke(
        "tokenize", source, "-o", out, "--tokenizer", tokenizer, "--max-seq-length", 64,
        "--packing", "greedy::drop", "--json", "--overwrite", *extra,
    )  # fmt: skip


def ledger_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def chat_tokenizer(tmp_path):
    return make_tokenizer(tmp_path / "tok", CHATML)


# --- the same arrays as JSONL ---------------------------------------------------------------------


@pytest.mark.parametrize("content", ["pairs", "chats", "sharegpt", "alpaca"])
@pytest.mark.parametrize("container", ["parquet", "arrow-file", "arrow-stream"])
def test_one_table_as_parquet_or_arrow_and_as_jsonl_gives_identical_arrays(
    content, container, tmp_path, chat_tokenizer
):
    records = {"pairs": PAIRS, "chats": CHATS, "sharegpt": SHAREGPT, "alpaca": ALPACA}[content]
    table = pa.Table.from_pylist(records * 3)
    tokenizer = CODON_VOCAB if content == "pairs" else chat_tokenizer
    text = write_jsonl(tmp_path / "in.jsonl", table)
    if container == "parquet":
        columnar = tmp_path / "in.parquet"
        pq.write_table(table, columnar, row_group_size=4)
    else:
        columnar = write_arrow(tmp_path / "in.arrow", table, stream=container == "arrow-stream")
    a = tokenize(text, tmp_path / "a.h5", tokenizer, "--ledger", tmp_path / "a.ledger.jsonl")
    b = tokenize(columnar, tmp_path / "b.h5", tokenizer, "--ledger", tmp_path / "b.ledger.jsonl")
    assert a.exit_code == 0, a.output
    assert b.exit_code == 0, b.output
    assert arrays(tmp_path / "b.h5") == arrays(tmp_path / "a.h5")
    metrics_a, metrics_b = json.loads(a.stdout), json.loads(b.stdout)
    for key in ("inputs", "output"):
        del metrics_a[key], metrics_b[key]
    assert metrics_a == metrics_b
    # The ledgers say the same of each record: lines from 1, rows from 0.
    lines = ledger_records(tmp_path / "a.ledger.jsonl")
    rows = ledger_records(tmp_path / "b.ledger.jsonl")
    assert [r.pop("row") for r in rows] == list(range(len(records) * 3))
    assert [r.pop("line") for r in lines] == list(range(1, len(records) * 3 + 1))
    assert {r.pop("input") for r in rows} == {str(columnar)}
    assert [{k: v for k, v in r.items() if k != "input"} for r in lines] == rows


def test_struct_fields_a_record_lacks_are_null_in_arrow_and_absent_in_json(
    tmp_path, chat_tokenizer
):
    # Only the first message has "weight": Arrow gives the others weight null. A message with
    # a null weight must read as one without it (a "weight": null would be a bad line).
    records = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]},
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Yo", "weight": 0},
                {"role": "user", "content": "Again"},
                {"role": "assistant", "content": "Yes"},
            ],
            "tools": None,
        },
    ]
    table = pa.Table.from_pylist(records)
    assert table.to_pylist()[0]["messages"][0]["weight"] is None
    pq.write_table(table, tmp_path / "in.parquet")
    text = tmp_path / "in.jsonl"
    text.write_text("".join(json.dumps(drop_nulls(r)) + "\n" for r in records))
    a = tokenize(text, tmp_path / "a.h5", chat_tokenizer)
    b = tokenize(tmp_path / "in.parquet", tmp_path / "b.h5", chat_tokenizer)
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    assert arrays(tmp_path / "a.h5") == arrays(tmp_path / "b.h5")


def test_chosen_columns_and_categories(tmp_path):
    table = pa.table(
        {
            "question": ["GAA GGC", "GAA"],
            "answer": ["ATG", "GCC GCC"],
            "category": ["a", None],
            "extra": [1.5, 2.5],
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    write_jsonl(tmp_path / "in.jsonl", table)
    names = tmp_path / "categories.json"
    names.write_text('["a", "b"]')
    extra = ("--prompt-key", "question", "--completion-key", "answer", "--categories", names)
    tokenize(tmp_path / "in.jsonl", tmp_path / "a.h5", CODON_VOCAB, *extra)
    b = tokenize(tmp_path / "in.parquet", tmp_path / "b.h5", CODON_VOCAB, *extra)
    assert b.exit_code == 0, b.output
    assert arrays(tmp_path / "a.h5") == arrays(tmp_path / "b.h5")
    assert "category_ids" in arrays(tmp_path / "b.h5")


# --- folders ----------------------------------------------------------------------------------


def test_a_hub_folder_reads_its_data_shards_in_name_order(tmp_path):
    hub = tmp_path / "hub"
    (hub / "data").mkdir(parents=True)
    (hub / "README.md").write_text("---\nconfigs: []\n---\n")
    table = pa.Table.from_pylist(PAIRS * 4)
    for k in reversed(range(4)):  # written out of order: the names decide
        part = table.slice(k * 5, 5)
        pq.write_table(part, hub / "data" / f"train-{k:05d}-of-00004.parquet")
    write_jsonl(tmp_path / "all.jsonl", table)
    ledger = tmp_path / "ledger.jsonl"
    for source in (hub, hub / "data"):
        result = tokenize(source, tmp_path / "b.h5", CODON_VOCAB, "--ledger", ledger)
        assert result.exit_code == 0, result.output
        tokenize(tmp_path / "all.jsonl", tmp_path / "a.h5", CODON_VOCAB)
        assert arrays(tmp_path / "a.h5") == arrays(tmp_path / "b.h5")
    first = ledger_records(ledger)[5]
    assert first["input"].endswith("train-00001-of-00004.parquet") and first["row"] == 0


def test_a_folder_of_several_splits_is_refused_naming_them(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        pq.write_table(pa.Table.from_pylist(PAIRS), data / f"{split}-00000-of-00001.parquet")
    result = tokenize(data, tmp_path / "out.h5", CODON_VOCAB)
    assert_one_line_error(result, 1, "test, train", "train-*.parquet")
    assert not (tmp_path / "out.h5").exists()


def test_a_save_to_disk_folder_by_its_state_file(tmp_path):
    # The layout datasets.save_to_disk writes: Arrow stream files listed in state.json.
    folder = tmp_path / "saved"
    folder.mkdir()
    table = pa.Table.from_pylist(PAIRS * 2)
    write_arrow(folder / "data-00000-of-00002.arrow", table.slice(0, 5), stream=True)
    write_arrow(folder / "data-00001-of-00002.arrow", table.slice(5), stream=True)
    state = {"_data_files": [{"filename": f"data-0000{k}-of-00002.arrow"} for k in range(2)]}
    (folder / "state.json").write_text(json.dumps(state))
    (folder / "dataset_info.json").write_text("{}")
    write_jsonl(tmp_path / "all.jsonl", table)
    assert tokenize(folder, tmp_path / "b.h5", CODON_VOCAB).exit_code == 0
    tokenize(tmp_path / "all.jsonl", tmp_path / "a.h5", CODON_VOCAB)
    assert arrays(tmp_path / "a.h5") == arrays(tmp_path / "b.h5")
    splits = tmp_path / "dict"
    (splits / "train").mkdir(parents=True)
    (splits / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    result = tokenize(splits, tmp_path / "c.h5", CODON_VOCAB)
    assert_one_line_error(result, 1, "DatasetDict", "train, test", str(splits / "train"))


def test_datasets_save_to_disk_and_to_parquet_read_as_jsonl(tmp_path, chat_tokenizer):
    datasets = pytest.importorskip("datasets", reason="datasets is not installed")
    dataset = datasets.Dataset.from_list(CHATS * 2)
    dataset.save_to_disk(str(tmp_path / "saved"))
    dataset.to_parquet(str(tmp_path / "hub.parquet"))
    text = write_jsonl(tmp_path / "in.jsonl", pa.Table.from_pylist(CHATS * 2))
    tokenize(text, tmp_path / "a.h5", chat_tokenizer)
    for source in (tmp_path / "saved", tmp_path / "hub.parquet"):
        result = tokenize(source, tmp_path / "b.h5", chat_tokenizer)
        assert result.exit_code == 0, result.output
        assert arrays(tmp_path / "a.h5") == arrays(tmp_path / "b.h5")
    dictionary = datasets.DatasetDict({"train": dataset, "test": dataset})
    dictionary.save_to_disk(str(tmp_path / "dict"))
    result = tokenize(tmp_path / "dict", tmp_path / "c.h5", chat_tokenizer)
    assert_one_line_error(result, 1, "DatasetDict", "train")


# --- dataset builds ---------------------------------------------------------------------------


def test_dataset_from_parquet_equals_jsonl_for_any_workers_and_tasks(tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", 90, seed=3)
    lines = [json.loads(line) for line in source.read_text().splitlines()]
    hub = tmp_path / "hub" / "data"
    hub.mkdir(parents=True)
    for k in range(3):
        part = pa.Table.from_pylist(lines[k * 30 : (k + 1) * 30])
        pq.write_table(part, hub / f"train-{k:05d}-of-00003.parquet", row_group_size=7)
    common = (
        "--train-files", 3, "--dev-files", 1, "--test-files", 1, "--shuffle", "--seed", 4,
        "--ledger", tmp_path / "ledger.jsonl",
    )  # fmt: skip
    text, one, two, tasks = (tmp_path / name for name in ("text", "one", "two", "tasks"))
    assert build([source], text, *common, "--workers", 1).exit_code == 0
    text_ledger = ledger_records(tmp_path / "ledger.jsonl")
    result = build([tmp_path / "hub"], one, *common, "--workers", 1)
    assert result.exit_code == 0, result.output
    ledger = ledger_records(tmp_path / "ledger.jsonl")
    assert build([tmp_path / "hub"], two, *common, "--workers", 2).exit_code == 0
    for index in range(2):
        done = build([tmp_path / "hub"], tasks, *common, "--task", f"{index}/2", "--workers", 1)
        assert done.exit_code == 0, done.output
    assert build([tmp_path / "hub"], tasks, *common, "--finish").exit_code == 0
    expected = folder_digests(one)
    del expected["sha256/files_metadata.json"]
    for other in (two, tasks):
        digests = folder_digests(other)
        del digests["sha256/files_metadata.json"]
        assert digests == expected
        assert manifest_hashes(other) == manifest_hashes(one)
    # Row for line: the same splits, files and rows, and the test split holds the rows as JSONL.
    for name in expected:
        if name.endswith(".hdf5"):
            assert arrays(one / name) == arrays(text / name)
    assert (one / "test_files" / "test_1_of_1.jsonl").read_text() == (
        text / "test_files" / "test_1_of_1.jsonl"
    ).read_text()
    assert len(ledger) == len(text_ledger) == 90
    for by_row, by_line in zip(ledger, text_ledger, strict=True):
        number = int(by_row["input"].split("train-")[1][:5]) * 30 + by_row.pop("row")
        assert number + 1 == by_line.pop("line")
        by_row.pop("input"), by_line.pop("input")
        assert by_row == by_line


# --- file:row and bad rows --------------------------------------------------------------------


def test_a_bad_row_names_file_row_and_column_and_leaves_nothing(tmp_path):
    table = pa.table({"prompt": ["GAA", "GAA", "GAA"], "completion": ["ATG", None, "ATG"]})
    source = tmp_path / "in.parquet"
    pq.write_table(table, source)
    result = tokenize(source, tmp_path / "out.h5", CODON_VOCAB, "--ledger", tmp_path / "l.jsonl")
    assert_one_line_error(result, 1, f"{source}:1: no 'completion' column", "--skip-bad-lines")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_a_column_of_the_wrong_type_names_file_row_and_column(tmp_path):
    pq.write_table(
        pa.table({"prompt": ["GAA", "GGC"], "completion": [3, 4]}), tmp_path / "i.parquet"
    )
    result = tokenize(tmp_path / "i.parquet", tmp_path / "out.h5", CODON_VOCAB)
    assert_one_line_error(
        result, 1, f"{tmp_path / 'i.parquet'}:0: column 'completion' is int, not a string"
    )
    assert not (tmp_path / "out.h5").exists()


def test_skip_bad_lines_writes_rejected_rows_as_jsonl(tmp_path):
    rows = [
        {"prompt": "GAA", "completion": "ATG", "meta": {"source": "x", "tags": ["a"]}},
        {"prompt": "GAA", "completion": None, "meta": {"source": "y", "tags": []}},
        {"prompt": "GAA", "completion": "ATG ATG", "meta": {"source": "z", "tags": None}},
    ]
    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), source)
    rejects, ledger = tmp_path / "rejects.jsonl", tmp_path / "ledger.jsonl"
    result = tokenize(source, tmp_path / "out.h5", CODON_VOCAB, "--skip-bad-lines", rejects,
                      "--ledger", ledger)  # fmt: skip
    assert result.exit_code == 0, result.output
    # The row as JSON, less the null that stands for its missing completion.
    rejected = {"prompt": "GAA", "meta": {"source": "y", "tags": []}}
    assert [json.loads(line) for line in rejects.read_text().splitlines()] == [rejected]
    records = ledger_records(ledger)
    assert [(r["row"], r["status"]) for r in records] == [
        (0, "packed"), (1, "rejected"), (2, "packed"),
    ]  # fmt: skip
    assert records[1]["reason"].startswith("no 'completion' column")


def test_missing_columns_name_the_columns_the_file_has(tmp_path):
    pq.write_table(pa.table({"text": ["a"], "label": [1]}), tmp_path / "in.parquet")
    result = tokenize(tmp_path / "in.parquet", tmp_path / "out.h5", CODON_VOCAB)
    assert_one_line_error(result, 1, "no 'completion' column", "has the columns text, label")
    dataset = build([tmp_path / "in.parquet"], tmp_path / "ds", "--train-files", 1)
    assert_one_line_error(dataset, 1, "no 'completion' column", "text, label")
    sharegpt = tokenize(tmp_path / "in.parquet", tmp_path / "out.h5", CODON_VOCAB,
                        "--input-format", "sharegpt")  # fmt: skip
    assert_one_line_error(sharegpt, 1, "no 'conversations' column", "text, label")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


@pytest.mark.parametrize("damage", ["truncated", "not-parquet", "empty"])
def test_a_damaged_file_is_one_line_exit_1_and_nothing_left(damage, tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.Table.from_pylist(PAIRS * 50), good, row_group_size=10)
    source = tmp_path / "in.parquet"
    data = good.read_bytes()
    source.write_bytes(
        {"truncated": data[: len(data) // 2], "not-parquet": b'{"a": 1}\n', "empty": b""}[damage]
    )
    good.unlink()
    result = tokenize(source, tmp_path / "out.h5", CODON_VOCAB, "--ledger", tmp_path / "l.jsonl")
    assert_one_line_error(result, 1, f"{source}: not a readable Parquet file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]
    dataset = build([source], tmp_path / "ds", "--train-files", 1)
    assert_one_line_error(dataset, 1, "not a readable Parquet file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_a_damaged_row_group_midway_is_one_line(tmp_path):
    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(PAIRS * 400), source, row_group_size=500)
    data = bytearray(source.read_bytes())
    middle = pq.ParquetFile(source).metadata.row_group(2).column(1).data_page_offset
    data[middle : middle + 64] = b"\xff" * 64
    source.write_bytes(bytes(data))
    result = tokenize(source, tmp_path / "out.h5", CODON_VOCAB)
    assert_one_line_error(result, 1, f"{source}: not a readable Parquet file")
    assert not (tmp_path / "out.h5").exists()


def test_without_pyarrow_a_parquet_input_names_the_extra(tmp_path, monkeypatch):
    pq.write_table(pa.Table.from_pylist(PAIRS), tmp_path / "in.parquet")
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    result = tokenize(tmp_path / "in.parquet", tmp_path / "out.h5", CODON_VOCAB)
    assert_one_line_error(result, 1, "in.parquet", "pip install 'tokentype[parquet]'")
    jsonl = write_jsonl(tmp_path / "in.jsonl", pa.Table.from_pylist(PAIRS))
    assert tokenize(jsonl, tmp_path / "out.h5", CODON_VOCAB).exit_code == 0


def test_start_up_and_a_jsonl_run_do_not_import_pyarrow(tmp_path):
    source = write_pairs(tmp_path / "in.jsonl", 5)
    script = (
        "import sys\n"
        "from tokentype_cli.cli import main\n"
        "sys.argv = ['tokentype', 'tokenize', sys.argv[1], '-o', sys.argv[2], '--tokenizer',"
        " sys.argv[3], '--quiet']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "assert 'pyarrow' not in sys.modules, 'pyarrow was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(source), str(tmp_path / "o.h5"), str(CODON_VOCAB)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_validate_and_the_html_report_name_rows_from_the_ledger(tmp_path):
    table = pa.Table.from_pylist([{"prompt": "GAA", "completion": "ATG " * 9}] * 3)
    pq.write_table(table, tmp_path / "in.parquet")
    out = tmp_path / "out.h5"
    result = invoke(
        "tokenize", tmp_path / "in.parquet", "-o", out, "--tokenizer", CODON_VOCAB,
        "--max-seq-length", 6, "--packing", "single::truncate_right",
        "--ledger", tmp_path / "out.ledger.jsonl",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    checked = invoke("validate", out, "--max-truncated-share", 0.1)
    assert checked.exit_code == 1
    assert f"first: {tmp_path / 'in.parquet'}:0" in checked.stdout + checked.stderr
    html = tmp_path / "report.html"
    assert invoke("inspect", out, "--html", html).exit_code == 0
    assert f"{tmp_path / 'in.parquet'}:0" in html.read_text()


@pytest.mark.parametrize("container", ["parquet", "arrow-file"])
def test_max_line_bytes_counts_a_rows_json_line_as_jsonl_counts_the_line(container, tmp_path):
    # Rows around the limit: the JSON line of a row is measured exactly where it may be over,
    # whether or not its JSON line is otherwise made.
    records = [
        {"prompt": "GAA " * n, "completion": "ATG", "tags": ["x"] * (n % 3)} for n in range(0, 40)
    ]
    table = pa.Table.from_pylist(records)
    text = write_jsonl(tmp_path / "in.jsonl", table)
    if container == "parquet":
        columnar = tmp_path / "in.parquet"
        pq.write_table(table, columnar)
    else:
        columnar = write_arrow(tmp_path / "in.arrow", table, batch_rows=7)
    limit = len(text.read_text().splitlines()[20]) + 1  # line 21 (with its newline) fits exactly
    outcomes = []
    for source, name in ((text, "a"), (columnar, "b")):
        rejects = tmp_path / f"{name}.rejects.jsonl"
        result = tokenize(source, tmp_path / f"{name}.h5", CODON_VOCAB, "--max-line-bytes", limit,
                          "--skip-bad-lines", rejects)  # fmt: skip
        assert result.exit_code == 0, result.output
        outcomes.append((arrays(tmp_path / f"{name}.h5"), rejects.read_text()))
    assert outcomes[0] == outcomes[1]
    assert 0 < len(outcomes[0][1].splitlines()) < len(records)


def test_a_folder_mixing_parquet_and_jsonl_is_refused(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    table = pa.Table.from_pylist(PAIRS)
    pq.write_table(table, folder / "a.parquet")
    write_jsonl(folder / "b.jsonl", table)
    result = tokenize(folder, tmp_path / "out.h5", CODON_VOCAB)
    assert_one_line_error(result, 1, "mixes Parquet/Arrow", "a.parquet", "b.jsonl")


def test_an_alpaca_row_of_the_wrong_type_names_the_column(tmp_path):
    table = pa.table({"instruction": ["GAA", "GGC"], "output": [1, 2]})
    pq.write_table(table, tmp_path / "in.parquet")
    result = tokenize(tmp_path / "in.parquet", tmp_path / "out.h5", CODON_VOCAB)
    assert_one_line_error(result, 1, "in.parquet:0: column 'output' is int, not a string")


# --- summaries count rows -------------------------------------------------------------------------


def test_summaries_count_a_parquet_inputs_rows_and_a_jsonl_inputs_lines(tmp_path):
    rows = [*PAIRS, {"prompt": "GAA", "completion": None}]  # the last: a bad row
    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), source)
    text = write_jsonl(tmp_path / "in.jsonl", pa.Table.from_pylist(rows))
    for path, one, many in ((source, "row", "rows"), (text, "line", "lines")):
        result = invoke(
            "tokenize", path, "-o", tmp_path / f"{path.suffix[1:]}.h5", "--tokenizer", CODON_VOCAB,
            "--max-seq-length", 64, "--skip-bad-lines", tmp_path / f"{path.suffix[1:]}.bad",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        source_count = f"from 6 input {many}" if one == "row" else "from 6 lines"
        assert source_count in result.stderr
        assert f"  1 {one} put no token in the output" in result.stderr  # the prompt-only one
        assert f"  1 bad {one} written to" in result.stderr
        other = "line" if one == "row" else " row"
        assert f"bad {other}" not in result.stderr and f"{other} put no" not in result.stderr
    # JSON keeps its field names whatever the input.
    done = tokenize(source, tmp_path / "json.h5", CODON_VOCAB, "--skip-bad-lines", tmp_path / "j")
    assert json.loads(done.stdout)["lines"] == 6

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": ["GAA", "GGC"], "completion": [None, None]}), bad)
    failed = tokenize(bad, tmp_path / "none.h5", CODON_VOCAB, "--skip-bad-lines", tmp_path / "b")
    assert_one_line_error(failed, 1, "no rows to write: every one of the 2 rows was rejected")

    folder = tmp_path / "folder"
    made = build([source], folder, "--train-files", 1, "--dev-files", 0, "--test-files", 1)
    assert made.exit_code == 0, made.output
    assert f"{folder}: 6 input rows into 1 train, 0 dev and 1 test files" in made.stderr
    few = build([source], tmp_path / "few", "--train-files", 9, "--test-files", 0)
    assert_one_line_error(few, 2, "6 rows for 9 splits", "every split needs a row")
