"""The report's labels: bar labels that fit or are left to the hover, split-table bars with
their shares as text, rows per file on a labelled zero-based axis."""

from __future__ import annotations

import re

from tests.helpers import invoke, write_shard
from tokentype_cli.inspect.html import bars, stacked_bar


def test_a_bar_labels_only_parts_its_label_fits():
    bar = str(stacked_bar([("t0", "prompt", 0.5), ("t1", "completion", 0.02)], "x"))
    assert "<text" not in bar  # SVG text would stretch with the bar
    assert re.search(r'<span class="on w\d+"[^>]*>prompt 50.0%</span>', bar)
    assert ">completion 2.0%</span>" not in bar
    assert "<title>completion 2.00%</title>" in bar  # on hover instead


def test_a_labels_width_step_hides_it_on_a_narrow_bar():
    wide = str(stacked_bar([("t0", "prompt", 0.12), ("t2", "padding", 0.88)], "x"))
    step = int(re.search(r'class="on w(\d+)"[^>]*>prompt', wide).group(1))
    assert step > 300  # 12% of a narrow bar cannot hold "prompt 12.0%"


def test_split_table_bars_have_no_labels_and_list_the_shares():
    mini = str(stacked_bar([("t0", "prompt", 0.67), ("t1", "completion", 0.33)], "x", mini=True))
    assert 'class="on' not in mini and "<text" not in mini
    assert '<div class="shares">prompt 67% · completion 33%</div>' in mini


def test_rows_per_file_are_labelled_and_start_at_zero():
    chart = str(bars([("train_1_of_2.hdf5", 3), ("train_2_of_2.hdf5", 3)], "rows per file", "rows"))
    assert ">train 1</text>" in chart and ">train 2</text>" in chart
    assert 'class="tick">0</text>' in chart
    assert "every file holds 3 rows" in chart
    many = str(bars([(f"train_{k}_of_60.hdf5", k) for k in range(1, 61)], "rows per file", "rows"))
    assert ">train 1</text>" in many and ">train 60</text>" in many
    assert "1–60 rows per file" in many


def test_the_report_uses_them(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    for k in (1, 2):
        write_shard(root / f"train_{k}_of_2.hdf5", [[9, 10, 2, 69]] * 3, [[0, 1, 3, 2]] * 3)
    (root / "metadata.yaml").write_text("max_seq_length: 4\n")
    out = tmp_path / "r.html"
    assert invoke("inspect", root, "--html", out).exit_code == 0
    text = out.read_text()
    assert '<div class="shares">' in text and "every file holds 3 rows" in text
    assert "@container" in text
