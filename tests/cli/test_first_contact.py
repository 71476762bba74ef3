"""CLI-wide regressions from QA: usage errors name the subcommand; SIGTERM is never lost."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from tests.helpers import ROOT
from tokentype_cli.cli import cli


def test_usage_errors_point_at_the_subcommand(example1_shard):
    # OptionError raised while a command runs: its usage and help hint, not the group's.
    result = CliRunner().invoke(
        cli, ["inspect", str(example1_shard), "--rows", "5"], prog_name="tokentype"
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: tokentype inspect [OPTIONS] PATHS...\n")
    assert "'tokentype inspect --help'" in result.stderr
    assert result.stderr.rstrip().endswith("row 5 is outside the 1 rows (0..0)")


# --- SIGTERM and Ctrl-C are never lost, even when it lands in a callback whose exceptions Python ignores ----


SCRIPT = """
import signal, sys, time, weakref
from tokentype_cli import cli

cli.exit_on_signals()

class Thing:
    pass

thing = Thing()
# h5py closes objects from weakref callbacks; Python ignores what they raise.
ref = weakref.ref(thing, lambda _: signal.raise_signal(signal.SIG{name}))
del thing
time.sleep(0.5)
print("still running")
"""


@pytest.mark.parametrize(("name", "code"), [("TERM", 128 + 15), ("INT", 128 + 2)])
def test_a_signal_inside_a_weakref_callback_still_stops_the_run(name, code):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(name=name)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "still running" not in done.stdout
    assert done.returncode == code, done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr
