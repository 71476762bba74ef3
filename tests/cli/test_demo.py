"""`make demo`: sample_data/demo.sh runs as the Makefile runs it, and shows the source document's
arrays where its steps say it does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py

from tests.helpers import (
    EXAMPLE1_ALT_TYPES,
    EXAMPLE1_IDS,
    EXAMPLE1_TYPES,
    EXAMPLE2_IDS,
    EXAMPLE2_TYPES,
    ROOT,
    SAMPLE_DATA,
    invoke,
)

# (input_ids, token_type_ids) each step shows, in order: the document's two examples.
SHOWN = [
    (EXAMPLE1_IDS, EXAMPLE1_TYPES),  # tokenize example 1
    (EXAMPLE2_IDS, EXAMPLE2_TYPES),  # tokenize example 2, from stdin
    (EXAMPLE1_IDS, EXAMPLE1_TYPES),  # add-types
    (EXAMPLE1_IDS, EXAMPLE1_ALT_TYPES),  # add-types, the second typing
    (EXAMPLE2_IDS, EXAMPLE2_TYPES),  # add-types, example 2
    (EXAMPLE1_IDS, EXAMPLE1_TYPES),  # assign-types until:ATG=prompt
    (EXAMPLE1_IDS, EXAMPLE1_ALT_TYPES),  # assign-types span:2:4=prompt
    (EXAMPLE2_IDS, EXAMPLE2_TYPES),  # assign-types from the rules file
]


def test_the_makefile_runs_demo_sh_with_the_venv_on_path():
    recipe = re.search(r"^demo:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "no demo target in the Makefile"
    assert 'PATH="$(CURDIR)/$(BIN):$$PATH"' in recipe.group(1)
    assert "bash sample_data/demo.sh $(DEMO)" in recipe.group(1)


def test_make_demo_runs_and_shows_the_documents_arrays(tmp_path):
    out = tmp_path / "demo_out"
    bin_dir = Path(sys.executable).parent  # where the venv's tokentype is, as make demo puts it
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(SAMPLE_DATA / "demo.sh"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    arrays = re.findall(r"^  (input_ids|token_type_ids) += (\[.*\])$", done.stdout, re.M)
    pairs = [
        (json.loads(ids), json.loads(types))  # lists of ints, as the demo's h5py snippet prints
        for (_, ids), (_, types) in zip(arrays[0::2], arrays[1::2], strict=True)
    ]
    assert pairs == SHOWN
    assert "(exit 1: no article holds ATC GAA, so --require-match wrote nothing)" in done.stdout
    assert "(exit 1: the builds differ)" in done.stdout
    assert done.stdout.rstrip().endswith(f"are in {out}")
    # What it leaves is what it says: a dataset folder that validates, a report, a chat shard
    # whose rows learn.
    assert invoke("validate", out / "dataset").exit_code == 0
    assert (out / "report.html").read_text().lstrip().lower().startswith("<!doctype html>")
    with h5py.File(out / "chat.h5", "r") as chat:
        types = chat["token_type_ids"][:]
    assert (types == 1).any(axis=1).all() and ((types == 3).sum(axis=1) == 1).all()
