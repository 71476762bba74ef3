"""Shared fixtures (helpers live in `tests.helpers`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import CONFORMANCE, EXAMPLE1_IDS, write_shard


@pytest.fixture
def shard_factory(tmp_path):
    """Build shards in tmp_path: shard_factory(ids, types=None, name="shard.h5")."""

    def build(input_ids, token_type_ids=None, name="shard.h5") -> Path:
        return write_shard(tmp_path / name, input_ids, token_type_ids)

    return build


@pytest.fixture
def example1_shard(shard_factory) -> Path:
    """Example 1 of the document with input_ids only."""
    return shard_factory([EXAMPLE1_IDS], name="example1.h5")


@pytest.fixture
def conformance_dir() -> Path:
    if not CONFORMANCE.is_dir():
        pytest.skip(f"conformance cases not present at {CONFORMANCE} (outside the workplace)")
    return CONFORMANCE


@pytest.fixture(autouse=True)
def no_hub_network(tmp_path_factory, monkeypatch):
    """No test reaches the Hugging Face hub: a model id resolves from an empty cache, offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
