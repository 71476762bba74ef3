"""Hostile files and conditions that need a process of their own: memory, hangs, signals, locks,
closed streams, file names that are not UTF-8, a file size limit standing in for a full disk.

Peak memory is measured by a small wrapper process that runs the command and reports
RUSAGE_CHILDREN, so it counts the command alone and not this test run's other children.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.helpers import (
    EXAMPLE1_IDS,
    EXAMPLE1_TYPES,
    ROOT,
    digest,
    invoke,
    peak_rss,
    wait_for_handlers,
    write_shard,
)
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_IDS
from tokentype_cli.schema.temporary import write_lock
from tokentype_cli.schema.write import ShardWriter

COMMAND = [sys.executable, "-m", "tokentype_cli"]
# Python, numpy, h5py and the CLI take about 70 MB; each bound below is far under what the same
# file took before (given in the test).
RSS_BOUND_MB = 250


def run(*args, timeout=60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, cwd=ROOT, timeout=timeout, **kwargs
    )


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: digest(p) for p in sorted(folder.iterdir()) if p.is_file()}


# --- memory and hangs ----------------------------------------------------------------------------


def test_one_token_chunks_are_read_in_bounded_pieces(tmp_path):
    # (1, 1) chunks on (128, 2048) took 1.7 GB: HDF5's bookkeeping per chunk a read touches.
    path = tmp_path / "tiny_chunks.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("input_ids", shape=(24, 2048), chunks=(1, 1), dtype="<i4")[...] = 7
    code, rss, stderr = peak_rss("validate", path)
    assert code == 0, stderr
    assert rss < RSS_BOUND_MB
    result = invoke("validate", path, "--json")
    checks = [f["check"] for f in __import__("json").loads(result.stdout)["files"][0]["findings"]]
    assert "chunk-shape" in checks


def test_declared_but_never_written_datasets_are_a_finding_not_a_hang(tmp_path):
    # (10^12, 2048) declared in a 4 KB file kept validate, inspect and assign-types reading
    # fill values for ever.
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "input_ids", shape=(10**12, 2048), maxshape=(None, 2048), chunks=(32, 2048),
            dtype="<i4", compression="gzip",
        )  # fmt: skip
        f["input_ids"][:32] = 1  # one chunk written
    assert path.stat().st_size < 100_000
    before = digest(path)
    started = time.monotonic()
    done = run("validate", path, timeout=60)
    assert done.returncode == 1
    assert b"unwritten-chunks" in done.stdout
    assert b"only 1 of its 31,250,000,000 chunks were ever written" in done.stdout
    for args in (["inspect", path], ["inspect", path, "--rows", "0:3"], ["assign-types", path]):
        done = run(*map(str, args), *(["--sep", "2"] if args[0] == "assign-types" else []))
        assert done.returncode == 1
        lines = done.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "chunks were ever written" in lines[0], lines
    assert time.monotonic() - started < 60
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.h5"]


def test_rows_beyond_the_file_are_clipped_and_streamed(tmp_path):
    # `--rows 0:100000000` built a list of every row number first (2.65 GB in 4 s).
    path = tmp_path / "many_rows.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset(
            "input_ids", shape=(10**7, 1), maxshape=(None, 1), chunks=(1 << 20, 1),
            dtype="<i4", compression="gzip",
        )  # fmt: skip
        block = np.zeros((1 << 20, 1), np.int32)
        for start in range(0, 10**7, 1 << 20):
            d[start : start + (1 << 20)] = block[: 10**7 - start]
    process = subprocess.Popen(
        [*COMMAND, "inspect", str(path), "--rows", "0:100000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    first = [process.stdout.readline() for _ in range(4)]
    process.stdout.close()  # like `| head`
    process.wait(timeout=30)
    assert first[0] == b"row 0 of 10000000: no token_type_ids\n"
    assert first[2] == b"row 1 of 10000000: no token_type_ids\n"
    code, rss, stderr = peak_rss("inspect", path, "--rows", "0:100000000", head=1000)
    assert code == 1 and stderr == ""  # stdout closed: click's quiet exit 1
    assert rss < RSS_BOUND_MB


def test_a_large_attribute_is_summarised_not_read(tmp_path):
    # One 40 MB attribute made inspect --json use 1.46 GB and print 189 MB.
    path = write_shard(tmp_path / "a.h5", [EXAMPLE1_IDS])
    with h5py.File(path, "r+") as f:
        f[INPUT_IDS].attrs["notes"] = np.zeros(40 << 20, np.uint8)
    done = run("inspect", str(path), "--json")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) < 10_000
    code, rss, stderr = peak_rss("inspect", path, "--json")
    assert code == 0, stderr
    assert rss < RSS_BOUND_MB


# --- signals ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_shard(tmp_path_factory):
    """About 2 s of validate on a loaded machine: random ids and types, 12,000 x 1024."""
    folder = tmp_path_factory.mktemp("signals")
    rng = np.random.default_rng(3)
    path = folder / "big.h5"
    with ShardWriter(path, 1024) as writer:
        for _ in range(6):
            writer.append(
                input_ids=rng.integers(0, 50257, (2000, 1024), dtype=np.int32),
                token_type_ids=rng.integers(0, 4, (2000, 1024), dtype=np.int32),
            )
    np.save(folder / "types.npy", rng.integers(0, 4, (12000, 1024), dtype=np.int8))
    return path


def _started(args) -> subprocess.Popen:
    process = subprocess.Popen(
        [*COMMAND, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT
    )
    wait_for_handlers(process)
    return process


def _run_time(args) -> float:
    """Seconds from the handlers being installed to the end of an uninterrupted run."""
    process = _started(args)
    began = time.monotonic()
    assert process.wait(timeout=120) == 0, process.stderr.read()
    process.stderr.close()
    return time.monotonic() - began


def _interrupt(args, signum, delay) -> tuple[int, str, float]:
    """(exit status, stderr, seconds from the signal to the exit) of a run signalled `delay`
    seconds after its handlers were installed."""
    process = _started(args)
    time.sleep(delay)
    sent = time.monotonic()
    process.send_signal(signum)
    code = process.wait(timeout=60)
    stderr = process.stderr.read().decode()
    process.stderr.close()
    return code, stderr, time.monotonic() - sent


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_validate_with_its_exit_status(big_shard, signum):
    # Signals were lost in 6 of 16 validate runs, which then finished with exit 0. Each signal
    # here comes in the first third of a run, so a run that finishes was one that lost it.
    args = ["validate", big_shard]
    window = _run_time(args) / 3
    chooser = random.Random(signum)
    for _ in range(4):
        code, stderr, took = _interrupt(args, signum, chooser.uniform(0.0, window))
        assert code == 128 + signum, stderr
        assert stderr.strip().splitlines() == [
            f"Aborted: {signal.Signals(signum).name} received; outputs were left as they were."
        ]
        assert took < 5


def test_sigterm_during_an_in_place_rewrite_leaves_it_unchanged(big_shard):
    # A lost SIGTERM let an in-place add-types rewrite the file and exit 0.
    path = big_shard.parent / "rewrite.h5"
    path.write_bytes(big_shard.read_bytes())
    args = ["add-types", path, big_shard.parent / "types.npy", "--overwrite", "-q"]
    window = _run_time(args) / 3
    path.write_bytes(big_shard.read_bytes())
    before = digest(path)
    chooser = random.Random(5)
    for _ in range(3):
        code, stderr, _ = _interrupt(args, signal.SIGTERM, chooser.uniform(0.0, window))
        assert code == 143, stderr
        assert "Traceback" not in stderr
        assert digest(path) == before
        assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_a_sigkilled_runs_temporary_is_removed_by_the_next_write(big_shard, tmp_path):
    types = big_shard.parent / "types.npy"
    process = subprocess.Popen(
        [*COMMAND, "add-types", str(big_shard), str(types), "--overwrite", "-o",
         str(tmp_path / "typed.h5")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    temporaries = []
    while not temporaries and time.monotonic() < deadline and process.poll() is None:
        temporaries = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        time.sleep(0.005)
    process.kill()
    process.wait()
    if not temporaries:
        pytest.skip("the run finished before a temporary was seen")
    assert f"-{process.pid}-" in temporaries[0].name
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers  # a killed process cannot clean up
    write_shard(tmp_path / "next.h5", [EXAMPLE1_IDS])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert not (tmp_path / "typed.h5").exists()


# --- a second writer -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["add-types", "assign-types"])
def test_a_second_in_place_writer_is_refused_naming_the_first(tmp_path, command):
    path = write_shard(tmp_path / "a.h5", [EXAMPLE1_IDS])
    np.save(tmp_path / "t.npy", np.array([EXAMPLE1_TYPES], np.int32))
    before = digest(path)
    args = [str(tmp_path / "t.npy")] if command == "add-types" else ["--sep", "2"]
    with write_lock(path):  # this test process stands for the first writer
        done = run(command, str(path), *args)
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert lines == [
        f"Error: {path}: tokentype process {os.getpid()} is writing this file; wait for it to"
        " finish (or write elsewhere with -o)"
    ]
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "t.npy"]
    done = run(command, str(path), *args)  # the lock is released with its holder
    assert done.returncode == 0, done.stderr


# --- closed stderr, names that are not UTF-8, unreadable shards, a full disk --------------------


def test_closed_stderr_does_not_make_commands_fail_silently(tmp_path):
    path = write_shard(tmp_path / "a.h5", [EXAMPLE1_IDS])
    np.save(tmp_path / "t.npy", np.array([EXAMPLE1_TYPES], np.int32))
    closed = {"preexec_fn": lambda: os.close(2), "stderr": None}
    done = subprocess.run(
        [*COMMAND, "add-types", str(path), str(tmp_path / "t.npy")], cwd=ROOT, timeout=60,
        capture_output=False, stdout=subprocess.PIPE, **closed,
    )  # fmt: skip
    assert done.returncode == 0
    with h5py.File(path) as f:
        assert f[TOKEN_TYPE_IDS][:].tolist() == [EXAMPLE1_TYPES]
    for args, code in ((["validate", str(path)], 0), (["validate", str(tmp_path / "t.npy")], 1)):
        done = subprocess.run(
            [*COMMAND, *args], cwd=ROOT, timeout=60, stdout=subprocess.PIPE, **closed
        )
        assert done.returncode == code
        assert done.stdout.strip()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "t.npy"]


def test_file_names_that_are_not_utf8_print_as_their_bytes(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9.h5"
    write_shard(Path(os.fsdecode(raw)), [EXAMPLE1_IDS], [EXAMPLE1_TYPES])
    done = subprocess.run([*COMMAND, "validate", raw], capture_output=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(raw + b": ok")
    done = subprocess.run(
        [*COMMAND, "assign-types", raw, "--sep", "2", "--overwrite"],
        capture_output=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(raw + b": 1 row")
    done = subprocess.run([*COMMAND, "inspect", raw], capture_output=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith(raw + b"\n")


def test_an_unreadable_shard_is_exit_1(tmp_path, monkeypatch):
    import tokentype_cli.schema.read as schema

    path = write_shard(tmp_path / "a.h5", [EXAMPLE1_IDS])
    np.save(tmp_path / "t.npy", np.array([EXAMPLE1_TYPES], np.int32))
    if os.geteuid() == 0:
        # Root reads everything: stand in for a file it may not read.
        real_open, real_access = open, os.access

        def refused(file, *args, **kwargs):
            if Path(file) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(schema, "open", refused, raising=False)
        monkeypatch.setattr(os, "access", lambda p, m, **k: Path(p) != path and real_access(p, m))
    else:
        path.chmod(0)
    for args in (
        ["validate", path],
        ["inspect", path],
        ["add-types", path, tmp_path / "t.npy"],
        ["assign-types", path, "--sep", "2"],
    ):
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        assert "Permission denied" in result.output
        assert "Traceback" not in result.output


def test_a_full_disk_while_rewriting_names_the_output(tmp_path):
    # RLIMIT_FSIZE stands in for a full disk: the write fails (EFBIG) where ENOSPC would.
    rng = np.random.default_rng(1)
    path = write_shard(tmp_path / "a.h5", rng.integers(0, 50000, (2000, 256), dtype=np.int32))
    np.save(tmp_path / "t.npy", rng.integers(0, 4, (2000, 256), dtype=np.int8))
    limit = path.stat().st_size // 2
    before = snapshot(tmp_path)

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    for args, target in (
        (["add-types", str(path), str(tmp_path / "t.npy")], path),
        (["assign-types", str(path), "--sep", "2", "-o", str(tmp_path / "o.h5")],
         tmp_path / "o.h5"),
    ):  # fmt: skip
        done = run(*args, preexec_fn=small_files)
        lines = done.stderr.decode().strip().splitlines()
        assert done.returncode == 1, lines
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"Error: {target}: cannot be written: the file size limit")
        assert "damaged" not in lines[0]
        assert snapshot(tmp_path) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "t.npy"]
