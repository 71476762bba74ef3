"""`inspect --html`: the page's numbers agree with `inspect --json`, it is self-contained and small,
datasets show splits, metadata and the ledger, and it renders in headless Chromium when present."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (
    CODON_VOCAB,
    EXAMPLE2_IDS,
    EXAMPLE2_TYPES,
    build,
    invoke,
    write_pairs,
    write_shard,
)
from tokentype_cli.inspect.html import SAMPLE_TOKENS, default_sample_size, split_of
from tokentype_cli.report.ledger import read_ledger
from tokentype_cli.report.rows import PALETTE

# The names Chromium and its headless builds go by on PATH (Debian, Ubuntu's snap, Google's).
BROWSERS = (
    "chromium",
    "chromium-browser",
    "chromium-headless-shell",
    "chrome-headless-shell",
    "google-chrome",
    "google-chrome-stable",
)
CHROMIUM = next((found for name in BROWSERS if (found := shutil.which(name))), None)


def synthetic(rows: int, seq_len: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of prompt, completion, one separator (EOS 2) and padding (69), as tokenize packs."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 60, (rows, seq_len)).astype(np.int32)
    columns = np.arange(seq_len)
    prompt = rng.integers(1, max(2, seq_len // 3), rows)[:, None]
    end = rng.integers(seq_len // 2, seq_len - 1, rows)[:, None]
    types = np.where(columns < prompt, 0, 1).astype(np.int32)
    types[columns == end] = 3
    types[columns > end] = 2
    ids[types == 3], ids[types == 2] = 2, 69
    return ids, types


class Page(HTMLParser):
    """The parts of the page the tests look at: ids, data attributes, samples, tags used."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.stats: dict[str, str] = {}
        self.shares: dict[str, dict] = {}
        self.samples: list[tuple[str, str]] = []
        self.tags: set[str] = set()
        self.titles: list[str] = []
        self.checks: list[str] = []
        self.splits: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if "data-key" in attrs:
            self.stats[attrs["data-key"]] = attrs["data-value"]
        if "data-shares" in attrs:
            self.shares[attrs["id"]] = json.loads(attrs["data-shares"])
        if "data-row" in attrs:
            self.samples.append((attrs["data-file"], attrs["data-row"]))
        if tag == "span" and "title" in attrs:
            self.titles.append(attrs["title"])
        if "data-check" in attrs:
            self.checks.append(attrs["data-check"])
        if "data-split" in attrs:
            self.splits.append(attrs["data-split"])


def report(path, *args) -> tuple[str, Page]:
    out = Path(path).with_suffix(".report.html") if Path(path).is_file() else path / "r.html"
    result = invoke("inspect", path, "--html", out, *args)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"wrote {out} (")
    text = out.read_text(encoding="utf-8")
    return text, Page(text)


@pytest.fixture
def shard(tmp_path):
    ids, types = synthetic(40, 24)
    ids[5], types[5] = 69, 2  # a padding-only row: a warning, and no loss
    return write_shard(tmp_path / "s.h5", ids, types)


def test_the_numbers_agree_with_inspect_json(shard):
    _, page = report(shard, "--prompt-loss-weight", "0")
    data = json.loads(invoke("inspect", shard, "--json", "--prompt-loss-weight", "0").stdout)
    assert int(page.stats["rows"]) == data["rows"]
    assert int(page.stats["tokens"]) == data["tokens"]
    assert int(page.stats["articles"]) == data["articles"]
    assert float(page.stats["padding_share"]) == pytest.approx(data["padding_share"])
    assert int(page.stats["rows_without_loss"]) == data["loss"]["rows_without_loss"] == 1
    assert page.shares["type-shares"] == data["token_types"]
    assert page.shares["loss-shares"] == pytest.approx(data["loss"]["share"])


