"""The multi-machine build as a transaction: kills during --finish, two runs of one task, shares
checked against their records, one --finish at a time, and workers that die with their parent."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import CODON_MODEL_CONFIG, CODON_VOCAB, digest, invoke, write_pairs

EPOCH = "1700000000"
COMMON = (
    "--max-seq-length", "8", "--packing", "greedy::drop", "--train-files", "4",
    "--dev-files", "2", "--test-files", "1", "--shuffle", "--seed", "7",
)  # fmt: skip


def command(source: Path, folder: Path, *extra) -> list[str]:
    return [
        sys.executable, "-m", "tokentype_cli", "tokenize", str(source), "--dataset", str(folder),
        "--tokenizer", str(CODON_VOCAB), "--model-config", str(CODON_MODEL_CONFIG), *COMMON,
        *map(str, extra),
    ]  # fmt: skip


def environment() -> dict[str, str]:
    return {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}


def run(source: Path, folder: Path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(source, folder, *extra),
        capture_output=True,
        text=True,
        timeout=300,
        env=environment(),
    )


def folder_digests(folder: Path) -> dict[str, str]:
    """Every file's sha256, the manifest included: byte-identical means all of them."""
    return {p.relative_to(folder).as_posix(): digest(p) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """An input, the one-process folder's digests, and a pristine copy of 3 finished tasks."""
    base = tmp_path_factory.mktemp("built")
    source = write_pairs(base / "in.jsonl", 20000)
    reference = base / "reference"
    done = run(source, reference, "--workers", "1")
    assert done.returncode == 0, done.stderr
    folder = base / "ds"
    for index in range(3):
        done = run(source, folder, "--task", f"{index}/3", "--workers", "1")
        assert done.returncode == 0, done.stderr
    pristine = base / "pristine"
    shutil.copytree(base / ".ds.tokentype-tasks", pristine, symlinks=True)
    return source, folder_digests(reference), pristine


def shares_at(tmp_path: Path, pristine: Path) -> Path:
    root = tmp_path / ".ds.tokentype-tasks"
    shutil.copytree(pristine, root, symlinks=True)
    return root


def the_share(root: Path, index: int, count: int = 3) -> Path:
    record = json.loads((root / "tasks" / f"task_{index}_of_{count}.json").read_text())
    return root / record["share"]


# --- a kill at any moment of --finish ------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_finish_killed_at_any_moment_then_finished_again_is_byte_identical(
    built, tmp_path, signum
):
    source, expected, pristine = built
    folder = tmp_path / "ds"
    delays = [0.0, 0.03, 0.08, 0.15, 0.3, 0.6] if signum == signal.SIGKILL else [0.05, 0.2]
    for delay in delays:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(tmp_path / ".ds.tokentype-tasks", ignore_errors=True)
        shares_at(tmp_path, pristine)
        process = subprocess.Popen(
            command(source, folder, "--finish", "--overwrite"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=environment(),
        )
        # Count from the moment the finish starts building its folder (the shares checked).
        deadline = time.monotonic() + 60
        while (
            process.poll() is None
            and time.monotonic() < deadline
            and not list(tmp_path.glob(".ds.tokentype-*.tmp"))
        ):
            time.sleep(0.005)
        time.sleep(delay)
        process.send_signal(signum)
        stderr = process.communicate(timeout=60)[1].decode()
        assert "Traceback" not in stderr
        again = run(source, folder, "--finish", "--overwrite")
        if again.returncode != 0:
            # Killed once the folder was in place and the shares gone: nothing left to redo.
            assert again.returncode == 1 and "finished already" in again.stderr
            assert again.stderr.count("\n") == 1, again.stderr
        assert folder_digests(folder) == expected, f"killed {delay}s in"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


# --- two runs of one task ------------------------------------------------------------------------


def test_two_runs_of_one_task_at_once_both_publish_whole(built, tmp_path):
    source, expected, _ = built
    folder = tmp_path / "ds"
    runs = [
        subprocess.Popen(
            command(source, folder, "--task", "1/3", "--workers", "1"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=environment(),
        )
        for _ in range(2)
    ]
    for process in runs:
        stderr = process.communicate(timeout=300)[1].decode()
        assert process.returncode == 0, stderr
    for index in (0, 2):
        assert run(source, folder, "--task", f"{index}/3", "--workers", "1").returncode == 0
    shares = list((tmp_path / ".ds.tokentype-tasks" / "shares").iterdir())
    assert len(shares) == 4  # both runs of task 1 published; the record names the last
    finished = run(source, folder, "--finish")
    assert finished.returncode == 0, finished.stderr
    assert folder_digests(folder) == expected


# --- shares checked against their records ----------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        "[0, 3]",
        '{"task": "0/3"}',
        '{"task": [0, 3], "share": "../../elsewhere", "files": {}}',
        '{"task": [0, 3], "share": "shares/task_0_of_3.x", "files": {"a": 5}}',
        '{"task": [0, 3], "share": "shares/task_0_of_3.x", "files": {"../x": {"size": 1,'
        ' "sha256": "", "rows": 1}}}',
        '{"task": [0, 3',
    ],
)
def test_a_damaged_task_record_is_one_line(built, tmp_path, damage):
    source, _, pristine = built
    root = shares_at(tmp_path, pristine)
    (root / "tasks" / "task_0_of_3.json").write_text(damage)
    result = run(source, tmp_path / "ds", "--finish")
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "task_0_of_3.json: damaged task record" in result.stderr
    assert "run that task again" in result.stderr
    assert not (tmp_path / "ds").exists()


