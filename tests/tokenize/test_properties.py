"""Property tests: `tokenize` against a plain token-by-token model of the reference tool."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokentype_cli.errors import InputError
from tokentype_cli.tokenize.options import PACKING_CHOICES, TokenizeOptions
from tokentype_cli.tokenize.pipeline import tokenize_files
from tokentype_cli.tokenizer_loader import load_tokenizer

VOCAB = {"<s>": 0, "</s>": 1, "a": 3, "b": 4, "c": 5, "<pad>": 6}
BOS, EOS, PAD = 0, 1, 6


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vocab") / "vocab.json"
    path.write_text(json.dumps(VOCAB))
    return path


# --- a slow, literal model of the reference ------------------------------------------------------


def model(lines, encode, seq_len, packing, pair_boundary, attention_pair, keep, separator):
    """Rows (ids, types) the reference would write for `lines` (lists of (prompt, completion))."""
    style, _, overflow = packing.partition("::")
    rows: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []

    def finish(seq):
        seq = seq + [(PAD, 2)] * (seq_len - len(seq))
        if keep or any(t == 1 for _, t in seq):
            rows.append(seq)

    def fit(article):
        extra = len(article) - seq_len
        if extra <= 0:
            return article
        if overflow == "drop":
            return []
        return article[extra:] if overflow == "truncate_left" else article[:-extra]

    for line in lines:
        articles, tokens = [], []
        for i, (prompt, completion) in enumerate(line):
            prompt = prompt or ""
            if not completion and not keep:
                continue
            if separator:
                prompt = prompt.rstrip(" ") if prompt else prompt
                completion = " " + completion.lstrip(" ") if completion else completion
            pair = []
            if prompt:
                ids = encode(prompt)
                if ids and ids[-1] == EOS:
                    ids = ids[:-1]
                pair += [(x, 0) for x in ids]
            if completion:
                ids = encode(completion)
                if ids and prompt and ids[0] == BOS:
                    ids = ids[1:]
                if ids and ids[-1] == EOS:
                    ids = ids[:-1]
                pair += [(x, 1) for x in ids]
            if pair:
                pair.append((EOS, 1))
            tokens += pair
            if attention_pair and tokens:
                tokens[-1] = (tokens[-1][0], 3)
            if pair_boundary and i != len(line) - 1:
                articles.append(tokens)
                tokens = []
        if tokens:
            tokens[-1] = (tokens[-1][0], 3)
        articles.append(tokens)
        for article in articles:
            if style == "full":
                stream = current + article
                while len(stream) > seq_len:
                    finish(stream[:seq_len])
                    stream = stream[seq_len:]
                current = stream
            elif style == "greedy":
                if len(current) + len(article) <= seq_len:
                    current = current + article
                else:
                    if current:
                        finish(current)
                    current = fit(article)
            else:
                article = fit(article)
                if article:
                    finish(article)
    if current:
        finish(current)
    return rows


# --- strategies ----------------------------------------------------------------------------------

words = st.lists(st.sampled_from(["a", "b", "c", "<s>", "</s>"]), max_size=6)
spaces = st.sampled_from(["", " ", "  "])


@st.composite
def texts(draw) -> str:
    return draw(spaces) + " ".join(draw(words)) + draw(spaces)


@st.composite
def pairs(draw) -> dict:
    record = {"completion": draw(texts())}
    if draw(st.booleans()):
        record["prompt"] = draw(texts())
    return record


lines_strategy = st.lists(
    st.one_of(pairs(), st.lists(pairs(), min_size=1, max_size=3)), min_size=1, max_size=10
)


def run(vocab_file, lines, folder: Path, **settings_):
    batch_lines = settings_.pop("batch_lines")
    source = folder / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    options = TokenizeOptions(**settings_)
    out, ledger = folder / "out.h5", folder / "ledger.jsonl"
    tokenizer = load_tokenizer(vocab_file)
    metrics = tokenize_files(
        [str(source)], out, tokenizer, options, ledger_path=ledger, batch_lines=batch_lines
    )
    with h5py.File(out) as f:
        ids, types = f["input_ids"][:], f["token_type_ids"][:]
    records = [json.loads(x) for x in ledger.read_text().splitlines()]
    return ids, types, records, metrics


settings_strategy = st.fixed_dictionaries(
    {
        "seq_len": st.integers(1, 12),
        "packing": st.sampled_from(PACKING_CHOICES),
        "packing_boundary": st.sampled_from(["jsonl", "prompt_completion_pair"]),
        "attention_boundary": st.sampled_from(["jsonl", "prompt_completion_pair"]),
        "keep_prompt_only": st.booleans(),
        "space_separator": st.booleans(),
        "batch_lines": st.integers(1, 4),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=lines_strategy, config=settings_strategy)
def test_rows_match_the_reference_model(vocab_file, lines, config):
    tokenizer = load_tokenizer(vocab_file)

    def encode(text):
        return tokenizer.tokenizer.encode(text).ids

    as_pairs = [
        [(p.get("prompt"), p["completion"]) for p in (line if isinstance(line, list) else [line])]
        for line in lines
    ]
    want = model(
        as_pairs,
        encode,
        config["seq_len"],
        config["packing"],
        config["packing_boundary"] == "prompt_completion_pair",
        config["attention_boundary"] == "prompt_completion_pair",
        config["keep_prompt_only"],
        config["space_separator"],
    )
    with tempfile.TemporaryDirectory() as folder:
        if not want:
            with pytest.raises(InputError, match="no rows"):
                run(vocab_file, lines, Path(folder), **config)
            return
        ids, types, records, metrics = run(vocab_file, lines, Path(folder), **config)
    assert ids.shape == types.shape == (len(want), config["seq_len"])
    assert ids.tolist() == [[i for i, _ in row] for row in want]
    assert types.tolist() == [[t for _, t in row] for row in want]
    assert types.min() >= 0 and types.max() <= 3

    # The ledger accounts for every line and every token of it.
    assert [r["line"] for r in records] == list(range(1, len(lines) + 1))
    for record in records:
        placed = sum(count for _, _, count in record["rows"])
        lost = (
            record["cut_left"]
            + record["cut_right"]
            + record["dropped_too_long"]
            + record["dropped_prompt_only_row"]
        )
        assert placed + lost == record["tokens"]
        for row, offset, count in record["rows"]:
            assert 0 <= row < len(ids) and offset + count <= config["seq_len"]
    assert metrics.rows == len(ids)
    assert sum(metrics.tokens_by_type) == ids.size


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=lines_strategy,
    seq_len=st.integers(1, 12),
    packing=st.sampled_from(PACKING_CHOICES),
    batch_lines=st.integers(1, 4),
)
def test_each_kept_article_has_one_separator_and_full_keeps_the_stream(
    vocab_file, lines, seq_len, packing, batch_lines
):
    with tempfile.TemporaryDirectory() as folder:
        try:
            ids, types, records, _ = run(
                vocab_file,
                lines,
                Path(folder),
                seq_len=seq_len,
                packing=packing,
                keep_prompt_only=True,
                batch_lines=batch_lines,
            )
        except InputError:
            return  # nothing to pack: every line was empty
    flat_types = types.ravel()
    # Default boundaries: one article per line, ending in its only separator, unless its end was
    # cut off (truncate_right) or the whole article dropped.
    intact = [r for r in records if r["tokens"] and r["status"] != "dropped" and not r["cut_right"]]
    assert int((flat_types == 3).sum()) == len(intact)
    for record in intact:
        row, offset, count = record["rows"][-1]
        assert types[row, offset + count - 1] == 3
    if packing == "full":
        real = flat_types != 2
        stream = ids.ravel()[real]
        assert len(stream) == sum(r["tokens"] for r in records)
        # Rows are the stream cut every seq_len tokens; only the last row has padding.
        assert not (types[:-1] == 2).any()
        assert np.array_equal(np.flatnonzero(real), np.arange(len(stream)))
