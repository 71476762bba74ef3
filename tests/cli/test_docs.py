"""The CLI reference in docs/ is generated from --help and must not go stale."""

from __future__ import annotations

import importlib.util

from tests.helpers import ROOT


def test_cli_reference_matches_help():
    spec = importlib.util.spec_from_file_location(
        "generate", ROOT / "docs/generate_cli_reference.py"
    )
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert generate.REFERENCE.read_text() == generate.render(), (
        "docs/cli-reference.md is stale: run .venv/bin/python docs/generate_cli_reference.py"
    )
