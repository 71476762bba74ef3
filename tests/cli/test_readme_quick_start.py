"""The README's first screen runs as written on a machine with the package installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_the_quick_start_is_ten_lines_near_the_top():
    text = (ROOT / "README.md").read_text()
    assert text.index("## Quick start") < 600
    block = re.search(r"## Quick start\n\n```sh\n(.*?)```", text, re.S).group(1)
    assert len(block.splitlines()) <= 10


def test_the_quick_start_runs(tmp_path):
    lines = quick_start()
    assert lines[0].startswith("make install")  # set-up; the test runs from the installed venv
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for line in lines[1:]:
        done = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (line, done.stdout, done.stderr)
    assert (tmp_path / "pairs.h5").is_file() and (tmp_path / "chat.h5").is_file()
