"""The Slurm recipe under a real slurmctld and slurmd (one node, munge), as users run it: an
array with a task missing, a finish with `afterany` that names it, the task rerun alone with
`--export` naming the variables, and the finish again. Skipped where Slurm cannot run here.

The daemons are this test's own: a private munge socket, config, ports and spool under
tmp_path, stopped by their pids at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import CODON_VOCAB, OPTIONS, RECIPES, invoke, manifest_hashes, write_pairs

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
# Debian puts the daemons in /usr/sbin, which a job's or a CI runner's PATH may leave out.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _why_not() -> str | None:
    missing = [name for name in DAEMONS if shutil.which(name, path=SEARCH_PATH) is None]
    if missing:
        return (
            f"{', '.join(missing)} not installed (apt-get install slurmctld slurmd slurm-client"
            " munge, as root)"
        )
    if os.geteuid() != 0:
        return "slurmd runs jobs as their user only when started as root"
    return None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = _why_not()
    if why is not None:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (base / sub).mkdir()
    key = base / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname()
    conf = base / "slurm.conf"
    conf.write_text(
        f"ClusterName=tokentype\nSlurmctldHost={host}(127.0.0.1)\n"
        f"SlurmctldPort={_free_port()}\nSlurmdPort={_free_port()}\n"
        f"AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={base}/munge.sock\n"
        "SlurmUser=root\nSlurmdUser=root\n"
        f"StateSaveLocation={base}/state\nSlurmdSpoolDir={base}/spool\n"
        f"SlurmctldPidFile={base}/slurmctld.pid\nSlurmdPidFile={base}/slurmd.pid\n"
        f"SlurmctldLogFile={base}/slurmctld.log\nSlurmdLogFile={base}/slurmd.log\n"
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
        "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n"
        "MpiDefault=none\nReturnToService=2\nMailProg=/bin/true\n"
        "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n"
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n"
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
    )
    env = {**os.environ, "PATH": SEARCH_PATH, "SLURM_CONF": str(conf)}
    started = []
    try:
        munged = [
            "munged", "--foreground", "--force", f"--socket={base}/munge.sock",
            f"--key-file={key}", f"--log-file={base}/munged.log",
            f"--pid-file={base}/munged.pid", f"--seed-file={base}/munged.seed",
        ]  # fmt: skip
        started.append(
            subprocess.Popen(munged, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        deadline = time.monotonic() + 20
        while not (base / "munge.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for daemon in (["slurmctld", "-D", "-i"], ["slurmd", "-D"]):
            started.append(
                subprocess.Popen(
                    daemon, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True
            ).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        if state != "idle":
            log = (base / "slurmctld.log").read_text(errors="replace")[-500:]
            pytest.skip(f"the one-node Slurm cluster did not come up (node {state!r}): {log}")
        yield env
    finally:
        for process in reversed(started):
            process.terminate()
        for process in reversed(started):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _sbatch(env: dict, cwd: Path, *args) -> str:
    done = subprocess.run(
        ["sbatch", "--parsable", f"--chdir={cwd}", f"--output={cwd}/%x-%A_%a.out", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().split(";")[0]


def _wait_for(env: dict, job: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queued = subprocess.run(
            ["squeue", "-h", "-j", job], env=env, capture_output=True, text=True
        ).stdout.strip()
        if not queued:
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job} still queued after {timeout} s")


def test_a_missing_task_rerun_alone_then_the_finish(slurm, tmp_path):
    source = write_pairs(tmp_path / "data.jsonl", 200)
    expected = tmp_path / "one_process"
    made = invoke(
        "tokenize", source, "--dataset", expected, "--tokenizer", CODON_VOCAB, *OPTIONS.split()
    )
    assert made.exit_code == 0, made.output
    script = tmp_path / "slurm_dataset.sh"
    shutil.copyfile(RECIPES / "slurm_dataset.sh", script)
    variables = {
        "TASKS": "3",
        "INPUT": str(source),
        "TOKENIZER": str(CODON_VOCAB),
        "DATASET": str(tmp_path / "ds"),
        "OPTIONS": OPTIONS + " --quiet",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env = {**slurm, **variables}
    # Tasks 0 and 2 only (Slurm counts 2 tasks in this array), then a finish after any end.
    array = _sbatch(env, tmp_path, "--array=0,2", str(script))
    finish = _sbatch(env, tmp_path, f"--dependency=afterany:{array}", str(script), "--finish")
    _wait_for(env, finish)
    logs = {path.name: path.read_text() for path in tmp_path.glob("*.out")}
    for index in (0, 2):
        log = logs[f"tokentype-dataset-{array}_{index}.out"]
        assert f"task {index}/3 of {tmp_path / 'ds'} built" in log, log
    refused = logs[f"tokentype-dataset-{finish}_4294967294.out"]
    assert "task 1/3 has not finished" in refused and "--task 1/3" in refused, refused
    assert not (tmp_path / "ds").exists()
    # The rerun of one task, its variables named as --export=NONE sites need.
    exported = ",".join(f"{key}={value}" for key, value in variables.items() if key != "OPTIONS")
    rerun = _sbatch(
        {**env, "OPTIONS": OPTIONS}, tmp_path, f"--export=ALL,{exported}", "--array=1", str(script)
    )
    _wait_for(env, rerun)
    log = (tmp_path / f"tokentype-dataset-{rerun}_1.out").read_text()
    assert "task 1/3" in log and "built" in log, log
    again = _sbatch(env, tmp_path, f"--dependency=afterany:{rerun}", str(script), "--finish")
    _wait_for(env, again)
    log = (tmp_path / f"tokentype-dataset-{again}_4294967294.out").read_text()
    assert (tmp_path / "ds" / "metadata.yaml").is_file(), log
    assert manifest_hashes(tmp_path / "ds") == manifest_hashes(expected)
