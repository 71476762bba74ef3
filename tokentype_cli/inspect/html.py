"""`inspect --html`: one self-contained HTML page showing what a shard or a dataset teaches.

Everything is gathered in the single streamed pass `validate` makes (its findings head the page);
charts are inline SVG, styles inline CSS, and a Content-Security-Policy forbids any network load,
so the file opens the same from disk, a CI artifact or a mail attachment. Tokens use the palette
and row segmentation of the terminal view (`report.rows`); every type also has its own underline
and chart pattern, so the page reads without colour.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from jinja2 import Environment
from markupsafe import Markup, escape

from tokentype_cli import __version__
from tokentype_cli.dataset.read import METADATA_LIMIT, load_metadata_text, read_bounded
from tokentype_cli.errors import InputError, ShardError
from tokentype_cli.inspect.profile import HISTOGRAMS, Profile, empty_like
from tokentype_cli.inspect.shard import format_row_header, parse_rows, read_rows, shard_files
from tokentype_cli.report.ledger import LedgerTally, ledger_beside, read_ledger
from tokentype_cli.report.rows import (
    COLLAPSE_PADDING,
    PALETTE,
    UNKNOWN_STYLE,
    Segment,
    TypeStyle,
    row_segments,
    type_label,
)
from tokentype_cli.schema.names import TOKEN_TYPE_NAMES, TokenType
from tokentype_cli.schema.read import open_shard
from tokentype_cli.schema.write import atomic_path, refuse_output_onto_inputs
from tokentype_cli.tokenizer_loader import LoadedTokenizer
from tokentype_cli.validate.findings import FileReport, Finding, ValidateOptions
from tokentype_cli.validate.paths import validate_paths

# The default sample: the first rows of the first file, and random rows (fixed seed) of all.
FIRST_ROWS = 3
RANDOM_ROWS = 3
# Tokens the default sample may show (a token costs about 70 bytes of HTML): long rows mean fewer
# rows, and at least one of each kind, so the page stays near a megabyte at any row length.
SAMPLE_TOKENS = 16_384
SEED = 0
# --rows on a folder applies to every file; more rows than this would make the page unwieldy.
MAX_SAMPLE_ROWS = 100
SPLITS = (("train", "train_"), ("dev", "dev_"))
METADATA = "metadata.yaml"
_METADATA_CHARACTERS = 20_000
HISTOGRAM_BINS = 40
# Whitespace-only tokens are drawn with these marks so they can be seen (and counted).
_VISIBLE = str.maketrans({" ": "␣", "\n": "↵\n", "\t": "⇥", "\r": "␍"})
_CONTROL = {i: f"\\x{i:02x}" for i in range(32) if i not in (9, 10, 13)} | {127: "\\x7f"}


@dataclass(frozen=True)
class ReportOptions:
    """What the page shows: loss at a weight, decoded tokens, which rows, which ledger."""

    prompt_loss_weight: float | None = None  # None: shown at 0, and validate judges no weight
    tokenizer: LoadedTokenizer | None = None
    rows_spec: str | None = None
    ledger: Path | None = None
    collapse_padding: int = COLLAPSE_PADDING

    @property
    def weight(self) -> float:
        return 0.0 if self.prompt_loss_weight is None else self.prompt_loss_weight


@dataclass
class FileEntry:
    name: str
    path: Path
    split: str
    profile: Profile
    report: FileReport | None = None


@dataclass
class SampleRow:
    file: str
    row: int
    header: str
    segments: list[Segment]
    spaced: bool


@dataclass
class Report:
    path: Path
    options: ReportOptions
    folder: bool
    files: list[FileEntry]
    total: Profile
    splits: dict[str, Profile] = field(default_factory=dict)
    ledger: LedgerTally | None = None
    ledger_files: list[Path] = field(default_factory=list)
    ledger_errors: list[str] = field(default_factory=list)
    metadata: dict | None = None
    metadata_text: str | None = None
    metadata_error: str | None = None
    samples: list[SampleRow] = field(default_factory=list)
    sample_note: str = ""

    @property
    def findings(self) -> list[tuple[FileEntry, Finding]]:
        found: list[tuple[FileEntry, Finding]] = []
        for entry in self.files:
            if entry.report is not None:
                found.extend((entry, finding) for finding in entry.report.findings)
        return found


_SPLIT_ORDER = {"train": 0, "dev": 1, "other": 2}


def _natural(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def split_of(name: str) -> str:
    """`train` or `dev` by the file name's prefix (as `tokenize --dataset` names them), else other."""
    base = Path(name).name
    for split, prefix in SPLITS:
        if base.startswith(prefix):
            return split
    return "other"


