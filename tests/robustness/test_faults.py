"""SIGKILL add-types at random moments: the shard is always either unchanged or complete."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from tests.helpers import digest
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_IDS
from tokentype_cli.schema.temporary import remove_stale_temporaries
from tokentype_cli.schema.write import ShardWriter

KILLS = 24
MIN_FILE_BYTES = 50 * 2**20
SEQ_LEN = 1024


@pytest.fixture(scope="module")
def big_shard(tmp_path_factory):
    """A shard of random GPT-2-sized ids (barely compressible) of at least 50 MB, and two typings."""
    folder = tmp_path_factory.mktemp("fault")
    rng = np.random.default_rng(7)
    rows = 28_000
    path = folder / "big.h5"
    with ShardWriter(path, SEQ_LEN, (INPUT_IDS,)) as writer:
        for _ in range(0, rows, 2000):
            writer.append(input_ids=rng.integers(0, 50257, (2000, SEQ_LEN), dtype=np.int32))
    assert path.stat().st_size >= MIN_FILE_BYTES
    typings = []
    for name in ("a", "b"):
        types = rng.integers(0, 4, (rows, SEQ_LEN), dtype=np.int8)
        np.save(folder / f"{name}.npy", types)
        typings.append(folder / f"{name}.npy")
    return path, typings


def run_add_types(path, source, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokentype_cli",
            "add-types",
            str(path),
            str(source),
            "--overwrite",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def test_sigkill_leaves_the_shard_unchanged_or_complete(big_shard):
    path, typings = big_shard
    started = time.monotonic()
    with run_add_types(path, typings[0], stderr=subprocess.PIPE) as process:
        assert process.wait() == 0, process.stderr.read()
    full_run = time.monotonic() - started
    with h5py.File(path, "r") as shard:
        ids_before = hashlib.sha256(shard[INPUT_IDS][:].tobytes()).hexdigest()

    chooser = random.Random(11)
    current_types = typings[0]
    outcomes = {"unchanged": 0, "complete": 0}
    for attempt in range(KILLS):
        before = digest(path)
        new_types = typings[1] if current_types == typings[0] else typings[0]
        process = run_add_types(path, new_types)
        # Most kills land anywhere in a run; every sixth comes well after a run's length, so
        # the "complete" outcome is exercised even when a loaded machine slows the runs down.
        late = attempt % 6 == 5
        time.sleep(full_run * 3 if late else chooser.uniform(0.0, full_run))
        process.send_signal(signal.SIGKILL)
        process.wait()
        # A killed process cannot clean up; the next write into the folder does (its temporary
        # and lock file name it, and it is gone). The target is what matters here.
        remove_stale_temporaries(path.parent)
        if digest(path) == before:
            outcomes["unchanged"] += 1
            continue
        with h5py.File(path, "r") as shard:
            assert hashlib.sha256(shard[INPUT_IDS][:].tobytes()).hexdigest() == ids_before
            np.testing.assert_array_equal(shard[TOKEN_TYPE_IDS][:], np.load(new_types))
        current_types = new_types
        outcomes["complete"] += 1
    assert sum(outcomes.values()) == KILLS
    # Both outcomes must occur, or the kills were not spread over the run.
    assert outcomes["unchanged"] and outcomes["complete"], outcomes
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []
    assert os.path.getsize(path) >= MIN_FILE_BYTES
