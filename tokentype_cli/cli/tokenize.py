"""`tokentype tokenize`."""

from __future__ import annotations

from pathlib import Path

import click

from tokentype_cli.cli.base import (
    cli,
    emit_json,
    hdf5_output,
    json_option,
    message,
    plural,
    progress_bar,
    provenance,
    quiet_option,
    tokenizer_option,
)
from tokentype_cli.tokenize.options import BOUNDARIES, ENCODERS, INPUT_FORMATS, PACKING_CHOICES
from tokentype_cli.tokenizer_loader import LoadedTokenizer


@cli.command("tokenize")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    callback=hdf5_output,
    help="HDF5 shard to write (written under a temporary name, renamed when complete).",
)
@tokenizer_option(required=True, for_encoding=True)
@click.option(
    "--input-format",
    type=click.Choice(INPUT_FORMATS),
    default=None,
    help="Format of every input. Default: by extension (.jsonl/.json, .txt); jsonl for -.",
)
@click.option(
    "--max-seq-length",
    "--max_seq_length",
    "max_seq_length",
    type=click.IntRange(min=1),
    default=2048,
    help="Tokens per row.",
)
@click.option(
    "--packing",
    "--input_packing_config",
    "packing",
    type=click.Choice(PACKING_CHOICES),
    default="full",
    help="full: fill rows, split articles; greedy::*: whole articles per row; single::*: one"
    " article per row. drop/truncate_left/truncate_right: what happens to an article longer"
    " than a row.",
)
@click.option(
    "--packing-boundary",
    "--packing_boundary",
    "packing_boundary",
    type=click.Choice(BOUNDARIES),
    default="jsonl",
    help="Pack a whole JSONL line as one article, or each prompt/completion pair (separators"
    " still follow --attention-boundary and line ends, as in the reference).",
)
@click.option(
    "--attention-boundary",
    "--attention_boundary",
    "attention_boundary",
    type=click.Choice(BOUNDARIES),
    default="jsonl",
    help="Where separators (type 3) go: the end of each line's article, or also every pair's eos.",
)
@click.option(
    "--prompt-key", "--prompt_keyword", "prompt_key", default="prompt", help="Prompt field."
)
@click.option(
    "--completion-key",
    "--completion_keyword",
    "completion_key",
    default="completion",
    help="Completion field.",
)
@click.option(
    "--no-space-separator",
    "--disable_space_separator",
    "no_space_separator",
    is_flag=True,
    help="Keep prompt and completion text as is (default: strip trailing spaces from the"
    " prompt, start the completion with exactly one space).",
)
@click.option(
    "--keep-prompt-only-sequences",
    "--keep_prompt_only_sequences",
    "keep_prompt_only",
    is_flag=True,
    help="Keep pairs with an empty completion and rows with no completion token.",
)
@click.option(
    "--prompt-prefix",
    "--prompt_prefix",
    "prompt_prefix",
    default=None,
    help="Text put before a non-empty prompt.",
)
@click.option(
    "--prompt-postfix",
    "--prompt_postfix",
    "prompt_postfix",
    default=None,
    help="Text put after a non-empty prompt.",
)
@click.option(
    "--eos-token",
    default=None,
    help="End-of-sequence token (text, or a number for an id). Default: the tokenizer's.",
)
@click.option(
    "--pad-token",
    default=None,
    help="Padding token (text or id). Default: the tokenizer's pad token, else the eos in use.",
)
@click.option(
    "--no-types",
    is_flag=True,
    help="Write input_ids only (type them later with assign-types or add-types).",
)
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write one JSON line per input line: the rows, offsets and token counts it went to, or"
    " why not (its keys are listed above).",
)
@click.option(
    "--skip-bad-lines",
    "rejects",
    metavar="REJECTS",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write unusable lines to REJECTS and go on, instead of failing on the first one.",
)
@click.option(
    "--encoder",
    type=click.Choice(ENCODERS),
    default="auto",
    help="What turns text into ids. auto: tiktoken when checks on the tokenizer show it gives"
    " the ids of tokenizers (byte-level BPE with a GPT-2, Llama-3 or Qwen2 pre-tokenizer), else"
    " tokenizers; tiktoken: fail naming the check that does not hold. The ids are the same.",
)
@json_option
@quiet_option
@click.pass_context
def tokenize_command(
    ctx: click.Context,
    inputs: tuple[str, ...],
    output: Path,
    tokenizer: LoadedTokenizer,
    input_format: str | None,
    max_seq_length: int,
    packing: str,
    packing_boundary: str,
    attention_boundary: str,
    prompt_key: str,
    completion_key: str,
    no_space_separator: bool,
    keep_prompt_only: bool,
    prompt_prefix: str | None,
    prompt_postfix: str | None,
    eos_token: str | None,
    pad_token: str | None,
    no_types: bool,
    ledger: Path | None,
    rejects: Path | None,
    encoder: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Tokenize JSONL or TXT into packed rows with token_type_ids (like generative_data_prep).

    JSONL lines are {"prompt": ..., "completion": ...} or a list of such objects; TXT lines are
    completion-only articles. Prompt tokens get type 0, completion tokens 1, padding 2, and the
    eos ending each article 3. INPUT is a file (.gz and .zst are read compressed), a folder (its
    *.jsonl or *.txt files, sorted by name), a FIFO, or - for stdin. Lines end at \\n, \\r\\n or a
    lone \\r, as in the reference; a UTF-8 byte order mark is skipped; blank JSONL lines are skipped
    and counted (lines_blank).

    A summary goes to stderr; --json prints the metrics on stdout instead: encoder (the one that
    ran), lines, lines_blank, lines_rejected,
    pairs, pairs_skipped_prompt_only, articles, input_tokens, rows, max_seq_length,
    output_tokens, tokens_by_type, tokens_truncated_left, tokens_truncated_right,
    tokens_dropped_too_long (articles longer than a row, with ::drop),
    tokens_dropped_prompt_only_rows, rows_dropped_prompt_only and packing_efficiency (the
    non-padding share of the rows).

    --ledger writes one JSON object per input line, all with the same keys: input, line, status
    (packed, truncated, partly_dropped, dropped or rejected), reason (for dropped: too_long,
    prompt_only, prompt_only_row, empty or blank; for rejected: the error; else null), tokens, rows (a
    list of [row, offset, count] pieces in the output), cut_left, cut_right, dropped_too_long,
    dropped_prompt_only_row and pairs_skipped_prompt_only. Every token is accounted for: tokens
    is the sum of the counts in rows, cut_left, cut_right, dropped_too_long and
    dropped_prompt_only_row.

    Example:

    \b
        tokentype tokenize data.jsonl -o shard.h5 --tokenizer gpt2/ --max-seq-length 1024
        tokentype tokenize chat.jsonl -o sft.h5 --tokenizer gpt2/ --packing single::drop
        cat a.jsonl b.jsonl | tokentype tokenize - -o out.h5 --tokenizer gpt2/ --json | jq .rows
    """
    from tokentype_cli.tokenize.encoders import build_encoder
    from tokentype_cli.tokenize.options import TokenizeOptions
    from tokentype_cli.tokenize.pipeline import tokenize_files
    from tokentype_cli.tokenize.read import input_size

    options = TokenizeOptions(
        seq_len=max_seq_length,
        packing=packing,
        packing_boundary=packing_boundary,
        attention_boundary=attention_boundary,
        prompt_key=prompt_key,
        completion_key=completion_key,
        space_separator=not no_space_separator,
        keep_prompt_only=keep_prompt_only,
        prompt_prefix=prompt_prefix,
        prompt_postfix=prompt_postfix,
        input_format=input_format,
        write_types=not no_types,
        eos_token=eos_token,
        pad_token=pad_token,
    )
    paths = list(inputs)
    text_encoder = build_encoder(tokenizer, encoder)
    record = {
        "inputs": paths,
        "tokenizer": str(tokenizer.path),
        "encoder": text_encoder.name,
        **vars(options),
    }
    with progress_bar(input_size(paths), "B", "tokenize", quiet) as advance:
        metrics = tokenize_files(
            paths,
            output,
            tokenizer,
            options,
            provenance=provenance(ctx, **record),
            ledger_path=ledger,
            rejects_path=rejects,
            advance=advance,
            encoder=text_encoder,
        )
    summary = metrics.as_dict()
    if as_json:
        emit_json(summary)
    elif not quiet:
        declined = getattr(text_encoder, "declined", None)
        message(_tokenize_summary(summary, output, rejects, declined))


def _tokenize_summary(m: dict, output: Path, rejects: Path | None, declined: str | None) -> str:
    types = m["tokens_by_type"]
    lines = [
        f"{output}: {plural(m['rows'], 'row')} x {m['max_seq_length']:,} tokens"
        f" from {plural(m['lines'], 'line')}"
        f" ({plural(m['articles'], 'article')}, {plural(m['pairs'], 'pair')})",
        "  tokens: " + ", ".join(f"{name} {count:,}" for name, count in types.items()),
        f"  packing efficiency {m['packing_efficiency']:.1%} (non-padding share of the rows)",
        f"  encoder {m['encoder']}"
        + (f" (tiktoken not used: its {declined} check failed)" if declined else ""),
    ]
    losses = [
        ("truncated from the left", m["tokens_truncated_left"]),
        ("truncated from the right", m["tokens_truncated_right"]),
        ("dropped: article longer than a row", m["tokens_dropped_too_long"]),
        (
            f"dropped: {plural(m['rows_dropped_prompt_only'], 'row')} without completion tokens",
            m["tokens_dropped_prompt_only_rows"],
        ),
    ]
    for what, count in losses:
        if count:
            lines.append(f"  {plural(count, 'token')} {what}")
    if m["pairs_skipped_prompt_only"]:
        lines.append(
            f"  {plural(m['pairs_skipped_prompt_only'], 'pair')} with an empty completion skipped"
            " (--keep-prompt-only-sequences keeps them)"
        )
    if m["lines_rejected"]:
        lines.append(f"  {plural(m['lines_rejected'], 'bad line')} written to {rejects}")
    return "\n".join(lines)
