"""SIGKILL each in-place rewrite (add-types, assign-types, repack) at random moments while it
writes: the shard is always byte-identical to what it was, or to what a complete run makes."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.helpers import digest
from tokentype_cli.schema.names import INPUT_IDS
from tokentype_cli.schema.temporary import remove_stale_temporaries
from tokentype_cli.schema.write import ShardWriter

KILLS = 8
ROWS = 4000
SEQ_LEN = 1024

COMMANDS = {
    "add-types": ["add-types", "{shard}", "{folder}/types.npy", "-q"],
    "assign-types": ["assign-types", "{shard}", "--sep", "2", "--rule", "span:0:300=prompt", "-q"],
    "repack": ["repack", "{shard}", "-q"],
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Random GPT-2-sized ids (barely compressible, so each rewrite takes a while), written once
    in the schema's storage and once as another tool would (int64, uncompressed) for repack."""
    folder = tmp_path_factory.mktemp("fault")
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 50257, (ROWS, SEQ_LEN), dtype=np.int32)
    with ShardWriter(folder / "schema.h5", SEQ_LEN, (INPUT_IDS,)) as writer:
        writer.append(input_ids=ids)
    with h5py.File(folder / "foreign.h5", "w") as f:
        f.create_dataset(INPUT_IDS, data=ids.astype(np.int64))
    np.save(folder / "types.npy", rng.integers(0, 4, (ROWS, SEQ_LEN), dtype=np.int8))
    return folder


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_sigkill_leaves_the_shard_unchanged_or_complete(sources, tmp_path, command):
    original = sources / ("foreign.h5" if command == "repack" else "schema.h5")
    shard = tmp_path / "shard.h5"
    args = [
        arg.format(shard=shard, folder=sources) for arg in COMMANDS[command]
    ]  # the same command line every time: the complete file is one exact byte string

    def start() -> subprocess.Popen:
        shutil.copyfile(original, shard)
        return subprocess.Popen(
            [sys.executable, "-m", "tokentype_cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_for_writing(process: subprocess.Popen) -> bool:
        """Until the run's temporary appears beside the shard; False if it ended first."""
        while process.poll() is None:
            if _temporaries(tmp_path):
                return True
            time.sleep(0.002)
        return False

    # One uninterrupted run gives the complete file and how long the writing lasts.
    before = digest(original)
    process = start()
    assert wait_for_writing(process), "the run ended before its temporary was seen"
    began = time.monotonic()
    assert process.wait() == 0, process.stderr.read()
    process.stderr.close()
    window = time.monotonic() - began
    complete = digest(shard)
    assert complete != before

    chooser = random.Random(11)
    outcomes = {"unchanged": 0, "complete": 0}
    for attempt in range(KILLS):
        process = start()
        writing = wait_for_writing(process)
        # Most kills land anywhere in the writing; every fourth comes after it should have
        # ended, so the "complete" outcome is exercised even when a loaded machine is slow.
        late = attempt % 4 == 3
        time.sleep(window * 2 if late else chooser.uniform(0.0, window))
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
        if not late:
            assert writing, "the run ended before its temporary was seen"
        # A killed process cannot clean up; the next write into the folder does (its temporary
        # and lock name it, and it is gone). The target is what matters here.
        remove_stale_temporaries(tmp_path)
        found = digest(shard)
        assert found in (before, complete), f"kill {attempt} left a third state"
        outcomes["unchanged" if found == before else "complete"] += 1
    # Both outcomes must occur, or the kills were not spread over the run.
    assert outcomes["unchanged"] and outcomes["complete"], outcomes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.h5"]
