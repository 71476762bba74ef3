"""diff as diff(1): -q prints nothing, 0 same, 1 different, 2 cannot compare; no matched row
is said plainly."""

from __future__ import annotations

from tests.helpers import invoke, write_shard


def _pair(tmp_path, second_ids):
    a = write_shard(tmp_path / "a.h5", [[5, 6, 7, 2]], [[0, 1, 1, 3]])
    b = write_shard(tmp_path / "b.h5", [second_ids], [[0, 1, 1, 3]])
    return a, b


def test_quiet_prints_nothing_and_the_exit_code_tells(tmp_path):
    a, b = _pair(tmp_path, [5, 6, 7, 2])
    same = invoke("diff", a, b, "-q")
    assert (same.exit_code, same.stdout, same.stderr) == (0, "", "")
    c = write_shard(tmp_path / "c.h5", [[5, 6, 7, 2]], [[0, 0, 1, 3]])
    differ = invoke("diff", a, c, "--quiet", "--json")
    assert (differ.exit_code, differ.stdout, differ.stderr) == (1, "", "")


def test_cannot_compare_is_exit_2(tmp_path):
    a, _ = _pair(tmp_path, [5, 6, 7, 2])
    result = invoke("diff", a, tmp_path / "missing.h5", "-q")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Error: ") and "missing.h5" in result.stderr
    bogus = tmp_path / "notes.h5"
    bogus.write_text("not hdf5\n")
    assert invoke("diff", a, bogus).exit_code == 2


def test_no_matched_row_is_not_called_the_same(tmp_path):
    a, b = _pair(tmp_path, [8, 9, 10, 2])
    result = invoke("diff", a, b)
    assert result.exit_code == 1
    assert "0 matched" in result.stdout
    assert "types: not compared, as no row matched" in result.stdout
    assert "the same in every matched row" not in result.stdout