def test_a_share_file_changed_since_its_record_is_refused_naming_the_task(built, tmp_path):
    source, _, pristine = built
    root = shares_at(tmp_path, pristine)
    shard = the_share(root, 1) / "train_2_of_4.hdf5"
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = run(source, tmp_path / "ds", "--finish")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "train_2_of_4.hdf5: its sha256 differs from task 1/3's record" in result.stderr
    assert "run --task 1/3 again" in result.stderr
    (the_share(root, 2) / "train_3_of_4.hdf5").unlink()
    result = run(source, tmp_path / "ds", "--finish")
    assert "missing from task" in result.stderr or "differs from task" in result.stderr
    assert not (tmp_path / "ds").exists()


def test_only_the_files_the_plan_names_reach_the_folder(built, tmp_path):
    source, expected, pristine = built
    root = shares_at(tmp_path, pristine)
    share = the_share(root, 0)
    # A run with other split counts, and temporaries of a task killed on another host.
    shutil.copyfile(share / "train_1_of_4.hdf5", share / "train_1_of_9.hdf5")
    (share / ".train_2_of_4.hdf5.tokentype-otherhost-123-ab12cd34.tmp").write_bytes(b"x")
    stray = root / ".task_0_of_3.tokentype-otherhost-123-ab12cd34.tmp"
    stray.mkdir()
    (stray / "train_1_of_4.hdf5").write_bytes(b"half")
    result = run(source, tmp_path / "ds", "--finish")
    assert result.returncode == 0, result.stderr
    assert folder_digests(tmp_path / "ds") == expected


def test_a_finish_names_every_missing_task(built, tmp_path):
    source, _, pristine = built
    root = shares_at(tmp_path, pristine)
    for index in (0, 2):
        (root / "tasks" / f"task_{index}_of_3.json").unlink()
    result = run(source, tmp_path / "ds", "--finish")
    assert result.returncode == 1
    assert "tasks 0/3, 2/3 have not finished" in result.stderr
    assert "run each: --task 0/3, --task 2/3" in result.stderr


# --- one --finish at a time ------------------------------------------------------------------


