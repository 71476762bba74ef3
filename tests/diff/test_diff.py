"""`tokentype diff`: rows matched by content, type changes, --ignore, --rows, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import CODON_VOCAB, EXAMPLE2_IDS, EXAMPLE2_TYPES, invoke, write_shard
from tokentype_cli.diff import compare as diff_module
from tokentype_cli.diff.compare import DiffOptions, diff_builds, hash_ids, hash_types


def build(rows: int = 40, seq_len: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows: prompt, completion, a separator, then padding (id 69)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 60, (rows, seq_len)).astype(np.int32)
    types = np.ones((rows, seq_len), np.int32)
    prompt = rng.integers(1, seq_len // 3, rows)
    end = rng.integers(seq_len // 2, seq_len - 1, rows)
    columns = np.arange(seq_len)
    types[columns < prompt[:, None]] = 0
    types[columns == end[:, None]] = 3
    types[columns > end[:, None]] = 2
    ids[types == 3] = 2
    ids[types == 2] = 69
    return ids, types


def run(a, b, *args):
    result = invoke("diff", a, b, *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def as_json(a, b, *args):
    result = run(a, b, "--json", *args)
    data = json.loads(result.stdout)
    # Exit 0 exactly when the builds teach the same thing, as the JSON says.
    assert result.exit_code == (0 if data["same"] else 1), result.output
    return result.exit_code, data


def test_identical_builds_are_the_same(tmp_path):
    ids, types = build()
    a = write_shard(tmp_path / "a.h5", ids, types)
    b = write_shard(tmp_path / "b.h5", ids, types)
    result = run(a, b)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.splitlines()[-1] == "same: both builds teach the same thing"
    code, data = as_json(a, b)
    assert code == 0 and data["same"] is True and data["differences"] == []
    assert data["matching"]["matched"] == 40 and data["matching"]["moved"] == 0
    assert data["by_position"] == {"rows": 40, "same": 40, "ids_differ": 0, "types_differ": 0}
    assert data["a"]["token_types"] == data["b"]["token_types"]
    assert set(data["a"]) >= {"path", "rows", "seq_len", "token_types"}


def test_type_changes_are_counted_from_and_to(tmp_path):
    ids, types = build()
    changed = types.copy()
    # Row 3: two completion tokens become prompt; row 7: the separator becomes padding.
    completion = np.flatnonzero(types[3] == 1)[:2]
    changed[3, completion] = 0
    changed[7, types[7] == 3] = 2
    a = write_shard(tmp_path / "a.h5", ids, types)
    b = write_shard(tmp_path / "b.h5", ids, changed)
    code, data = as_json(a, b)
    assert code == 1
    assert data["type_changes"] == {"completion": {"prompt": 2}, "separator": {"padding": 1}}
    assert data["matching"]["types_changed"] == 2 and data["tokens_changed"] == 3
    assert data["by_position"]["types_differ"] == 2
    assert data["learned_change"] == -3.0
    text = run(a, b).stdout
    assert "types changed in 2 matched rows, 3 tokens (from \\ to):" in text
    assert text.splitlines()[-1].startswith("differ: types changed in 2 matched rows")


def test_a_reshuffled_build_matches_by_content(tmp_path):
    ids, types = build(rows=60)
    order = np.random.default_rng(5).permutation(60)
    changed = types.copy()
    changed[10, changed[10] == 0] = 1  # its prompt becomes completion
    a = write_shard(tmp_path / "a.h5", ids, types)
    shuffled = write_shard(tmp_path / "shuffled.h5", ids[order], types[order])
    code, data = as_json(a, shuffled)
    assert code == 1 and data["differences"] == [
        "rows in another order (--ignore order accepts that)"
    ]
    assert data["matching"]["matched"] == 60 and data["matching"]["only_in_a"] == 0
    assert run(a, shuffled, "--ignore", "order").exit_code == 0
    # A type change in a row that moved is found too (the second pass).
    moved = write_shard(tmp_path / "moved.h5", ids[order], changed[order])
    code, data = as_json(a, moved, "--ignore", "order")
    assert code == 1
    prompts = int(np.count_nonzero(types[10] == 0))
    assert data["type_changes"] == {"prompt": {"completion": prompts}}
    assert data["matching"]["types_changed"] == 1


def test_duplicate_rows_are_matched_as_multisets(tmp_path):
    ids, types = build(rows=5)
    a = write_shard(tmp_path / "a.h5", ids[[0, 0, 1, 2]], types[[0, 0, 1, 2]])
    b = write_shard(tmp_path / "b.h5", ids[[0, 0, 0, 1, 3]], types[[0, 0, 0, 1, 3]])
    code, data = as_json(a, b, "--ignore", "order")
    assert code == 1
    assert data["matching"] | {"same_order": None} == {
        "matched": 3,
        "moved": 1,  # row 1 is row 2 of A and row 3 of B
        "only_in_a": 1,
        "only_in_b": 2,
        "left_out_a": 0,
        "left_out_b": 0,
        "types_changed": 0,
        "typed_on_one_side": 0,
        "same_order": None,
    }


def test_copies_of_a_row_pair_up_by_their_types_first(tmp_path):
    ids, types = build(rows=2)
    other = types[0].copy()
    other[other == 0] = 1
    a = write_shard(tmp_path / "a.h5", ids[[0, 0, 1]], [types[0], other, types[1]])
    b = write_shard(tmp_path / "b.h5", ids[[1, 0, 0]], [types[1], other, types[0]])
    code, data = as_json(a, b, "--ignore", "order")
    assert code == 0, data["differences"]
    assert data["matching"]["types_changed"] == 0


def test_ignore_padding_accepts_another_pad_id_and_padding_only_rows(tmp_path):
    ids, types = build()
    repadded = np.where(types == 2, 0, ids)
    a = write_shard(tmp_path / "a.h5", ids, types)
    b = write_shard(
        tmp_path / "b.h5",
        np.vstack([repadded, np.full((2, 12), 69)]),
        np.vstack([types, np.full((2, 12), 2)]),
    )
    code, data = as_json(a, b)
    assert code == 1 and data["matching"]["only_in_b"] == 42
    code, data = as_json(a, b, "--ignore", "padding")
    assert code == 0, data["differences"]
    assert data["matching"]["left_out_b"] == 2 and data["matching"]["matched"] == 40
    text = run(a, b, "--ignore", "padding").stdout
    assert "left out (only padding): 0 in A, 2 in B" in text
    assert text.endswith("same: both builds teach the same thing (ignoring padding)\n")


def test_folders_pair_files_by_name_and_a_rebalanced_build_still_compares(tmp_path):
    ids, types = build(rows=30)
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    write_shard(old / "train_1_of_2.hdf5", ids[:15], types[:15])
    write_shard(old / "train_2_of_2.hdf5", ids[15:], types[15:])
    for k, part in enumerate(np.array_split(np.arange(30), 3), start=1):
        write_shard(new / f"train_{k}_of_3.hdf5", ids[part], types[part])
    code, data = as_json(old, new)
    assert code == 0, data["differences"]
    assert data["files_only_in_a"] == ["train_1_of_2.hdf5", "train_2_of_2.hdf5"]
    assert data["files_only_in_b"] == data["b"]["files"]
    assert data["b"]["files"] == ["train_1_of_3.hdf5", "train_2_of_3.hdf5", "train_3_of_3.hdf5"]
    assert data["by_position"] is None
    assert data["inputs"] == [str(old), str(new)]
    # Same names and shapes: compared by position too; a dev file only in B is a difference.
    write_shard(new / "train_1_of_2.hdf5", ids[:15], types[:15])
    write_shard(old / "train_1_of_3.hdf5", ids[:10], types[:10])
    write_shard(new / "dev_1_of_1.hdf5", *build(rows=3, seed=9))
    code, data = as_json(old, new, "--ignore", "order")
    # B now holds rows 10..14 twice (train_1_of_2 and train_2_of_3), A once, and 3 dev rows.
    assert code == 1 and data["matching"]["only_in_b"] == 5 + 3
    assert data["by_position"]["rows"] == 25 and data["by_position"]["same"] == 25
    assert "dev_1_of_1.hdf5" in data["files_only_in_b"]


def test_rows_shows_a_above_b_with_the_changed_tokens_marked(tmp_path):
    a = write_shard(tmp_path / "a.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    b = write_shard(tmp_path / "b.h5", [EXAMPLE2_IDS], [[1, 1, 0, 0, 1, 1, 3, 2, 2, 2, 2]])
    result = run(a, b, "--rows", "5", "--tokenizer", CODON_VOCAB)
    assert result.exit_code == 1
    shown = result.stdout.split("\n\n")[-1].splitlines()
    assert shown == [
        "types changed: A a.h5 row 0, B b.h5 row 0 (3 tokens)",
        "  A  [prompt] «GAA» «GGC» GCC [completion] «ATG» ATC GAC [separator] SEP"
        " [padding] PAD PAD PAD PAD",
        "  B  [completion] «GAA» «GGC» [prompt] GCC «ATG» [completion] ATC GAC [separator] SEP"
        " [padding] PAD PAD PAD PAD",
    ]
    data = json.loads(run(a, b, "--rows", "1", "--json").stdout)
    (row,) = data["shown"]
    assert row["a"] == {"file": "a.h5", "row": 0} and row["input_ids"] == EXAMPLE2_IDS


def test_rows_shows_rows_found_on_one_side_only(tmp_path):
    ids, types = build(rows=3)
    a = write_shard(tmp_path / "a.h5", ids, types)
    b = write_shard(tmp_path / "b.h5", ids[:2], types[:2])
    shown = run(a, b, "--rows", "3").stdout.split("\n\n")[-1].splitlines()
    assert shown[0] == "only in A: A a.h5 row 2"
    assert shown[1].startswith("  A  [prompt] ")
    assert len(shown) == 2


def test_learned_totals_follow_the_prompt_loss_weight(tmp_path):
    a = write_shard(tmp_path / "a.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    b = write_shard(tmp_path / "b.h5", [EXAMPLE2_IDS], [[0] * 7 + [2] * 4])
    _, data = as_json(a, b)
    # Targets are input_ids[1:]: A learns 3 completion + 1 separator, B nothing.
    assert (data["a"]["learned"], data["b"]["learned"]) == (4.0, 0.0)
    assert data["b"]["rows_without_loss"] == 1
    _, data = as_json(a, b, "--prompt-loss-weight", "0.5")
    assert (data["a"]["learned"], data["b"]["learned"]) == (5.0, 3.0)


def test_a_build_without_types_differs_from_one_with(tmp_path):
    ids, types = build(rows=4)
    a = write_shard(tmp_path / "a.h5", ids, types)
    b = write_shard(tmp_path / "b.h5", ids)
    code, data = as_json(a, b)
    assert code == 1 and data["matching"]["typed_on_one_side"] == 4
    assert data["matching"]["types_changed"] == 0 and data["type_changes"] == {}
    assert data["b"]["token_types"] is None
    assert data["differences"] == [
        "token_type_ids in one build only for 4 matched rows (without them the trainer learns"
        " every token)"
    ]
    assert "(no token_type_ids)" in run(a, b).stdout
    # Rows that also moved, between a typed and an untyped file, need no second pass.
    c = write_shard(tmp_path / "c.h5", ids[::-1])
    code, data = as_json(a, c, "--ignore", "order")
    assert code == 1 and data["matching"]["typed_on_one_side"] == 4


def test_different_row_lengths_are_named(tmp_path):
    a = write_shard(tmp_path / "a.h5", *build(rows=2, seq_len=12))
    b = write_shard(tmp_path / "b.h5", *build(rows=2, seq_len=16))
    _, data = as_json(a, b)
    assert data["differences"][0] == "seq_len 12 in A but 16 in B (no row can match)"


@pytest.mark.parametrize("in_memory", [True, False])
def test_many_blocks_match_a_brute_force_comparison(tmp_path, monkeypatch, in_memory):
    if not in_memory:
        monkeypatch.setattr(diff_module, "_IN_MEMORY_BYTES", 0)
    rng = np.random.default_rng(3)
    rows, seq_len = 20_000, 64  # more than one read step of 16,384 rows
    ids, types = build(rows, seq_len, seed=3)
    ids[::7], types[::7] = ids[0], types[0]  # copies of row 0
    types_b = types.copy()
    flip = rng.random((rows, seq_len)) < 0.001
    types_b[flip] = (types_b[flip] + 1) % 4
    keep = rng.random(rows) > 0.01
    order = rng.permutation(int(keep.sum()))
    a = write_shard(tmp_path / "a.h5", ids, types)
    b = write_shard(tmp_path / "b.h5", ids[keep][order], types_b[keep][order])
    result = diff_builds(a, b, DiffOptions(ignore=frozenset({"order"})))
    # B keeps a subset of A's rows: every B row is matched, A's dropped rows are only in A.
    assert (result.matched, result.only_in_a, result.only_in_b) == (keep.sum(), (~keep).sum(), 0)
    # Every kept row compares its types with A's copy (all copies of row 0 are typed alike).
    a_types, b_types = types[keep], types_b[keep]
    differ = a_types != b_types
    expected = np.zeros((5, 5), np.int64)
    np.add.at(expected, (a_types[differ], b_types[differ]), 1)
    assert (result.matrix == expected).all()
    assert result.types_changed_rows == int(differ.any(axis=1).sum())


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 9).flatmap(
        lambda n: st.lists(
            st.lists(st.integers(-(2**31), 2**31 - 1), min_size=n, max_size=n),
            min_size=2,
            max_size=6,
        )
    )
)
def test_row_hashes_are_equal_exactly_for_equal_rows(rows):
    block = np.array(rows, dtype=np.int32)
    hashes = hash_ids(block)
    for i in range(len(rows)):
        for j in range(len(rows)):
            assert (hashes[i] == hashes[j]) == (rows[i] == rows[j])
    # The same ids in another integer dtype hash alike.
    assert (hash_ids(block.astype(np.int64)) == hashes).all()


def test_rows_of_different_lengths_never_collide():
    assert hash_ids(np.array([[5, 0]], np.int32))[0] != hash_ids(np.array([[5]], np.int32))[0]
    types = np.array([[0, 1, 3]], np.int8)
    assert hash_types(types)[0] != 0  # 0 marks a file without types


def test_bad_invocations_are_exit_2(tmp_path):
    a = write_shard(tmp_path / "a.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    result = run(a, a, "--ignore", "order,colour")
    assert result.exit_code == 2 and result.stdout == ""
    assert "colour" in result.stderr and "order" in result.stderr
    result = run(a, tmp_path)
    assert result.exit_code == 2 and result.stdout == ""
    assert "two shards or two folders" in result.stderr
    result = run(a, tmp_path / "missing.h5")
    assert result.exit_code == 2 and "missing.h5: no such file" in result.stderr


def test_changed_tokens_are_in_reverse_video_on_a_terminal(tmp_path, monkeypatch):
    import click.testing

    monkeypatch.setattr(
        click.testing._NamedTextIOWrapper, "isatty", lambda self: True, raising=False
    )
    monkeypatch.delenv("NO_COLOR", raising=False)
    a = write_shard(tmp_path / "a.h5", [[9, 10, 2]], [[0, 1, 3]])
    b = write_shard(tmp_path / "b.h5", [[9, 10, 2]], [[0, 0, 3]])
    lines = run(a, b, "--rows", "1").stdout.splitlines()
    assert lines[-2] == "  A  \x1b[34m9\x1b[0m \x1b[32;7m10\x1b[0m \x1b[1;35m2\x1b[0m"
    assert lines[-1] == "  B  \x1b[34m9\x1b[0m \x1b[34;7m10\x1b[0m \x1b[1;35m2\x1b[0m"


def test_exit_codes_through_a_real_process(tmp_path):
    import subprocess
    import sys

    ids, types = build(rows=4)
    a = write_shard(tmp_path / "a.h5", ids, types)
    b = write_shard(tmp_path / "b.h5", ids[::-1], types[::-1])
    command = [sys.executable, "-m", "tokentype_cli", "diff", str(a), str(b), "-q"]
    assert subprocess.run(command, capture_output=True).returncode == 1
    done = subprocess.run([*command, "--ignore", "order"], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")  # -q: only the code
    done = subprocess.run([*command[:-1], "--ignore", "order"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.endswith("same: both builds teach the same thing (ignoring order)\n")


def test_rows_dropped_from_one_side_are_not_an_order_change(tmp_path):
    ids, types = build(rows=30)
    a = write_shard(tmp_path / "a.h5", ids, types)
    b = write_shard(tmp_path / "b.h5", ids[3:27], types[3:27])
    code, data = as_json(a, b)
    assert code == 1 and data["differences"] == ["6 rows only in A"]
    assert data["matching"]["same_order"] is True
    swapped = write_shard(
        tmp_path / "swapped.h5", ids[[1, 0, *range(2, 27)]], types[[1, 0, *range(2, 27)]]
    )
    _, data = as_json(a, swapped)
    assert data["matching"]["same_order"] is False