def build_report(
    path: str | os.PathLike,
    options: ReportOptions = ReportOptions(),
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Gather everything the page shows, reading each shard once (plus the sampled rows)."""
    path = Path(path)
    paths = shard_files(path)
    folder = path.is_dir()
    if not folder:
        open_shard(path).close()  # a missing or non-HDF5 file is an error, not a report of one
    entries: dict[Path, FileEntry] = {}
    for file in paths:
        name = file.relative_to(path).as_posix() if folder else file.name
        entries[file] = FileEntry(name, file, split_of(name), Profile(file, options.weight))

    def observe(file: Path, first_row: int, ids: np.ndarray, types: np.ndarray | None) -> None:
        entries[file].profile.add(first_row, ids, types)

    validate_options = ValidateOptions(
        tokenizer=options.tokenizer, prompt_loss_weight=options.prompt_loss_weight
    )
    for report in validate_paths(paths, validate_options, progress, on_block=observe):
        if report.path in entries:
            entries[report.path].report = report
    # train before dev before other, and train_2 before train_10: the order people count in.
    files = sorted(entries.values(), key=lambda e: (_SPLIT_ORDER[e.split], _natural(e.name)))
    total = Profile(path, options.weight, files=0)
    splits: dict[str, Profile] = {}
    for entry in files:
        total.merge(entry.profile)
        split = splits.setdefault(entry.split, empty_like(entry.profile, path))
        split.merge(entry.profile)
    result = Report(path, options, folder, files, total)
    if folder and set(splits) != {"other"}:
        result.splits = {name: splits[name] for name in ("train", "dev", "other") if name in splits}
    _add_ledgers(result)
    if folder:
        _add_metadata(result)
    _add_samples(result)
    return result


def _add_ledgers(report: Report) -> None:
    # A dataset build's ledger sits beside its folder (DIR.ledger.jsonl), a shard's beside it.
    beside = [e.path for e in report.files] + ([report.path] if report.folder else [])
    ledgers = (
        [report.options.ledger]
        if report.options.ledger is not None
        else [found for path in beside if (found := ledger_beside(path)) is not None]
    )
    for ledger in ledgers:
        try:
            tally = read_ledger(ledger)
        except InputError as exc:
            if report.options.ledger is not None:
                raise  # the one the user named
            # One found beside a shard that is not a ledger should not cost the whole page.
            report.ledger_errors.append(str(exc))
            continue
        if report.ledger is None:
            report.ledger = tally
        else:
            report.ledger.lines += tally.lines
            report.ledger.by_status += tally.by_status
            report.ledger.by_reason += tally.by_reason
            report.ledger.tokens_cut += tally.tokens_cut
            report.ledger.first_cut_where = report.ledger.first_cut_where or tally.first_cut_where
        report.ledger_files.append(ledger)


def _add_metadata(report: Report) -> None:
    file = report.path / METADATA
    if not os.path.lexists(file):
        return
    try:
        text = read_bounded(file, METADATA_LIMIT, METADATA).decode("utf-8")
    except (InputError, UnicodeDecodeError) as exc:
        report.metadata_error = f"{file}: cannot be read ({exc})"
        return
    report.metadata_text = text[:_METADATA_CHARACTERS]
    try:
        data = load_metadata_text(text)
    except yaml.YAMLError as exc:
        report.metadata_error = f"{file}: not valid YAML ({str(exc).splitlines()[0]})"
        return
    if isinstance(data, dict):
        report.metadata = data


def default_sample_size(seq_len: int | None) -> tuple[int, int]:
    """(first rows, random rows) the default sample shows for rows of this length."""
    rows = max(2, min(FIRST_ROWS + RANDOM_ROWS, SAMPLE_TOKENS // max(1, seq_len or 1)))
    return rows - rows // 2, rows // 2


def _add_samples(report: Report) -> None:
    options = report.options
    readable = [e for e in report.files if e.profile.rows]
    picks: list[tuple[FileEntry, list[int]]] = []
    if options.rows_spec is not None:
        for entry in readable:
            # parse_rows gives ranges clipped to the file; a page shows at most MAX_SAMPLE_ROWS.
            ranges = parse_rows(options.rows_spec, entry.profile.rows)
            rows = list(itertools.islice(itertools.chain.from_iterable(ranges), MAX_SAMPLE_ROWS))
            picks.append((entry, rows))
    elif readable:
        first = readable[0]
        first_rows, random_rows = default_sample_size(report.total.seq_len or first.profile.seq_len)
        head = list(range(min(first_rows, first.profile.rows)))
        offsets = np.cumsum([0] + [e.profile.rows for e in readable])
        rest = int(offsets[-1]) - len(head)
        chosen = np.random.default_rng(SEED).choice(rest, min(random_rows, rest), replace=False)
        chosen = np.sort(chosen + len(head))  # skip the head rows, which sit first in order
        by_file: dict[int, list[int]] = {}
        for row in chosen.tolist():
            number = int(np.searchsorted(offsets, row, side="right") - 1)
            by_file.setdefault(number, []).append(row - int(offsets[number]))
        picks.append((first, head + by_file.pop(0, [])))
        picks.extend((readable[n], rows) for n, rows in sorted(by_file.items()))
    shown = 0
    wanted = sum(len(rows) for _, rows in picks)
    tokenizer = options.tokenizer
    spaced = tokenizer is None or tokenizer.word_level
    for entry, rows in picks:
        rows = rows[: MAX_SAMPLE_ROWS - shown]
        if not rows:
            break
        spec = ",".join(map(str, rows))
        for row, ids, types in read_rows(entry.path, spec):
            report.samples.append(
                SampleRow(
                    entry.name,
                    row,
                    format_row_header(row, entry.profile.rows, types, options.weight),
                    row_segments(
                        ids,
                        types,
                        tokenizer=tokenizer,
                        collapse_padding=options.collapse_padding,
                        escape=False,
                    ),
                    spaced,
                )
            )
            shown += 1
    if wanted > shown:
        report.sample_note = f"showing the first {shown} of the {wanted:,} rows --rows selects"


# --- drawing -------------------------------------------------------------------------------------


def _styles() -> list[tuple[str, str, TypeStyle]]:
    """(css class, name, TypeStyle) of each type, then of values outside 0..3."""
    styles = [(f"t{int(t)}", TOKEN_TYPE_NAMES[t], PALETTE[t]) for t in TokenType]
    return [*styles, ("tx", "invalid", UNKNOWN_STYLE)]


def _css() -> str:
    rules = []
    for css_class, _, style in _styles():
        line = (
            f"text-decoration:underline {style.underline} {style.color};"
            "text-decoration-thickness:2px;text-underline-offset:3px;"
            if style.underline
            else ""
        )
        rules.append(f".{css_class}{{background:{style.tint};{line}}}")
    return "\n".join(rules)


def _patterns() -> Markup:
    """SVG fill patterns, one per type: colour plus a texture (dots, hatch, cross)."""
    parts = []
    for css_class, _, style in _styles():
        texture = {
            "dots": '<circle cx="3" cy="3" r="1.3" fill="#fff"/>',
            "hatch": '<path d="M-1 1l2-2M0 6l6-6M5 7l2-2" stroke="#fff" stroke-width="1.4"/>',
            "cross": '<path d="M0 0l6 6M6 0l-6 6" stroke="#fff" stroke-width="1.2"/>',
        }.get(style.pattern, "")
        parts.append(
            f'<pattern id="p-{css_class}" width="6" height="6" patternUnits="userSpaceOnUse">'
            f'<rect width="6" height="6" fill="{style.color}"/>{texture}</pattern>'
        )
    return Markup(
        '<svg class="defs" width="0" height="0" aria-hidden="true" focusable="false"><defs>'
        + "".join(parts)
        + "</defs></svg>"
    )


def _swatch(css_class: str) -> Markup:
    return Markup(
        f'<svg class="swatch" width="18" height="12" aria-hidden="true">'
        f'<rect width="18" height="12" fill="url(#p-{css_class})"/></svg>'
    )


# Labels are HTML over the bar, never SVG text: the bar's SVG stretches to its box, which would
# squash text. A part's label shows only while the bar is wide enough for it (a container query
# per width step, ~7 px per glyph at 11 px); the others have theirs on hover and in the legend.
_BAR_WIDTHS = (300, 450, 600, 800, 1050)
_GLYPH_PIXELS = 7.0


def stacked_bar(shares: list[tuple[str, str, float]], label: str, mini: bool = False) -> Markup:
    """A 100% bar of (css class, name, share) parts, each with its share on hover. A full bar
    labels the parts wide enough for their label; a mini bar (a table cell) labels none and
    lists the shares as text beneath."""
    x = 0.0
    parts, labels, listed = [], [], []
    for css_class, name, share in shares:
        if share <= 0:
            continue
        width = share * 1000
        parts.append(
            f'<rect x="{x:.2f}" y="0" width="{width:.2f}" height="24" fill="url(#p-{css_class})">'
            f"<title>{escape(name)} {share:.2%}</title></rect>"
        )
        text = f"{name} {share:.1%}"
        needed = (len(text) * _GLYPH_PIXELS + 12) / share
        fits = next((w for w in _BAR_WIDTHS if w >= needed), None)
        if not mini and fits is not None:
            labels.append(
                f'<span class="on w{fits}" style="left:{x / 10:.2f}%;width:{width / 10:.2f}%">'
                f"{escape(text)}</span>"
            )
        if share >= 0.005:
            listed.append(f"{escape(name)} {share:.0%}")
        x += width
    if not parts:
        parts.append('<rect width="1000" height="24" fill="#f3f3f3"/>')
    svg = (
        f'<svg class="bar" viewBox="0 0 1000 24" preserveAspectRatio="none" role="img"'
        f' aria-label="{escape(label)}">{"".join(parts)}</svg>'
    )
    if mini:
        return Markup(f'{svg}<div class="shares">{" · ".join(listed)}</div>')
    return Markup(f'<div class="barbox">{svg}{"".join(labels)}</div>')


def mini_bar(shares: list[tuple[str, str, float]], label: str) -> Markup:
    return stacked_bar(shares, label, mini=True)


def _type_shares(profile: Profile) -> list[tuple[str, str, float]]:
    shares = [(f"t{int(t)}", TOKEN_TYPE_NAMES[t], profile.share(t)) for t in TokenType]
    return [*shares, ("tx", "invalid", profile.share(len(TokenType)))]


def _loss_shares(profile: Profile) -> list[tuple[str, str, float]]:
    share = profile.loss.share()
    return [(f"t{int(t)}", TOKEN_TYPE_NAMES[t], share[TOKEN_TYPE_NAMES[t]]) for t in TokenType]


def _histogram(counts: np.ndarray | None, title: str, unit: str = "rows") -> Markup:
    """Bars of an exact per-value count, binned to at most HISTOGRAM_BINS bars."""
    if counts is None or not counts.any():
        return Markup(
            f'<figure class="hist"><figcaption>{escape(title)}</figcaption>'
            '<p class="none">no data</p></figure>'
        )
    top = int(np.flatnonzero(counts)[-1])
    width = math.ceil((top + 1) / HISTOGRAM_BINS)
    bins = math.ceil((top + 1) / width)
    padded = np.zeros(bins * width, np.int64)
    padded[: top + 1] = counts[: top + 1]
    binned = padded.reshape(bins, width).sum(axis=1)
    values = np.arange(len(counts))
    total = int(counts.sum())
    mean = float(values @ counts) / total
    median = int(np.searchsorted(np.cumsum(counts), (total + 1) / 2))
    peak = int(binned.max())
    left, right, top_y, bottom = 36, 314, 8, 108
    bar = (right - left) / bins
    parts = []
    for number, count in enumerate(binned.tolist()):
        if not count:
            continue
        height = (bottom - top_y) * count / peak
        low = number * width
        span = f"{low}" if width == 1 else f"{low}–{low + width - 1}"
        parts.append(
            f'<rect x="{left + number * bar + 0.5:.1f}" y="{bottom - height:.1f}"'
            f' width="{max(bar - 1, 0.8):.1f}" height="{height:.1f}">'
            f"<title>{span}: {count:,} {unit}</title></rect>"
        )
    axis = (
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>'
        f'<text x="{left}" y="124" class="tick">0</text>'
        f'<text x="{right}" y="124" text-anchor="end" class="tick">{bins * width - 1:,}</text>'
        f'<text x="{left - 4}" y="{top_y + 8}" text-anchor="end" class="tick">{peak:,}</text>'
        f'<text x="{left - 4}" y="{bottom}" text-anchor="end" class="tick">0</text>'
    )
    return Markup(
        f'<figure class="hist"><figcaption>{escape(title)}</figcaption>'
        f'<svg viewBox="0 0 320 130" role="img" aria-label="{escape(title)}">{axis}'
        f'{"".join(parts)}</svg><p class="stat">{total:,} {unit} · mean {mean:,.1f} · median'
        f" {median:,} · max {top:,}</p></figure>"
    )


def _short_name(name: str) -> str:
    """`train 3` for train_3_of_32.hdf5; other names without their suffix."""
    match = re.match(r"^(?:.*/)?(train|dev)_(\d+)_of_\d+\.hdf5$", name)
    return f"{match[1]} {match[2]}" if match else Path(name).stem


def bars(items: list[tuple[str, int]], title: str, unit: str) -> Markup:
    """Vertical bars, one per item, on a zero-based axis: rows per file. Up to 40 bars carry
    their name and count; beyond, the first and last names mark the axis."""
    if not items:
        return Markup("")
    counts = [count for _, count in items]
    peak = max(counts) or 1
    left, right, bottom, height = 40, 994, 108, 88
    labelled = len(items) <= 40
    bar = (right - left) / len(items)
    parts = []
    for i, (name, count) in enumerate(items):
        tall = height * count / peak
        x = left + i * bar
        parts.append(
            f'<rect x="{x + 0.5:.1f}" y="{bottom - tall:.1f}" width="{max(bar - 1, 0.6):.1f}"'
            f' height="{tall:.1f}"><title>{escape(name)}: {count:,} {unit}</title></rect>'
        )
        if labelled:
            middle = x + bar / 2
            parts.append(
                f'<text x="{middle:.1f}" y="{bottom - tall - 3:.1f}" text-anchor="middle"'
                f' class="tick">{count:,}</text>'
                f'<text x="{middle:.1f}" y="{bottom + 13}" text-anchor="middle" class="tick">'
                f"{escape(_short_name(name) if bar >= 34 else str(i + 1))}</text>"
            )
    if not labelled:
        parts.append(
            f'<text x="{left}" y="{bottom + 13}" class="tick">{escape(_short_name(items[0][0]))}'
            f'</text><text x="{right}" y="{bottom + 13}" text-anchor="end" class="tick">'
            f"{escape(_short_name(items[-1][0]))}</text>"
        )
    axis = (
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>'
        f'<text x="{left - 4}" y="{bottom - height + 4}" text-anchor="end" class="tick">'
        f"{peak:,}</text>"
        f'<text x="{left - 4}" y="{bottom}" text-anchor="end" class="tick">0</text>'
    )
    low, high = min(counts), max(counts)
    spread = (
        f"every file holds {high:,} {unit}" if low == high else f"{low:,}–{high:,} {unit} per file"
    )
    numbered = "" if labelled and bar >= 34 else "; bars numbered in file order"
    return Markup(
        f'<figure class="wide"><figcaption>{escape(title)}</figcaption>'
        f'<svg viewBox="0 0 1000 126" role="img" aria-label="{escape(title)}">{axis}'
        f'{"".join(parts)}</svg><p class="stat">{len(items):,} files · {spread}{numbered}</p>'
        "</figure>"
    )


def _reason_bars(tally: LedgerTally) -> Markup:
    """Horizontal bars: input lines by status and reason, packed lines left out."""
    items = [
        (f"{status}" + (f": {reason}" if reason else ""), count)
        for (status, reason), count in tally.by_reason.most_common()
        if status != "packed"
    ]
    if not items:
        return Markup('<p class="none">every line was packed whole</p>')
    peak = max(count for _, count in items)
    height = 22 * len(items)
    parts = []
    for i, (name, count) in enumerate(items):
        y = i * 22
        length = 300 * count / peak
        parts.append(
            f'<text x="0" y="{y + 15}" class="label">{escape(name[:60])}</text>'
            f'<rect x="330" y="{y + 4}" width="{max(length, 1):.1f}" height="14">'
            f"<title>{escape(name)}: {count:,} lines</title></rect>"
            f'<text x="{336 + length:.1f}" y="{y + 15}" class="tick">{count:,}</text>'
        )
    return Markup(
        f'<svg class="reasons" viewBox="0 0 720 {height}" role="img"'
        f' aria-label="input lines by status and reason">{"".join(parts)}</svg>'
    )


def _token_html(segment: Segment) -> Markup:
    css_class = "tu" if segment.token_type is None else _class_of(segment.token_type)
    text = segment.text
    run = f"… {segment.count} × " if segment.count > 1 else ""
    text = text.removeprefix(run)
    visible = text.strip() == "" and text != ""
    shown = run + (text.translate(_VISIBLE) if visible else text.translate(_CONTROL))
    where = f"column {segment.column}"
    if segment.count > 1:
        where = f"columns {segment.column}–{segment.column + segment.count - 1}"
    hover = f"id {segment.token_id} · {type_label(segment.token_type)} · {where}"
    classes = css_class + (" ws" if visible else "")
    return Markup(f'<span class="{classes}" title="{escape(hover)}">{escape(shown)}</span>')


def _class_of(token_type: int) -> str:
    try:
        return f"t{int(TokenType(int(token_type)))}"
    except ValueError:
        return "tx"


def _row_html(sample: SampleRow) -> Markup:
    joiner = " " if sample.spaced else ""
    return Markup(joiner.join(_token_html(s) for s in sample.segments))


def _stats(profile: Profile) -> list[tuple[str, str, str, int | float]]:
    """(key, label, shown text, exact value) of the headline numbers."""
    loss = profile.loss
    stats: list[tuple[str, str, str, int | float]] = [
        ("rows", "rows", f"{profile.rows:,}", profile.rows),
        ("tokens", "tokens", f"{profile.tokens:,}", profile.tokens),
        (
            "rows_without_loss",
            "rows without loss",
            f"{loss.rows_without_loss:,}",
            loss.rows_without_loss,
        ),
    ]
    if profile.typed:
        padding = profile.share(TokenType.PADDING)
        stats += [
            ("articles", "articles", f"{profile.articles:,}", profile.articles),
            ("padding_share", "padding share", f"{padding:.2%}", padding),
        ]
    return stats


def _relative(report: Report, path: Path) -> str:
    if report.folder:
        try:
            return path.relative_to(report.path).as_posix()
        except ValueError:
            return str(path)
    return path.name


# The page is read on laptops, half-screen windows and phones: nothing may widen it past the
# window (a path or key with no space wraps anywhere), a table too wide for a phone scrolls in its
# own box, and below 760 px each finding is a block, as six columns left its text a word wide.
TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tokentype {{ version }}">
<title>{{ title }}</title>
<style>
:root{color-scheme:light;--ink:#1d1d1f;--muted:#5f6368;--line:#d9d9de}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);margin:0 auto;max-width:1100px;padding:20px 24px 60px;overflow-wrap:anywhere}
@media (max-width:480px){body{padding:12px 10px 40px}}
h1{font-size:1.35em;margin:0 0 4px;word-break:break-all}
h2{font-size:1.1em;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.meta,.note,.stat,figcaption,.none{color:var(--muted);font-size:.9em}
dl.stats{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
dl.stats div{border:1px solid var(--line);border-radius:6px;padding:6px 12px;min-width:120px}
dl.stats dt{color:var(--muted);font-size:.8em}
dl.stats dd{margin:0;font-size:1.25em;font-variant-numeric:tabular-nums}
svg.bar{width:100%;height:26px;display:block;border:1px solid var(--line)}
svg text{font:11px system-ui,sans-serif;fill:var(--ink)}
svg text.on{fill:#fff;font-weight:600;paint-order:stroke;stroke:#0008;stroke-width:2px}
svg .tick{fill:var(--muted)}
svg .axis{stroke:#999}
figure{margin:0}
figure.wide{margin-top:14px}
.hists{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(300px,100%),1fr));gap:14px}
.hist svg rect,.wide svg rect{fill:#0072B2}
.reasons rect{fill:#D55E00}
.legend{display:flex;flex-wrap:wrap;gap:14px;margin:8px 0;padding:0;list-style:none}
.legend li{display:flex;align-items:center;gap:6px}
.swatch{border:1px solid #0003}
.defs{position:absolute}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.92em;overflow-wrap:break-word}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
table.kv th,table.kv td{overflow-wrap:anywhere}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.n,.sev{white-space:nowrap}
@media (max-width:760px){
table.findings thead{display:none}
table.findings,table.findings tbody,table.findings tr{display:block}
table.findings tr{border-bottom:1px solid var(--line);padding:6px 0}
table.findings td{display:inline;border:0;padding:0 10px 0 0;text-align:left}
table.findings td.what{display:block;padding:2px 0 0}
table.findings td[data-label]:not(:empty)::before{content:attr(data-label) " ";color:var(--muted)}
}
td.bar{width:24%}
td.bar svg.bar{height:16px}
.barbox{position:relative}
.barbox span.on{position:absolute;top:1px;height:24px;font:600 11px/24px system-ui,sans-serif;text-align:center;color:#fff;text-shadow:0 0 2px #000,0 0 2px #000;white-space:nowrap;overflow:hidden;pointer-events:none}
td.bar .shares{font-size:.75em;color:var(--muted)}
.barbox{container-type:inline-size}
@container (max-width:449px){.barbox .w450{display:none}}
@container (max-width:599px){.barbox .w600{display:none}}
@container (max-width:799px){.barbox .w800{display:none}}
@container (max-width:1049px){.barbox .w1050{display:none}}
.sev{font-weight:700;text-transform:uppercase;font-size:.8em;padding:1px 6px;border-radius:4px}
.sev.error{background:#D55E00;color:#fff}
.sev.warning{background:#F0E442;color:#000}
section.findings{border:2px solid #D55E00;border-radius:8px;padding:4px 14px 10px;margin:16px 0}
section.findings.ok{border-color:#009E73}
.fix{color:var(--muted)}
.sample{margin:14px 0}
.sample .head{font-size:.88em;color:var(--muted);margin-bottom:3px}
.tokens{font:13px/2 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-all;border:1px solid var(--line);border-radius:6px;padding:6px 8px}
.tokens span{border-radius:2px;padding:1px 0}
.tokens span+span{box-shadow:inset 1px 0 #fff}
.tokens .ws{color:var(--muted)}
.tokens .t2{color:#6b6b6b;background:repeating-linear-gradient(135deg,#eee 0 3px,#fafafa 3px 6px)}
.tokens .t3{font-weight:700}
.tokens .tu{background:#f3f3f3}
{{ type_css }}
pre.yaml{background:#f7f7f9;border:1px solid var(--line);border-radius:6px;padding:8px;overflow:auto;max-height:360px}
details summary{cursor:pointer;color:var(--muted)}
footer{margin-top:40px;color:var(--muted);font-size:.85em}
@media print{details{display:block}}
</style>
</head>
<body>
{{ patterns }}
<header>
<h1>{{ report.path }}</h1>
<p class="meta">tokentype {{ version }} ·
{% if report.folder %}{{ report.files|length }} files · {% endif %}
{{ "{:,}".format(total.rows) }} rows · seq_len {{ seq_len }} · loss at prompt_loss_weight {{ "%g"|format(weight) }}</p>
</header>

{% if findings %}
<section class="findings" id="findings">
<h2>Findings from validate: {{ errors }} error{{ "" if errors == 1 else "s" }}, {{ warnings }} warning{{ "" if warnings == 1 else "s" }}</h2>
<div class="scroll"><table class="findings">
<thead><tr><th>severity</th><th>check</th>{% if report.folder %}<th>file</th>{% endif %}<th class="n">count</th><th class="n">first row</th><th>what and fix</th></tr></thead>
<tbody>
{% for entry, f in findings %}<tr data-check="{{ f.check }}"><td><span class="sev {{ f.severity }}">{{ f.severity }}</span></td><td>{{ f.check }}</td>{% if report.folder %}<td>{{ entry.name }}</td>{% endif %}<td class="n" data-label="count">{{ "{:,}".format(f.count) }}</td><td class="n" data-label="first row">{{ "" if f.row is none else f.row }}</td><td class="what">{{ f.message|replace(entry.path|string ~ ": ", "") }}{% if f.fix %}<div class="fix">fix: {{ f.fix }}</div>{% endif %}</td></tr>
{% endfor %}</tbody>
</table></div>
</section>
{% else %}
<section class="findings ok" id="findings"><p>validate found nothing to report.</p></section>
{% endif %}

<section id="learned">
<h2>What is learned</h2>
<dl class="stats">
{% for key, label, text, value in stats %}<div><dt>{{ label }}</dt><dd data-key="{{ key }}" data-value="{{ value }}">{{ text }}</dd></div>
{% endfor %}</dl>
{% if total.typed %}
<ul class="legend" id="legend">
{% for css_class, name, style in styles[:4] %}<li>{{ swatch(css_class) }}<span class="{{ css_class }}">{{ loop.index0 }} {{ name }}</span></li>
{% endfor %}</ul>
<p class="note">Token types, share of all tokens</p>
<div id="type-shares" data-shares="{{ type_share_data }}">{{ bar(type_shares(total), "token type shares") }}</div>
<p class="note">Share of the loss at prompt_loss_weight {{ "%g"|format(weight) }}, as <code>inspect --prompt-loss-weight</code> reports it</p>
<div id="loss-shares" data-shares="{{ loss_share_data }}">{{ bar(loss_shares(total), "loss shares") }}</div>
{% else %}
<p class="note">No token_type_ids{% if report.folder %} in some files{% endif %}: the trainer learns every token.</p>
{% endif %}
</section>

{% if report.folder %}
<section id="splits">
<h2>{{ "Splits" if report.splits else "Rows per file" }}</h2>
{% if report.splits %}
<div class="scroll"><table>
<thead><tr><th>split</th><th class="n">files</th><th class="n">rows</th><th class="n">tokens</th><th>token types</th><th>loss</th><th class="n">padding</th><th class="n">rows without loss</th><th class="n">articles</th></tr></thead>
<tbody>
{% for name, p in report.splits.items() %}<tr data-split="{{ name }}"><td>{{ name }}</td><td class="n">{{ p.files }}</td><td class="n">{{ "{:,}".format(p.rows) }}</td><td class="n">{{ "{:,}".format(p.tokens) }}</td><td class="bar">{{ mini_bar(type_shares(p), name ~ " token types") }}</td><td class="bar">{{ mini_bar(loss_shares(p), name ~ " loss shares") }}</td><td class="n">{{ "%.2f%%"|format(100 * p.share(2)) }}</td><td class="n">{{ "{:,}".format(p.loss.rows_without_loss) }}</td><td class="n">{{ "{:,}".format(p.articles) }}</td></tr>
{% endfor %}</tbody>
</table></div>
{% endif %}
{{ rows_per_file }}
</section>
{% endif %}

<section id="histograms">
<h2>Histograms{% if report.splits %} (all splits){% endif %}</h2>
<div class="hists">
{% for h in histograms %}{{ h }}
{% endfor %}</div>
</section>

{% if report.ledger or report.ledger_errors %}
<section id="ledger">
<h2>Input lines cut, dropped or rejected (tokenize ledger)</h2>
{% for error in report.ledger_errors %}<p class="note">skipped: {{ error }}</p>
{% endfor %}
{% if report.ledger %}
<p class="note">{{ "{:,}".format(report.ledger.lines) }} lines in {{ ledger_names }}: {{ "{:,}".format(report.ledger.by_status["packed"]) }} packed whole, {{ "{:,}".format(report.ledger.cut_for_length) }} cut or dropped for length ({{ "%.2f%%"|format(100 * report.ledger.cut_share) }}), {{ "{:,}".format(report.ledger.tokens_cut) }} tokens lost to length{% if report.ledger.first_cut_where %} (first: {{ report.ledger.first_cut_where }}){% endif %}{% if report.ledger.by_status["test"] %}; {{ "{:,}".format(report.ledger.by_status["test"]) }} kept as text in test splits{% endif %}.</p>
{{ reasons }}
{% endif %}
</section>
{% endif %}

<section id="rows">
<h2>Sample rows</h2>
<p class="note">{% if report.options.rows_spec is none %}The first {{ first_rows }} rows{% if report.folder %} of the first file{% endif %} and {{ random_rows }} chosen at random (seed {{ seed }}). {% else %}Rows {{ report.options.rows_spec }}{% if report.folder %} of each file{% endif %}. {% endif %}
Hover a token for its id, type and column; whitespace shows as ␣ ↵ ⇥; each type has its own underline: dotted prompt, solid completion, none (hatched) padding, double separator, wavy invalid. {{ report.sample_note }}</p>
<div class="tokens key" id="token-legend">{% for css_class, name, style in styles %}<span class="{{ css_class }}">{{ name }}</span> {% endfor %}</div>
{% for s in report.samples %}<div class="sample" data-file="{{ s.file }}" data-row="{{ s.row }}"><div class="head">{% if report.folder %}{{ s.file }}: {% endif %}{{ s.header }}</div><div class="tokens">{{ row_html(s) }}</div></div>
{% endfor %}
</section>

{% if report.metadata_text is not none or report.metadata_error %}
<section id="metadata">
<h2>metadata.yaml</h2>
{% if report.metadata_error %}<p class="note">{{ report.metadata_error }}</p>{% endif %}
{% if report.metadata %}<div class="scroll"><table class="kv"><tbody>
{% for key, value in report.metadata.items() %}<tr><th>{{ key }}</th><td>{{ yaml_value(value) }}</td></tr>
{% endfor %}</tbody></table></div>{% endif %}
<details><summary>the file as written</summary><pre class="yaml">{{ report.metadata_text }}</pre></details>
</section>
{% endif %}

{% if report.folder %}
<section id="files">
<h2>Files</h2>
<details><summary>{{ report.files|length }} files</summary>
<div class="scroll"><table>
<thead><tr><th>file</th><th>split</th><th class="n">rows</th><th class="n">padding</th><th class="n">rows without loss</th><th class="n">findings</th></tr></thead>
<tbody>
{% for e in report.files %}<tr><td>{{ e.name }}</td><td>{{ e.split }}</td><td class="n">{{ "{:,}".format(e.profile.rows) }}</td><td class="n">{{ "%.2f%%"|format(100 * e.profile.share(2)) }}</td><td class="n">{{ "{:,}".format(e.profile.loss.rows_without_loss) }}</td><td class="n">{{ e.report.findings|length if e.report else 0 }}</td></tr>
{% endfor %}</tbody>
</table></div>
</details>
</section>
{% endif %}
<footer>Written by tokentype {{ version }} (<code>tokentype inspect --html</code>); no scripts, no network.</footer>
</body>
</html>
"""


def render_html(report: Report) -> str:
    """The page as one string."""
    environment = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(TEMPLATE)
    total = report.total
    errors = sum(e.report.errors for e in report.files if e.report)
    warnings = sum(e.report.warnings for e in report.files if e.report)
    histograms = [_histogram(total.histograms.get(key), title) for key, title in HISTOGRAMS.items()]
    first_rows, random_rows = default_sample_size(total.seq_len)
    rows_per_file = bars([(e.name, e.profile.rows) for e in report.files], "rows per file", "rows")

    def yaml_value(value: object) -> str:
        if isinstance(value, (dict, list)):
            return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
        return str(value)

    return template.render(
        report=report,
        total=total,
        version=__version__,
        title=f"tokentype report: {report.path}",
        seq_len="mixed" if total.seq_len is None else f"{total.seq_len:,}",
        weight=report.options.weight,
        findings=report.findings,
        errors=errors,
        warnings=warnings,
        stats=_stats(total),
        styles=_styles(),
        type_css=Markup(_css()),
        patterns=_patterns(),
        swatch=_swatch,
        bar=stacked_bar,
        mini_bar=mini_bar,
        type_shares=_type_shares,
        loss_shares=_loss_shares,
        type_share_data=json.dumps(total.token_types()),
        loss_share_data=json.dumps(total.loss.share()),
        histograms=histograms,
        rows_per_file=rows_per_file,
        reasons=_reason_bars(report.ledger) if report.ledger else "",
        ledger_names=", ".join(_relative(report, p) for p in report.ledger_files),
        row_html=_row_html,
        first_rows=first_rows,
        random_rows=random_rows,
        seed=SEED,
        yaml_value=yaml_value,
    )


def write_report(report: Report, target: str | os.PathLike) -> int:
    """Write the page atomically to `target`; return its size in bytes.

    Never onto what the page was made from (the shard, a shard of the folder, a ledger it
    charts, the folder's metadata.yaml): the rename would replace that input with the page."""
    inputs: dict[str, Path | None] = {"the shard it reads": report.path}
    for entry in report.files:
        inputs[f"the shard {entry.name} it reads"] = entry.path
    for ledger in report.ledger_files:
        inputs[f"the ledger {ledger} it charts"] = Path(ledger)
    if report.folder:
        inputs[f"the folder's {METADATA}"] = report.path / METADATA
    refuse_output_onto_inputs(target, inputs, "--html")
    data = render_html(report).encode("utf-8")
    try:
        with atomic_path(target) as temporary:
            temporary.write_bytes(data)
    except OSError as exc:
        raise ShardError(f"{target}: cannot write the report ({exc.strerror or exc})") from exc
    return len(data)
