"""Write docs/cli-reference.md from the commands' --help, so the reference never drifts.

python docs/generate_cli_reference.py          # rewrite the file
python docs/generate_cli_reference.py --check  # exit 1 if it is out of date (used by tests)
"""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

from tokentype_cli.cli import cli

REFERENCE = Path(__file__).with_name("cli-reference.md")


def render() -> str:
    runner = CliRunner()
    parts = [
        "# CLI reference\n",
        "Generated from `--help` by `docs/generate_cli_reference.py`; do not edit by hand.\n",
    ]
    for name in [None, *sorted(cli.commands)]:
        args = ["--help"] if name is None else [name, "--help"]
        result = runner.invoke(cli, args, prog_name="tokentype", terminal_width=100)
        parts.append(f"## tokentype{' ' + name if name else ''}\n")
        parts.append(f"```\n{result.stdout.rstrip()}\n```\n")
    return "\n".join(parts)


def main() -> None:
    text = render()
    if "--check" in sys.argv[1:]:
        if not REFERENCE.exists() or REFERENCE.read_text() != text:
            sys.exit(f"{REFERENCE} is out of date; run .venv/bin/python docs/{Path(__file__).name}")
        return
    REFERENCE.write_text(text)


if __name__ == "__main__":
    main()
