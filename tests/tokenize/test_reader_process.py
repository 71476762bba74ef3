"""The reader process: chat input read, checked and rendered in a forked child, with the output,
the errors and the clean-up of the reader thread it stands in for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import (
    CHATML,
    CODON_MODEL_CONFIG,
    ROOT,
    assert_one_line_error,
    digest,
    folder_digests,
    invoke,
    make_tokenizer,
    read,
    wait_for_handlers,
    write_lines,
)
from tokentype_cli import processes
from tokentype_cli.errors import InputError, TokentypeError
from tokentype_cli.tokenize import pipeline
from tokentype_cli.tokenize.options import TokenizeOptions
from tokentype_cli.tokenize.read import Batch
from tokentype_cli.tokenize.reader_process import ReaderProcess
from tokentype_cli.tokenizer_loader import load_tokenizer

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the reader process is forked on Linux only"
)


def conversation(k: int) -> dict:
    return {
        "messages": [
            {"role": "system", "content": f"Be brief {k}."},
            {"role": "user", "content": f"What is {k} + {k}?"},
            {"role": "assistant", "content": f"{2 * k}, because {k} and {k} make {2 * k}."},
            {"role": "user", "content": "And <|im_end|> written out?"},
            {"role": "assistant", "content": "That is the end-of-turn token's text."},
        ]
    }


@pytest.fixture
def chat_folder(tmp_path):
    return make_tokenizer(tmp_path / "tok", CHATML)


@pytest.fixture
def where_read(monkeypatch, tmp_path):
    """The processes that made batches, as pids written to a file (a child cannot tell its
    parent's memory). A fork is taken as safe: whether it is in this process depends on the
    tests before (a tokenizers thread pool started by one), and the child never uses it."""
    monkeypatch.setattr(processes, "fork_is_safe", lambda: True)
    log = tmp_path / "pids"
    original = pipeline.batches

    def batches(*args, **kwargs):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        yield from original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "batches", batches)
    return lambda: {int(p) for p in log.read_text().split()} if log.exists() else set()


def run(tmp_path, folder, source, name):
    out = tmp_path / f"{name}.h5"
    paths = {
        "ledger_path": tmp_path / f"{name}.ledger.jsonl",
        "rejects_path": tmp_path / f"{name}.rejects.jsonl",
        "seam_report_path": tmp_path / f"{name}.seams.jsonl",
    }
    options = TokenizeOptions(seq_len=64, packing="greedy::truncate_right")
    metrics = pipeline.tokenize_files(
        [str(source)], out, load_tokenizer(folder), options, batch_lines=16, **paths
    )
    return metrics.as_dict(), [digest(p) for p in (out, *paths.values())]


def test_chat_read_in_a_child_gives_what_the_reader_thread_gives(
    tmp_path, chat_folder, where_read, monkeypatch
):
    lines = [conversation(k) for k in range(300)]
    lines[7] = "{not json"
    lines[50] = {"messages": [{"role": "user", "content": 3}]}  # rejected: content not a string
    source = write_lines(tmp_path / "chat.jsonl", *lines)
    forked = run(tmp_path, chat_folder, source, "forked")
    assert where_read() and os.getpid() not in where_read(), "the lines were read here"
    (tmp_path / "pids").unlink()
    monkeypatch.setattr(processes, "fork_is_safe", lambda: False)  # then a thread reads
    threaded = run(tmp_path, chat_folder, source, "threaded")
    assert where_read() == {os.getpid()}
    assert forked == threaded
    assert forked[0]["lines_rejected"] == 2 and forked[0]["conversations"] == 298


def test_a_fifo_of_conversations_is_read_once(tmp_path, chat_folder, where_read):
    # Whether a JSONL input holds conversations is told from its first line, read ahead: only
    # from a regular file, or that line would be lost to the run.
    fifo = tmp_path / "chat.jsonl"
    os.mkfifo(fifo)
    data = "".join(json.dumps(conversation(k)) + "\n" for k in range(5)).encode()

    def feed() -> None:
        with open(fifo, "wb") as handle:
            handle.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    result = invoke(
        "tokenize", fifo, "-o", tmp_path / "o.h5", "--tokenizer", chat_folder, "--json",
        "--max-seq-length", 256, "--packing", "single::drop",
    )  # fmt: skip
    writer.join()
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["conversations"] == 5
    assert where_read() == {os.getpid()}


def test_prompt_completion_lines_are_read_by_the_thread(tmp_path, chat_folder, where_read):
    source = write_lines(tmp_path / "pairs.jsonl", {"prompt": "a", "completion": "b"})
    result = invoke(
        "tokenize", source, "-o", tmp_path / "o.h5", "--tokenizer", chat_folder,
        "--max-seq-length", 16,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert where_read() == {os.getpid()}


@pytest.mark.parametrize(
    ("first", "extra", "expected"),
    [
        ('{"messages": [{"role": "user", "content": "x"}]}', {}, True),
        ('[{"role": "user", "content": "x"}]', {}, True),
        ('{"prompt": "a", "completion": "b"}', {}, False),
        ('{"prompt": "a", "completion": "b"}', {"apply_chat_template": True}, True),
        ("{broken", {}, False),
    ],
)
def test_renders_chat_is_told_from_the_first_line(tmp_path, first, extra, expected):
    source = tmp_path / "in.jsonl"
    source.write_text("\n" + first + "\n")
    options = TokenizeOptions(**extra)
    assert pipeline.renders_chat([str(source)], ["jsonl"], options) is expected


def test_renders_chat_never_reads_stdin_and_knows_chat_formats(tmp_path):
    assert pipeline.renders_chat(["-"], ["jsonl"], TokenizeOptions()) is False
    assert pipeline.renders_chat(["-"], ["chat"], TokenizeOptions()) is True
    assert pipeline.renders_chat(["x.parquet"], ["parquet"], TokenizeOptions()) is False
    sharegpt = TokenizeOptions(input_format="sharegpt")
    assert pipeline.renders_chat(["x.parquet"], ["parquet"], sharegpt) is True


def batches_of(*counts: int):
    for count in counts:
        batch = Batch()
        batch.line_number.extend(range(count))
        batch.nbytes = count
        yield batch


def test_batches_come_back_in_order_and_advance_the_progress():
    seen = []
    with ReaderProcess(lambda: batches_of(3, 1, 4, 1, 5), seen.append) as reader:
        got = [batch.line_count for batch in reader]
    assert got == [3, 1, 4, 1, 5]
    assert seen == [3, 1, 4, 1, 5]
    assert reader.status == 0


def test_an_error_in_the_child_is_raised_in_the_parent_as_it_was():
    def produce():
        yield from batches_of(2)
        raise InputError("in.jsonl:3: the file ends inside a gzip member; fix it")

    with ReaderProcess(produce) as reader, pytest.raises(InputError, match=r"in\.jsonl:3"):
        list(reader)


class Unpicklable(Exception):
    def __init__(self, message, handle):
        super().__init__(message)
        self.handle = handle

    def __reduce__(self):
        raise TypeError("cannot pickle")


def test_a_bug_in_the_child_arrives_with_its_traceback():
    def produce():
        yield from batches_of(1)
        raise Unpicklable("a bug", object())

    with ReaderProcess(produce) as reader, pytest.raises(RuntimeError) as caught:
        list(reader)
    assert "Unpicklable: a bug" in str(caught.value)

    def failing():
        yield from batches_of(1)
        {}["missing"]

    with ReaderProcess(failing) as reader, pytest.raises(KeyError) as caught:
        list(reader)
    assert "in failing" in "\n".join(caught.value.__notes__)


def test_a_child_killed_midway_is_an_error_not_a_short_output():
    def produce():
        yield from batches_of(1, 1)
        os.kill(os.getpid(), signal.SIGKILL)
        yield from batches_of(1)

    with ReaderProcess(produce) as reader:
        got = []
        with pytest.raises(TokentypeError, match="killed by SIGKILL; out of memory"):
            got.extend(reader)
    assert len(got) == 2


def test_closing_early_stops_and_reaps_the_child():
    def endless():
        while True:
            yield from batches_of(1000)

    reader = ReaderProcess(endless)
    first = next(iter(reader))
    assert first.line_count == 1000
    reader.close()
    assert reader.status == -signal.SIGKILL
    with pytest.raises(ChildProcessError):
        os.waitpid(reader.pid, os.WNOHANG)


def test_a_child_blocked_on_input_is_stopped_by_close():
    read_end, write_end = os.pipe()

    def produce():
        os.read(read_end, 1)  # a stdin nobody writes to
        yield from batches_of(1)

    reader = ReaderProcess(produce)
    started = time.monotonic()
    reader.close()
    assert time.monotonic() - started < 5
    assert reader.status == -signal.SIGKILL
    os.close(read_end)
    os.close(write_end)


def test_bad_chat_input_is_one_line_from_the_child(tmp_path, chat_folder, where_read):
    # A template that cannot serve the run stops it: the error crosses from the child.
    folder = make_tokenizer(tmp_path / "bad", "{{ raise_exception('no system messages') }}")
    source = write_lines(tmp_path / "chat.jsonl", *(conversation(k) for k in range(3)))
    result = invoke("tokenize", source, "-o", tmp_path / "o.h5", "--tokenizer", folder)
    assert_one_line_error(result, 1, "chat.jsonl:1", "no system messages")
    assert os.getpid() not in where_read()
    assert not (tmp_path / "o.h5").exists()


def test_ctrl_c_stops_the_parent_and_its_reader(tmp_path, chat_folder):
    source = write_lines(tmp_path / "chat.jsonl", *(conversation(k) for k in range(60000)))
    out = tmp_path / "out.h5"
    process = subprocess.Popen(
        [sys.executable, "-m", "tokentype_cli", "tokenize", str(source), "-o", str(out),
         "--tokenizer", str(chat_folder), "--max-seq-length", "64"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    wait_for_handlers(process)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 60
    while not children.read_text().split() and time.monotonic() < deadline:
        time.sleep(0.01)
    reader = [int(pid) for pid in children.read_text().split()]
    assert reader, "no reader process was started"
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole group
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.decode().strip().splitlines() == [
        "Aborted: SIGINT received; outputs were left as they were."
    ]
    assert stdout == b""
    assert not out.exists()
    for pid in reader:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), "the reader outlived it"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except OSError:
        return "Z"


def test_a_one_process_chat_dataset_reads_its_splits_in_a_child(tmp_path, chat_folder, where_read):
    source = write_lines(tmp_path / "chat.jsonl", *(conversation(k) for k in range(200)))
    common = (
        "--tokenizer", chat_folder, "--max-seq-length", 128, "--train-files", 2, "--dev-files", 1,
        "--shuffle", "--seed", 4, "--model-config", CODON_MODEL_CONFIG,
    )  # fmt: skip
    one = invoke("tokenize", source, "--dataset", tmp_path / "one", "--workers", 1, *common)
    assert one.exit_code == 0, one.stderr
    assert where_read() and os.getpid() not in where_read()
    (tmp_path / "pids").unlink()
    kept = invoke(
        "tokenize", source, "--dataset", tmp_path / "kept", "--workers", 1, "--keep-splits",
        *common,
    )  # fmt: skip
    assert kept.exit_code == 0, kept.stderr
    assert where_read() == {os.getpid()}  # the split files are written here, never by a child
    digests = folder_digests(tmp_path / "one")
    del digests["sha256/files_metadata.json"]  # modified times
    kept_digests = {k: v for k, v in folder_digests(tmp_path / "kept").items() if k in digests}
    assert kept_digests == digests


def test_chat_on_a_real_stdin_pipe_is_read_by_the_child(tmp_path, chat_folder):
    # --input-format chat says conversations without reading ahead: the child reads the pipe
    # (the parent never touches it) and the shard is the one the file gives.
    source = write_lines(tmp_path / "chat.jsonl", *(conversation(k) for k in range(400)))
    common = ["--tokenizer", str(chat_folder), "--max-seq-length", "128", "--input-format", "chat"]
    tokentype = [sys.executable, "-m", "tokentype_cli", "tokenize"]
    piped = tmp_path / "piped.h5"
    with open(source, "rb") as handle:
        feeder = subprocess.Popen(["cat"], stdin=handle, stdout=subprocess.PIPE)
        done = subprocess.run(
            [*tokentype, "-", "-o", str(piped), *common],
            stdin=feeder.stdout, capture_output=True, cwd=ROOT, timeout=120,
        )  # fmt: skip
        feeder.stdout.close()
        feeder.wait()
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b""
    direct = tmp_path / "direct.h5"
    subprocess.run([*tokentype, str(source), "-o", str(direct), *common], check=True, cwd=ROOT)
    # The provenance names the input (<stdin> or the path); the arrays are the same.
    assert read(piped) == read(direct)
    assert len(read(piped)[0]) > 10
