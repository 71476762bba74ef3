"""Every worked example of docs/rules.md runs as written and prints what the page shows."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.helpers import CONFORMANCE, ROOT, invoke

PAGE = ROOT / "docs" / "rules.md"
FOLDERS = {
    "gpt2/": CONFORMANCE / "tokenizer-gpt2",
    "chatml/": CONFORMANCE / "tokenizer-chatml",
    "sample_data/": ROOT / "sample_data",
}
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def examples() -> list[tuple[str, str]]:
    text = PAGE.read_text(encoding="utf-8")
    parts = re.split(r"^### (Example \d+[^\n]*)$", text, flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def test_the_page_has_the_three_examples():
    assert [title.split(":")[0] for title, _ in examples()] == [
        "Example 1",
        "Example 2",
        "Example 3",
    ]


def localise(command: str) -> list[str]:
    for placeholder, folder in FOLDERS.items():
        if placeholder in command and not folder.is_dir():
            pytest.skip(f"{folder} is not present (outside the workplace)")
        command = re.sub(rf"(?<![\w/.]){re.escape(placeholder)}", f"{folder}/", command)
    words = shlex.split(command)
    assert words[0] == "tokentype", command
    return words[1:]


@pytest.mark.parametrize(("title", "body"), examples(), ids=lambda value: value[:9])
def test_worked_example(title, body, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = None
    checked = 0
    for info, content in _FENCE.findall(body):
        words = info.split()
        if len(words) == 2 and words[1].startswith("file="):
            (tmp_path / words[1][len("file=") :]).write_text(content, encoding="utf-8")
        elif info == "sh":
            for command in content.strip().splitlines():
                result = invoke(*localise(command))
                assert result.exit_code == 0, f"{command}\n{result.output}"
                output = result.stdout
        elif info == "text output":
            assert output is not None, f"{title}: an output block before any command"
            assert output.rstrip("\n") == content.rstrip("\n"), title
            checked += 1
    assert checked, f"{title} shows no output to check"
