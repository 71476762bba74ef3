"""The CLI reference in docs/ is generated from --help and must not go stale."""

from __future__ import annotations

import importlib.util
import re

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


def _prose_sentences(text: str) -> list[str]:
    """The README's sentences outside code blocks, each on one line."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    sentences = []
    for paragraph in re.split(r"\n\s*\n|\n(?=#|- )", prose):
        flat = re.sub(r"\s+", " ", paragraph).strip()
        sentences += re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", flat)
    return sentences


def test_every_readme_sentence_naming_a_test_names_one_that_exists():
    # "a test checks ..." is a claim: the sentence names the test file, and that file exists
    # (with the named test function, when one is named).
    claims = [
        sentence
        for sentence in _prose_sentences((ROOT / "README.md").read_text())
        if re.search(r"\b(a|the) tests?\b(?!-)|checked array-for-array", sentence, re.I)
    ]
    assert claims, "the README makes no claim about its tests: is this test still needed?"
    for sentence in claims:
        named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", sentence)
        assert named, f"names no test file: {sentence!r}"
        for path, function in named:
            assert (ROOT / path).is_file(), f"{path} does not exist: {sentence!r}"
            if function:
                assert f"def {function}(" in (ROOT / path).read_text(), (path, function)