def test_findings_from_validate_come_first(shard):
    text, page = report(shard)
    assert page.checks == ["padding-only-row", "no-learned-token-row"]
    assert text.index('id="findings"') < text.index('id="learned"')
    assert "fix: drop rows holding only padding" in text


def test_the_page_is_self_contained_and_deterministic(shard):
    text, page = report(shard, "--tokenizer", CODON_VOCAB)
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert not page.tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert not re.search(r"(src|href)=|https?://|url\((?!#)", text)
    again, _ = report(shard, "--tokenizer", CODON_VOCAB)
    assert again == text


def test_default_sample_is_the_first_rows_and_seeded_random_ones(shard):
    _, page = report(shard)
    rows = [int(row) for _, row in page.samples]
    assert rows[:3] == [0, 1, 2] and len(rows) == 6 and len(set(rows)) == 6
    _, page = report(shard, "--rows", "7,9")
    assert [int(row) for _, row in page.samples] == [7, 9]


def test_tokens_show_id_and_type_on_hover_and_whitespace_visibly(tmp_path):
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"a": 0, " ": 1, "\n": 2, "<script>": 3, "SEP": 4, "PAD": 5}))
    path = write_shard(tmp_path / "w.h5", [[0, 1, 3, 2, 0, 4, 5]], [[0, 0, 1, 1, 1, 3, 2]])
    text, page = report(path, "--tokenizer", vocab)
    assert page.titles[:3] == [
        "id 0 · prompt · column 0",
        "id 1 · prompt · column 1",
        "id 3 · completion · column 2",
    ]
    assert '<span class="t0 ws" title="id 1 · prompt · column 1">␣</span>' in text
    assert "↵\n</span>" in text
    assert "&lt;script&gt;" in text and "<script>" not in text


def test_every_type_differs_by_more_than_colour_in_the_page(shard):
    text, _ = report(shard)
    for token_type, style in PALETTE.items():
        if style.underline:
            assert (
                f".t{int(token_type)}{{background:{style.tint};text-decoration:underline {style.underline}"
                in text
            )
        assert f'id="p-t{int(token_type)}"' in text
    # Padding has no underline; it is hatched instead.
    assert ".tokens .t2{color:#6b6b6b;background:repeating-linear-gradient" in text


