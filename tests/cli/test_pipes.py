"""Real processes and real pipes through `python -m tokentype_cli`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import EXAMPLE1_TYPES, write_shard

PYTHON = sys.executable


def shell(script: str, cwd) -> subprocess.CompletedProcess:
    # No bare `python`: a fresh machine may have only python3, so scripts say "$PY".
    env = {**os.environ, "TT": f"{PYTHON} -m tokentype_cli", "PY": PYTHON}
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_types_piped_in_then_validated_as_json(tmp_path):
    write_shard(tmp_path / "s.h5", [[9, 5, 6, 10, 7, 8, 2]])
    (tmp_path / "types.jsonl").write_text(json.dumps(EXAMPLE1_TYPES) + "\n")
    result = shell(
        "cat types.jsonl | $TT add-types s.h5 - && $TT validate s.h5 --require-types --json"
        """ | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["errors"])'""",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0\n"


def test_output_cut_short_by_head_exits_quietly(tmp_path):
    write_shard(tmp_path / "s.h5", [[1, 2, 3, 4]] * 3000, [[1, 1, 1, 3]] * 3000)
    result = shell("$TT inspect s.h5 --rows 0:3000 | head -n 2", tmp_path)
    # click's convention for a reader that stopped early: status 1 (seen under pipefail), no noise.
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 2
    assert result.stderr == ""


def test_failure_exit_code_survives_a_pipe(tmp_path):
    (tmp_path / "bad.h5").write_text("not hdf5")
    result = shell("$TT inspect bad.h5 --json | cat", tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and "not an HDF5 file" in result.stderr