def test_a_second_finish_is_refused_naming_the_first_ones_host_and_pid(built, tmp_path):
    source, _, pristine = built
    root = shares_at(tmp_path, pristine)
    with open(root / "finish.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("node17 4242\n")
        lock.flush()
        result = run(source, tmp_path / "ds", "--finish")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "another --finish is running (host node17, pid 4242)" in result.stderr
    assert not (tmp_path / "ds").exists()
    assert run(source, tmp_path / "ds", "--finish").returncode == 0


def test_two_finishes_started_together_build_once(built, tmp_path):
    source, expected, pristine = built
    shares_at(tmp_path, pristine)
    finishes = [
        subprocess.Popen(
            command(source, tmp_path / "ds", "--finish", "--overwrite"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=environment(),
        )
        for _ in range(2)
    ]
    outcomes = sorted(
        (process.wait(timeout=300), process.stderr.read().decode()) for process in finishes
    )
    for process in finishes:
        process.stderr.close()
    (built_code, _), (refused_code, refused) = outcomes
    assert (built_code, refused_code) == (0, 1), outcomes
    assert refused.count("\n") == 1 and "Traceback" not in refused
    assert any(
        why in refused
        # "(another process)" when the holder has the lock but has not yet written its host
        for why in ("another --finish is running (", "finished already", "has just finished")
    ), refused
    assert folder_digests(tmp_path / "ds") == expected


def test_source_date_epoch_must_be_a_number(built, tmp_path):
    source, _, _ = built
    result = subprocess.run(
        command(source, tmp_path / "ds"),
        capture_output=True,
        text=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "yesterday"},
    )
    assert result.returncode == 2 and "SOURCE_DATE_EPOCH='yesterday'" in result.stderr


def test_folders_are_byte_identical_for_every_worker_count(built, tmp_path):
    source, expected, _ = built
    for workers in (2, 3):
        folder = tmp_path / f"w{workers}"
        done = run(source, folder, "--workers", workers)
        assert done.returncode == 0, done.stderr
        assert folder_digests(folder) == expected
    manifest = json.loads((tmp_path / "w2" / "sha256" / "files_metadata.json").read_text())
    assert {entry["modified_time"] for entry in manifest.values()} == {int(EPOCH)}


def test_in_process_builds_also_honour_the_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    source = write_pairs(tmp_path / "in.jsonl", 100)
    for name in ("a", "b"):
        result = invoke(
            "tokenize", source, "--dataset", tmp_path / name, "--tokenizer", CODON_VOCAB,
            "--model-config", CODON_MODEL_CONFIG, *COMMON,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        time.sleep(1.1)  # a later second: without the epoch the times would differ
    assert folder_digests(tmp_path / "a") == folder_digests(tmp_path / "b")


# --- workers die with their parent ------------------------------------------------------------


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("large") / "in.jsonl", 60000)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the workers")
def test_workers_die_with_a_sigkilled_parent(large, tmp_path):
    process = subprocess.Popen(
        command(large, tmp_path / "ds", "--workers", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 2 and process.poll() is None:
        workers = children(process.pid)
        time.sleep(0.005)
    # Forked workers are ready at once, and the build takes under a second: kill it now.
    assert len(workers) >= 2, workers
    process.kill()
    process.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(running(pid) for pid in workers):
        time.sleep(0.1)
    left = [pid for pid in workers if running(pid)]
    for pid in left:  # the test's own orphans: do not leave them to tokenize on
        os.kill(pid, signal.SIGKILL)
    assert not left, "worker processes outlived their SIGKILLed parent"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_whole_process_group_is_one_line(large, tmp_path, signum):
    # Ctrl-C, `timeout` and Slurm's scancel signal the workers too, not the parent alone.
    landed = 0
    for moment in (0.0, 0.1, 0.25):
        shutil.rmtree(tmp_path / "ds", ignore_errors=True)
        process = subprocess.Popen(
            command(large, tmp_path / "ds", "--workers", "2", "--overwrite"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(tmp_path.glob(".ds.*/parts")):
            time.sleep(0.01)
        time.sleep(moment)  # the build takes about a second: routing, then tokenizing
        if process.poll() is None:
            os.killpg(process.pid, signum)
        stderr = process.communicate(timeout=60)[1].decode()
        if (tmp_path / "ds" / "metadata.yaml").is_file():
            # Finished before the signal (or it landed as the interpreter ended, when Python's
            # handlers are gone): nothing to check at this moment.
            continue
        assert process.returncode == 128 + signum, stderr
        assert stderr.strip().splitlines() == [
            f"Aborted: {signal.Signals(signum).name} received; outputs were left as they were."
        ]
        assert not list(tmp_path.glob(".ds.*"))
        landed += 1
    assert landed, "every build finished before its signal: nothing was tested"


# Runs a build whose forked workers take a second to start (a slow initializer, inherited by
# fork), and says on stdout when the first has begun it.
SLOW_START = r"""
import os, sys, time
from tokentype_cli import processes
from tokentype_cli.dataset import build
from tokentype_cli.cli import main
start = processes.die_with_parent
def slow(parent):
    os.write(1, b"starting\n")  # one write: two workers' lines never interleave
    time.sleep(1)
    start(parent)
processes.die_with_parent = slow
build._start_method = lambda: "fork"  # as the CLI, which imports build later, finds it safe
sys.argv[0] = "tokentype"
main()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux")
def test_a_sigterm_while_forked_workers_start_is_one_line(large, tmp_path):
    # A forked worker has the CLI's SIGTERM handler until its initializer resets it: a SIGTERM
    # to the process group then raised inside the initializer and the pool printed a traceback.
    argv = command(large, tmp_path / "ds", "--workers", "2")
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_START, *argv[3:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout.readline() == b"starting\n"
    os.killpg(process.pid, signal.SIGTERM)
    stderr = process.communicate(timeout=60)[1].decode()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == [
        "Aborted: SIGTERM received; outputs were left as they were."
    ]
    assert not list(tmp_path.glob(".ds*"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the workers")
def test_a_worker_killed_mid_build_is_one_line(large, tmp_path):
    process = subprocess.Popen(
        command(large, tmp_path / "ds", "--workers", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob(".ds.*/.train_*.tmp")):
        time.sleep(0.01)
    process.send_signal(signal.SIGSTOP)  # the build cannot end before the worker is gone
    workers = sorted(children(process.pid))  # forked or spawned, the build's only children
    assert workers
    os.kill(workers[0], signal.SIGKILL)
    process.send_signal(signal.SIGCONT)
    stderr = process.communicate(timeout=120)[1].decode()
    assert process.returncode == 1, stderr
    assert stderr.count("\n") == 1 and "a worker process died while tokenizing" in stderr
    assert not list(tmp_path.glob(".ds*"))


def test_a_task_whose_staging_folder_vanishes_stops_with_one_line(large, tmp_path):
    # A lost node's run that goes on after a --finish removed the tasks folder.
    process = subprocess.Popen(
        command(large, tmp_path / "ds", "--task", "0/2", "--workers", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    root = tmp_path / ".ds.tokentype-tasks"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(root.glob(".task_0_of_2.*/.train_*.tmp")):
        time.sleep(0.01)
    # The whole group stops: a worker still writing would race the removal (rmtree meets a
    # file created after it listed the folder).
    os.killpg(process.pid, signal.SIGSTOP)
    shutil.rmtree(root)
    os.killpg(process.pid, signal.SIGCONT)
    stderr = process.communicate(timeout=120)[1].decode()
    assert process.returncode == 1, stderr
    assert stderr.count("\n") == 1, stderr
    assert "this task's staging folder was removed while it ran" in stderr
    assert "run --task 0/2 again" in stderr