def write_dataset(root: Path, files: int, rows: int, seq_len: int) -> Path:
    """A folder as `tokenize --dataset` lays it out: train_/dev_ shards, metadata, a ledger."""
    root.mkdir()
    dev = max(1, files // 10)
    names = [f"train_{k}_of_{files - dev}.hdf5" for k in range(1, files - dev + 1)]
    names += [f"dev_{k}_of_{dev}.hdf5" for k in range(1, dev + 1)]
    for number, name in enumerate(names):
        write_shard(root / name, *synthetic(rows, seq_len, seed=number))
    (root / "metadata.yaml").write_text(
        f"max_seq_length: {seq_len}\nnumber_of_training_files: {files - dev}\n"
        "tokenizer_model_type: gpt2\nsplits: {train: 0.9, dev: 0.1}\n"
    )
    (root / "tokenizer").mkdir()
    (root / "sha256").mkdir()
    (root / "sha256" / "files_metadata.json").write_text("{}")
    records = [("packed", None)] * 6 + [("truncated", None)] * 3 + [("dropped", "too_long")]
    (root / f"{names[0].removesuffix('.hdf5')}.ledger.jsonl").write_text(
        "".join(
            json.dumps({"line": i, "status": s, "reason": r, "rows": [[0, 0, 3]], "cut_right": 2})
            + "\n"
            for i, (s, r) in enumerate(records, start=1)
        )
    )
    return root


def test_a_built_datasets_ledger_with_test_splits_is_charted(tmp_path):
    # A build's ledger gives its test splits' lines status "test" (kept as text): the page, and
    # the share of lines cut, must take them, not refuse the ledger.
    source = write_pairs(tmp_path / "in.jsonl", 200)
    folder = tmp_path / "ds"
    ledger = tmp_path / "ds.ledger.jsonl"
    built = build([source], folder, "--train-files", 2, "--test-files", 1, "--ledger", ledger)
    assert built.exit_code == 0, built.output
    tally = read_ledger(ledger)
    tested = tally.by_status["test"]
    assert tested and tally.lines == 200 and tally.tokenized == 200 - tested
    page = tmp_path / "ds.html"
    result = invoke("inspect", folder, "--html", page)
    assert result.exit_code == 0, result.output
    text = re.sub(r"\s+", " ", page.read_text())
    assert f"{tested:,} kept as text in test splits" in text


def test_a_dataset_shows_splits_metadata_ledger_and_files(tmp_path):
    root = write_dataset(tmp_path / "ds", files=12, rows=5, seq_len=16)
    text, page = report(root)
    assert page.splits == ["train", "dev"]
    assert {"splits", "metadata", "ledger", "files", "histograms", "rows"} <= page.ids
    assert "<th>tokenizer_model_type</th><td>gpt2</td>" in text
    assert "10 lines in train_1_of_11.ledger.jsonl" in text
    assert "4 cut or dropped for length (40.00%)" in text
    assert "dropped: too_long" in text
    # Files in the order people count them, train before dev.
    assert page.samples[0] == ("train_1_of_11.hdf5", "0")
    assert text.index("train_2_of_11.hdf5") < text.index("train_10_of_11.hdf5")
    assert text.count('aria-label="rows per file"') == 1


def test_a_dataset_of_100_files_stays_under_2_mb(tmp_path):
    root = write_dataset(tmp_path / "ds", files=100, rows=4, seq_len=2048)
    text, page = report(root)
    size = len(text.encode("utf-8"))
    assert size <= 2 * 1024 * 1024, size
    assert len(page.samples) == 6


def test_long_rows_mean_fewer_sample_rows():
    assert default_sample_size(2048) == (3, 3)
    assert default_sample_size(SAMPLE_TOKENS // 2) == (1, 1)
    assert default_sample_size(1 << 20) == (1, 1)


def test_split_of_names():
    assert [
        split_of(n) for n in ("train_1_of_2.hdf5", "dev_3_of_3.h5", "x.h5", "a/train_1.h5")
    ] == [
        "train",
        "dev",
        "other",
        "train",
    ]


def test_html_to_stdout(shard):
    result = invoke("inspect", shard, "--html", "-")
    assert result.exit_code == 0
    assert result.stdout.startswith("<!doctype html>") and result.stderr == ""


def test_a_broken_file_in_a_folder_is_a_finding_not_a_failure(tmp_path):
    write_shard(tmp_path / "a.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    (tmp_path / "b.h5").write_text("not hdf5")
    _, page = report(tmp_path)
    assert "cannot-open" in page.checks


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--html", "r.html", "--json"], "leave out --json"),
        (["--ledger", "x.jsonl"], "--ledger goes with --html"),
    ],
)
def test_bad_combinations_are_exit_2(shard, args, needle):
    result = invoke("inspect", shard, *args)
    assert result.exit_code == 2 and result.stdout == ""
    assert needle in result.stderr


def test_a_missing_shard_is_exit_1(tmp_path):
    result = invoke("inspect", tmp_path / "none.h5", "--html", tmp_path / "r.html")
    assert result.exit_code == 1 and "none.h5: no such file" in result.stderr
    assert not (tmp_path / "r.html").exists()


WRAPPER = """<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="page" src="REPORT" style="width:1200px;height:900px"></iframe>
<script>
document.getElementById("page").addEventListener("load", function () {
  var out = {visible: {}, decorations: {}};
  try {
    var d = this.contentDocument, view = d.defaultView;
    IDS.forEach(function (id) {
      var e = d.getElementById(id);
      if (!e) { out.visible[id] = "missing"; return; }
      var box = e.getBoundingClientRect(), style = view.getComputedStyle(e);
      out.visible[id] = box.width > 0 && box.height > 0 && style.visibility !== "hidden"
        && style.display !== "none";
    });
    out.samples = d.querySelectorAll(".sample").length;
    out.tokens = d.querySelectorAll(".tokens span[title]").length;
    out.charts = d.querySelectorAll("svg[role=img]").length;
    ["t0", "t1", "t2", "t3"].forEach(function (c) {
      var e = d.querySelector(".sample ." + c);
      if (e) out.decorations[c] = view.getComputedStyle(e).textDecorationStyle
        + " " + view.getComputedStyle(e).textDecorationLine;
    });
  } catch (error) { out.error = String(error); }
  document.getElementById("result").textContent = JSON.stringify(out);
});
</script></body></html>
"""


@pytest.mark.skipif(
    CHROMIUM is None,
    reason=f"no headless Chromium on PATH (looked for {', '.join(BROWSERS)}); install one,"
    " e.g. `apt-get install chromium` on Debian or Ubuntu",
)
def test_the_page_renders_in_headless_chromium(tmp_path):
    root = write_dataset(tmp_path / "ds", files=12, rows=8, seq_len=64)
    report(root, "--tokenizer", CODON_VOCAB)
    ids = ["findings", "learned", "legend", "type-shares", "loss-shares", "splits"]
    ids += ["histograms", "ledger", "rows", "token-legend", "metadata", "files"]
    wrapper = tmp_path / "wrapper.html"
    wrapper.write_text(
        WRAPPER.replace("REPORT", (root / "r.html").as_uri()).replace("IDS", json.dumps(ids))
    )
    profile = tmp_path / "chromium-profile"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        # The test page reads the report's DOM from its iframe; both are file:// URLs.
        "--allow-file-access-from-files",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        wrapper.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    found = re.search(r'<pre id="result">([^<]*)</pre>', done.stdout)
    assert found, done.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert "error" not in result, result
    # Console messages (errors, CSP violations such as a blocked network load) are logged.
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    assert result["visible"] == {id: True for id in ids}
    assert result["samples"] == 6 and result["tokens"] > 100
    assert result["charts"] >= 7
    assert result["decorations"] == {
        "t0": "dotted underline",
        "t1": "solid underline",
        "t2": "solid none",
        "t3": "double underline",
    }


def padding_only(path: Path) -> None:
    """A shard whose first row is all padding, for a finding in the findings table."""
    ids, types = synthetic(8, 64)
    ids[0], types[0] = 69, 2
    write_shard(path, ids, types)


# The report in frames as wide as a laptop, a half-screen window and a phone; for each, how wide
# its page is against the frame's width less the scrollbar.
NARROW = """<!doctype html><html><body><pre id="result">pending</pre>FRAMES
<script>
var out = {}, left = WIDTHS.length;
WIDTHS.forEach(function (width) {
  document.getElementById("w" + width).addEventListener("load", function () {
    var page = this.contentDocument.documentElement;
    out[width] = [page.scrollWidth, page.clientWidth];
    if (--left === 0) document.getElementById("result").textContent = JSON.stringify(out);
  });
});
</script></body></html>
"""


def chromium_dom(page: Path, profile: Path) -> str:
    """What headless Chromium's DOM is once `page` (a file reading file:// frames) has run."""
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={profile}", "--allow-file-access-from-files",
        "--virtual-time-budget=5000", "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    found = re.search(r'<pre id="result">([^<]*)</pre>', done.stdout)
    assert found and found.group(1) != "pending", done.stderr[-2000:]
    return found.group(1).replace("&quot;", '"')


@pytest.mark.skipif(
    CHROMIUM is None,
    reason=f"no headless Chromium on PATH (looked for {', '.join(BROWSERS)}); install one,"
    " e.g. `apt-get install chromium` on Debian or Ubuntu",
)
def test_the_page_fits_narrow_windows_without_scrolling_sideways(tmp_path):
    # What made pages wider than the window: a long path in a sentence (the ledger's, beside the
    # folder), the findings table's six columns, long metadata keys and values.
    deep = tmp_path / ("a_rather_long_folder_name_for_training_data_" * 3) / "and_one_more_level"
    deep.mkdir(parents=True)
    root = write_dataset(deep / "ds", files=4, rows=8, seq_len=64)
    next(root.glob("*.ledger.jsonl")).rename(deep / "ds.ledger.jsonl")
    with open(root / "metadata.yaml", "a") as handle:
        handle.write(f"a_long_key_of_the_kind_gdp_writes_dev_tokens_dropped: {'x' * 120}\n")
    padding_only(root / "train_1_of_3.hdf5")
    text, page = report(root, "--tokenizer", CODON_VOCAB)
    assert page.checks and "ds.ledger.jsonl" in text  # a findings table and the ledger's path
    widths = [1280, 700, 375]
    frames = "".join(
        f'<iframe id="w{w}" src="{(root / "r.html").as_uri()}" style="width:{w}px;height:900px">'
        "</iframe>"
        for w in widths
    )
    wrapper = tmp_path / "narrow.html"
    wrapper.write_text(NARROW.replace("FRAMES", frames).replace("WIDTHS", json.dumps(widths)))
    measured = json.loads(chromium_dom(wrapper, tmp_path / "chromium-profile"))
    assert {w: scroll <= client for w, (scroll, client) in measured.items()} == {
        str(w): True for w in widths
    }, measured


def test_every_table_scrolls_in_a_box_of_its_own(tmp_path):
    """Where no browser runs: a table wider than a phone scrolls inside its box, not the page."""
    root = write_dataset(tmp_path / "ds", files=4, rows=8, seq_len=64)
    padding_only(root / "train_1_of_3.hdf5")
    text, page = report(root)
    assert page.checks  # the findings table is there too
    assert text.count("<table") == text.count('<div class="scroll"><table') == 4
    assert ".scroll{overflow-x:auto}" in text
    assert "overflow-wrap:anywhere" in text.split("body{")[1].split("}")[0]


def test_collapsed_padding_and_a_shard_without_types(tmp_path):
    path = write_shard(tmp_path / "p.h5", [[9, 10, 2] + [69] * 12], [[0, 1, 3] + [2] * 12])
    text, _ = report(path, "--tokenizer", CODON_VOCAB)
    assert '<span class="t2" title="id 69 · padding · columns 3–14">… 12 × PAD</span>' in text
    untyped = write_shard(tmp_path / "u.h5", np.arange(40).reshape(4, 10))
    text, page = report(untyped)
    assert "missing-types" in page.checks
    assert "No token_type_ids" in text
    assert "4 rows · mean 9.0 · median 9 · max 9" in text  # every row learns its 9 targets


def test_a_broken_ledger_beside_a_shard_is_noted_and_a_named_one_fails(shard, tmp_path):
    broken = shard.with_name("s.ledger.jsonl")
    broken.write_text("{not json\n")
    text, page = report(shard)
    assert "ledger" in page.ids and "skipped: " in text and "s.ledger.jsonl:1" in text
    result = invoke("inspect", shard, "--html", tmp_path / "r.html", "--ledger", broken)
    assert result.exit_code == 1 and "not a tokenize ledger line" in result.stderr


def test_a_folder_without_splits_still_charts_rows_per_file(tmp_path):
    write_shard(tmp_path / "a.h5", *synthetic(3, 16))
    write_shard(tmp_path / "b.h5", *synthetic(5, 16, seed=1))
    text, page = report(tmp_path)
    assert page.splits == [] and "splits" in page.ids
    assert 'aria-label="rows per file"' in text and "<title>b.h5: 5 rows</title>" in text
