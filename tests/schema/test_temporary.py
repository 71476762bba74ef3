"""schema.temporary.exchange: one step that swaps two paths, or says it cannot."""

from __future__ import annotations

import errno
import sys

import pytest

from tokentype_cli.schema import temporary
from tokentype_cli.schema.temporary import exchange

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")


@linux
def test_exchange_swaps_two_folders_whole(tmp_path):
    first, second = tmp_path / "new", tmp_path / "old"
    first.mkdir()
    second.mkdir()
    (first / "made").write_text("new")
    (second / "kept").write_text("old")
    if not exchange(first, second):
        pytest.skip(f"{tmp_path}'s filesystem cannot swap paths in one step")
    assert (second / "made").read_text() == "new"
    assert (first / "kept").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old"]


@linux
def test_exchange_of_a_missing_path_raises_and_changes_nothing(tmp_path):
    there = tmp_path / "there"
    there.mkdir()
    with pytest.raises(OSError) as caught:
        exchange(tmp_path / "missing", there)
    assert caught.value.errno == errno.ENOENT
    assert there.is_dir() and not (tmp_path / "missing").exists()


def test_exchange_is_refused_quietly_where_the_system_cannot(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    monkeypatch.setattr(temporary.sys, "platform", "darwin")
    assert exchange(first, second) is False
    assert first.is_dir() and second.is_dir()
