"""`tokentype tokenize`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tokentype_cli.cli.base import (
    TokentypeCommand,
    check_existing_output,
    cli,
    emit_json,
    hdf5_output,
    json_option,
    max_seq_length_callback,
    message,
    plural,
    progress_bar,
    provenance,
    quiet_option,
    special_tokens_option,
    tokenizer_option,
)
from tokentype_cli.tokenize.options import (
    BOUNDARIES,
    DEFAULT_ALPACA_TEMPLATE,
    DEFAULT_ALPACA_TEMPLATE_NO_INPUT,
    DEFAULT_MAX_LINE_BYTES,
    ENCODERS,
    INPUT_FORMATS,
    PACKING_CHOICES,
    TRAIN_ON,
)

if TYPE_CHECKING:
    from tokentype_cli.tokenizer_loader import LoadedTokenizer

# The reference spells the shuffle `--shuffle on_RAM|large_file|False`; here it is a bare flag.
_SHUFFLE_VALUES = {"on_ram": "--shuffle", "large_file": "--shuffle", "false": "--no-shuffle"}


class TokenizeCommand(TokentypeCommand):
    """tokenize, which also takes the reference's valued `--shuffle` spellings."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        index = 0
        while index < len(args):
            arg = args[index]
            if arg.startswith("--shuffle="):
                value = arg.partition("=")[2]
                if value.lower() not in _SHUFFLE_VALUES:
                    raise click.UsageError(
                        f"--shuffle={value}: use --shuffle (or on_RAM, large_file, False)", ctx
                    )
                rewritten.append(_SHUFFLE_VALUES[value.lower()])
            elif (
                arg == "--shuffle"
                and index + 1 < len(args)
                and args[index + 1].lower() in _SHUFFLE_VALUES
            ):
                rewritten.append(_SHUFFLE_VALUES[args[index + 1].lower()])
                index += 1
            else:
                rewritten.append(arg)
            index += 1
        return super().parse_args(ctx, rewritten)


def _categories(ctx: click.Context, param: click.Parameter, value: Path | None):
    if value is None:
        return None
    import json

    try:
        names = json.loads(value.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.BadParameter(f"{value}: not a readable JSON list ({exc})", ctx, param) from exc
    if (
        not isinstance(names, list)
        or not all(isinstance(name, str) for name in names)
        or len(set(names)) != len(names)
    ):
        raise click.BadParameter(
            f'{value}: write a JSON list of distinct names, e.g. ["math", "code"]', ctx, param
        )
    return tuple(names)


def _role_map(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]):
    from tokentype_cli.errors import OptionError
    from tokentype_cli.tokenize.shapes import parse_role_map

    try:
        return parse_role_map(value)
    except OptionError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


def _task(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    index, slash, count = value.partition("/")
    if not slash or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise click.BadParameter(
            f"{value!r}: write K/N with 0 <= K < N, e.g. --task $SLURM_ARRAY_TASK_ID/8", ctx, param
        )
    return int(index), int(count)


def dataset_options(command):
    """The options of `--dataset DIR` builds (reference spellings accepted as aliases)."""
    options = [
        click.option(
            "--dataset",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Write a training-ready dataset folder DIR (train/dev/test splits, metadata.yaml,"
            " tokenizer/, sha256 manifest) instead of one -o shard.",
        ),
        click.option(
            "--train-files",
            "--num_training_splits",
            "train_files",
            type=click.IntRange(min=1),
            default=None,
            help="Train files. Default as the reference: 32 under 10 GiB of input, 128 under 100"
            " GiB, else 256.",
        ),
        click.option(
            "--dev-ratio",
            "--dev_ratio",
            "dev_ratio",
            type=click.FloatRange(0, 1, max_open=True),
            default=None,
            help="Share of the splits that are dev files (the reference's arithmetic).",
        ),
        click.option(
            "--dev-files",
            "--num_dev_splits",
            "dev_files",
            type=click.IntRange(min=0),
            default=None,
            help="Dev files (instead of --dev-ratio).  [default: 0]",
        ),
        click.option(
            "--test-ratio",
            "--test_ratio",
            "test_ratio",
            type=click.FloatRange(0, 1, max_open=True),
            default=None,
            help="Share of the splits kept as text test files under test_files/.",
        ),
        click.option(
            "--test-files",
            "--num_test_splits",
            "test_files",
            type=click.IntRange(min=0),
            default=None,
            help="Test files (instead of --test-ratio).  [default: 0]",
        ),
        click.option(
            "--accept-zero-splits",
            is_flag=True,
            help="Accept a --dev-ratio or --test-ratio that the reference's arithmetic turns into"
            " no file (0.1 of 4 train files), as the reference does silently; by default that"
            " fails naming the --train-files or --dev-files/--test-files that give one.",
        ),
        click.option(
            "--shuffle/--no-shuffle",
            default=False,
            help="Shuffle lines across the splits, seeded by --seed (the reference's on_RAM,"
            " large_file and False are accepted); without it line i goes to split i mod N.",
        ),
        click.option(
            "--seed",
            type=click.IntRange(min=0),
            default=0,
            help="Seed of --shuffle: the same inputs, seed and splits give the same folder.",
        ),
        click.option(
            "--no-balance",
            "--do_not_balance_hdf5",
            "no_balance",
            is_flag=True,
            help="Keep each file's rows as tokenized instead of balancing train (and dev) files to"
            " within one row.",
        ),
        click.option(
            "--keep-splits",
            "--keep_split_jsonls",
            "keep_splits",
            is_flag=True,
            help="Keep each split's lines, in split order, under DIR/splits/.",
        ),
        click.option(
            "--workers",
            "--num_workers",
            "workers",
            type=click.IntRange(min=1),
            default=None,
            help="Processes tokenizing splits at once; the folder is byte-identical for any"
            " number.  [default: the cores]",
        ),
        click.option(
            "--task",
            metavar="K/N",
            default=None,
            callback=_task,
            help="Build only share K of N (K from 0) into a folder beside DIR, for N machines on"
            " a shared filesystem; then run once with --finish.",
        ),
        click.option(
            "--finish",
            is_flag=True,
            help="Check the --task shares, balance, write metadata and hashes, and move DIR"
            " into place.",
        ),
        click.option(
            "--model-config",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="The model's config.json (its model_type goes to metadata.yaml). Default: the"
            " one beside the tokenizer.",
        ),
        click.option(
            "--tokenizer-model-type",
            "model_type",
            default=None,
            metavar="TEXT",
            help="metadata.yaml's tokenizer_model_type verbatim, for a model_type tokentype does"
            " not know, e.g. \"<class 'transformers.models.llama.configuration_llama.LlamaConfig'>\".",
        ),
        click.option(
            "--overwrite",
            "--overwrite_output_path",
            "overwrite",
            is_flag=True,
            help="Replace an existing -o shard or --dataset folder (swapped out only once the new"
            " one is complete); a file that is not HDF5 is never replaced.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def gdp_options(command):
    """generative_data_prep's flags with no tokentype spelling of their own: accepted so its
    command lines run, hidden from --help (the README's table maps them)."""
    options = [
        click.option(
            "--input_path",
            "--input_file_path",
            "gdp_inputs",
            multiple=True,
            hidden=True,
            help="An input file or folder (GDP's spelling of INPUT).",
        ),
        click.option(
            "--output_path",
            "gdp_output",
            type=click.Path(path_type=Path),
            default=None,
            hidden=True,
            help="GDP's output: a folder (pipeline, --dataset) or an .hdf5 file (data_prep, -o).",
        ),
        click.option(
            "--ignore_input_format_error",
            "ignore_format_errors",
            is_flag=True,
            hidden=True,
            help="Skip malformed lines, writing them to json_error_log/ beside the output.",
        ),
        click.option(
            "--silent",
            is_flag=True,
            hidden=True,
            help="GDP's --quiet.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command("tokenize", cls=TokenizeCommand)
@click.argument("inputs", nargs=-1, required=False, metavar="INPUT...")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=hdf5_output,
    help="HDF5 shard to write (written under a temporary name, renamed when complete).",
)
@tokenizer_option(required=True, for_encoding=True)
@click.option(
    "--input-format",
    type=click.Choice(INPUT_FORMATS),
    default=None,
    help="Shape of every input's lines or rows. Default: by extension (.jsonl/.json, .txt,"
    " .parquet, .arrow); jsonl for -. jsonl lines and Parquet/Arrow rows holding messages,"
    " ShareGPT conversations or Alpaca instruction/output are read as such; chat, sharegpt and"
    " alpaca require every line to be one.",
)
@click.option(
    "--max-seq-length",
    "--max_seq_length",
    "max_seq_length",
    type=click.IntRange(min=1),
    default=2048,
    callback=max_seq_length_callback,
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
    "--prompt-key",
    "--prompt_keyword",
    "prompt_key",
    default="prompt",
    help="Prompt field (a Parquet/Arrow input's column).",
)
@click.option(
    "--completion-key",
    "--completion_keyword",
    "completion_key",
    default="completion",
    help="Completion field (a Parquet/Arrow input's column).",
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
    "--split-special-tokens",
    is_flag=True,
    help="Encode special tokens written in the text (a literal <|endoftext|>) as plain text,"
    " not as the special token (the tokenizer's encode_special_tokens).",
)
@click.option(
    "--max-line-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_LINE_BYTES,
    help="A longer input line is a bad line (encoding one text costs about 130 bytes of memory"
    " per byte).",
)
@click.option(
    "--categories",
    "--categories_path",
    "categories",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=_categories,
    help='A JSON list of category names: each pair\'s "category" gives its tokens that index in'
    " a category_ids dataset (-1 for padding and pairs without one).",
)
@click.option(
    "--apply-chat-template",
    "--apply_chat_template",
    "apply_chat_template",
    is_flag=True,
    help="Render prompt/completion lines with the chat template: each pair becomes a user turn"
    " and an assistant turn of one conversation (a line's list of pairs: a multi-turn one).",
)
@click.option(
    "--chat-template",
    "chat_template",
    metavar="FILE.jinja",
    type=click.Path(dir_okay=False),
    default=None,
    help="Chat template to render conversations with. Default: the tokenizer folder's"
    " (chat_template in tokenizer_config.json, or chat_template.jinja).",
)
@click.option(
    "--chat-template-name",
    default=None,
    help="Which of the tokenizer's named chat templates to use. Default: 'tool_use' for"
    " conversations with tools when there is one, else 'default' (as transformers picks).",
)
@click.option(
    "--train-on",
    type=click.Choice(TRAIN_ON),
    default="assistant",
    help="Conversation turns that learn: every assistant turn, only the last one, or all tokens."
    ' An assistant message with "weight": 0 never learns.',
)
@click.option(
    "--role-map",
    "role_map",
    metavar="FROM=TO",
    multiple=True,
    callback=_role_map,
    help="Read conversation role FROM as TO (system, user, assistant, tool, ...; or FROM itself"
    " to pass a role the template knows). Repeatable. ShareGPT's human, gpt, function_call and"
    " observation are mapped already; any other unknown role is an error.",
)
@click.option(
    "--alpaca-template",
    default=None,
    show_default=repr(DEFAULT_ALPACA_TEMPLATE)[1:-1],
    help="The prompt of an Alpaca record with an input: {instruction} and {input} are replaced,"
    " {{ }} is a literal brace.",
)
@click.option(
    "--alpaca-template-no-input",
    default=None,
    show_default=DEFAULT_ALPACA_TEMPLATE_NO_INPUT,
    help="The prompt of an Alpaca record whose input is empty or absent.",
)
@click.option(
    "--seam-report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write one JSON line per token that straddles prompt and completion text in a"
    " conversation: input, line, token (its position), id, text, types (of its first and other"
    " characters) and type.",
)
@click.option(
    "--max-seams",
    type=click.IntRange(min=0),
    default=None,
    help="Fail (exit 1, nothing written) when more tokens than this straddle prompt and"
    " completion text. Default: no limit.",
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
    " the ids of tokenizers (byte-level BPE with a GPT-2, Llama-3 or Qwen2 pre-tokenizer),"
    " sentencepiece when they show it does (SentencePiece-style BPE with byte_fallback: Llama-2,"
    " Mistral v0.1-v0.3, Phi-3; with the tokentype[sentencepiece] extra), else tokenizers;"
    " tiktoken, sentencepiece: fail naming the check that does not hold. The ids are the same.",
)
@click.option(
    "--log-file",
    "--log_file_path",
    "log_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append the command line and the summary to this file. Default: none; with GDP's"
    " pipeline and data_prep commands, logs.log in the output folder, as GDP writes it.",
)
@special_tokens_option
@dataset_options
@gdp_options
@json_option
@quiet_option
@click.pass_context
def tokenize_command(
    ctx: click.Context,
    inputs: tuple[str, ...],
    output: Path | None,
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
    split_special_tokens: bool,
    max_line_bytes: int,
    categories: tuple[str, ...] | None,
    apply_chat_template: bool,
    chat_template: str | None,
    chat_template_name: str | None,
    train_on: str,
    role_map: tuple[tuple[str, str], ...],
    alpaca_template: str | None,
    alpaca_template_no_input: str | None,
    seam_report: Path | None,
    max_seams: int | None,
    ledger: Path | None,
    rejects: Path | None,
    dataset: Path | None,
    train_files: int | None,
    dev_ratio: float | None,
    dev_files: int | None,
    test_ratio: float | None,
    test_files: int | None,
    accept_zero_splits: bool,
    shuffle: bool,
    seed: int,
    no_balance: bool,
    keep_splits: bool,
    workers: int | None,
    task: tuple[int, int] | None,
    finish: bool,
    model_config: Path | None,
    model_type: str | None,
    overwrite: bool,
    encoder: str,
    log_file: Path | None,
    gdp_inputs: tuple[str, ...],
    gdp_output: Path | None,
    ignore_format_errors: bool,
    silent: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Tokenize JSONL, TXT, Parquet/Arrow or chat conversations into packed rows with token_type_ids.

    JSONL lines are {"prompt": ..., "completion": ...} or a list of such objects (as in
    generative_data_prep); TXT lines are completion-only articles. Prompt tokens get type 0,
    completion tokens 1, padding 2, and the eos ending each article 3. INPUT is a file (.gz and .zst
    are read compressed), a folder (its *.jsonl or *.txt files, sorted by name), a FIFO, or - for
    stdin. Lines end at \\n, \\r\\n or a lone \\r, as in the reference; a UTF-8 byte order mark is
    skipped; blank JSONL lines are skipped and counted (lines_blank).

    Parquet and Arrow (with the tokentype[parquet] extra): .parquet, .arrow and .feather files,
    folders of them in name order (a Hugging Face dataset's clone or its data/ folder of
    train-00000-of-00004.parquet shards; a folder of several splits is refused), and
    datasets.save_to_disk folders. Each row is read as the JSON line of the same content (a
    struct is an object, a list a list, a null a missing key), a record batch at a time; rows are
    numbered from 0 within their file (file:row in messages, "row" in the ledger), and
    --skip-bad-lines writes rejected rows as JSON lines. --prompt-key and --completion-key name
    the columns.

    Shapes (JSONL lines and rows alike, detected when the keys leave no doubt or set by
    --input-format): ShareGPT {"conversations": [{"from": "human", "value": ...}, ...]} (an
    optional "system"; human/user, gpt/assistant, function_call (learned, as the model writes
    it), observation/tool and system map to chat roles) and a conversations list of
    role/content messages are chat conversations; Alpaca {"instruction", "input", "output"}
    is a pair whose prompt is --alpaca-template (or --alpaca-template-no-input when the input is
    empty). A conversation role that is not a chat role (system, developer, user, assistant,
    tool, ipython, function) after --role-map is a bad line naming the roles seen.

    Chat: a JSONL line {"messages": [{"role": ..., "content": ...}, ...], "tools": [...]} (or a
    bare list of messages) is a conversation, rendered with the tokenizer's chat template as
    transformers' apply_chat_template renders it (add_generation_prompt false) and tokenized
    whole, adding no special tokens. Content may be a list of {"type": "text"} parts (joined with
    newlines for a template that reads strings). Text inside the template's {% generation %}
    blocks is completion; without such blocks, an assistant turn is completion from the first
    character it writes after its header (the template's generation prompt; a <think> the
    template opens, tool calls included) through its end-of-turn marker, and the rest (the
    newline after <|im_end|>, the next header) is prompt. The rendering is bounded: twice
    --max-line-bytes characters, and 100,000 template steps plus 100 per message, part, tool call,
    tool and document. A token straddling prompt and completion text (a seam) is completion when any
    of its characters is, the rule behind transformers' assistant mask. Each conversation is one
    article ending in one separator: a rendering ending in the eos plus whitespace loses the
    whitespace and the eos is the separator; otherwise an eos is appended. A conversation learning
    no token is skipped like a prompt-only pair; a conversation counts as one pair in the metrics.
    strftime_now uses SOURCE_DATE_EPOCH when set.

    A summary goes to stderr (what was cut, dropped or skipped, and why); --json prints the
    metrics on stdout instead, every field listed in docs/json.md.

    --ledger writes one JSON object per input line, all with the same keys: input, line (or row,
    from 0, for a Parquet/Arrow row), status
    (packed, truncated, partly_dropped, dropped or rejected), reason (for dropped: too_long,
    prompt_only, prompt_only_row, empty or blank; for rejected: the error; else null), tokens, rows (a
    list of [row, offset, count] pieces in the output), cut_left, cut_right, dropped_too_long,
    dropped_prompt_only_row, pairs_skipped_prompt_only, completion_tokens (type 1, before
    packing), seams and open_turns. Every token is accounted for: tokens
    is the sum of the counts in rows, cut_left, cut_right, dropped_too_long and
    dropped_prompt_only_row. A --dataset build's ledger adds split and file (rows name their
    file), and gives a test split's lines, kept as text, only input, line (or row), status test,
    split, file and test_line (the line in that file).

    Example:

    \b
        tokentype tokenize data.jsonl -o shard.h5 --tokenizer gpt2/ --max-seq-length 1024
        tokentype tokenize chat.jsonl -o sft.h5 --tokenizer qwen/ --packing greedy::drop
        cat a.jsonl b.jsonl | tokentype tokenize - -o out.h5 --tokenizer gpt2/ --json | jq .rows
        tokentype tokenize chat.jsonl -o sft.h5 --tokenizer qwen/ --seam-report seams.jsonl
        tokentype tokenize hub-clone/ --dataset sft/ --tokenizer qwen/ --role-map bot=assistant
    """
    from tokentype_cli.loss import type_shares
    from tokentype_cli.tokenize.options import TokenizeOptions, input_units
    from tokentype_cli.tokenize.pipeline import text_encoder_for, tokenize_files
    from tokentype_cli.tokenize.read import expand_inputs, input_size
    from tokentype_cli.tokenize.read import input_format as format_of

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
        categories=categories,
        split_special_tokens=split_special_tokens,
        max_line_bytes=max_line_bytes,
        apply_chat_template=apply_chat_template,
        chat_template=chat_template,
        chat_template_name=chat_template_name,
        train_on=train_on,
        role_map=role_map,
        alpaca_template=alpaca_template,
        alpaca_template_no_input=alpaca_template_no_input,
    )
    paths = [*inputs, *gdp_inputs]
    if not paths:
        raise click.UsageError("Missing argument 'INPUT...' (or --input_path).", ctx)
    quiet = quiet or silent
    if gdp_output is not None:
        output, dataset = _gdp_target(ctx, gdp_output, output, dataset)
        if dataset is not None and not overwrite and dataset.is_dir() and any(dataset.iterdir()):
            raise click.UsageError(
                f"--output_path {dataset} holds files already; pass --overwrite_output_path to"
                " replace it, or name an empty or new folder",
                ctx,
            )
    if log_file is None:
        log_file = _gdp_log_file(ctx, output, dataset)
    if ignore_format_errors and rejects is None:
        rejects = _gdp_rejects(paths, output, dataset)
    if dataset is None:
        dataset_flags = [
            name for name, value in (
                ("--train-files", train_files), ("--dev-ratio", dev_ratio),
                ("--dev-files", dev_files), ("--test-ratio", test_ratio),
                ("--test-files", test_files), ("--shuffle", shuffle or None),
                ("--accept-zero-splits", accept_zero_splits or None),
                ("--no-balance", no_balance or None), ("--keep-splits", keep_splits or None),
                ("--workers", workers), ("--task", task), ("--finish", finish or None),
                ("--model-config", model_config), ("--tokenizer-model-type", model_type),
            ) if value is not None
        ]  # fmt: skip
        if output is None:
            raise click.UsageError(
                "Missing option '-o' / '--output' (or '--dataset DIR' for a dataset folder).", ctx
            )
        if dataset_flags:
            raise click.UsageError(f"{dataset_flags[0]} needs --dataset DIR", ctx)
        from tokentype_cli.tokenize.pipeline import check_targets

        check_targets(paths, {"-o": output})  # writing onto an input has a message of its own
        _check_output_file(ctx, output, overwrite)
    elif output is not None:
        raise click.UsageError(
            "-o and --dataset exclude each other: write a shard or a folder", ctx
        )
    elif seam_report is not None or max_seams is not None:
        raise click.UsageError(
            "--seam-report and --max-seams work with -o: a dataset build counts seams in its"
            " metrics; tokenize one input with -o to list them",
            ctx,
        )
    text_encoder = text_encoder_for(tokenizer, options, encoder)
    _warn_beyond_model(tokenizer, model_config, max_seq_length, quiet)
    if dataset is not None:
        from tokentype_cli.dataset.build import Build, DatasetOptions, cores

        build = Build(
            inputs=paths,
            folder=dataset,
            tokenizer=tokenizer,
            options=options,
            dataset=DatasetOptions(
                train_files=train_files,
                dev_files=dev_files,
                test_files=test_files,
                dev_ratio=dev_ratio,
                test_ratio=test_ratio,
                shuffle=shuffle,
                seed=seed,
                balance=not no_balance,
                keep_splits=keep_splits,
                model_config=model_config,
                model_type=model_type,
                accept_zero_splits=accept_zero_splits,
            ),
            workers=workers or cores(),
            task=task,
            finish=finish,
            overwrite=overwrite,
            ledger_path=ledger,
            rejects_path=rejects,
            progress=(lambda text: None) if quiet or not sys.stderr.isatty() else message,
            encoder=text_encoder,
        )
        staged_rejects = rejects
        report = build.run()
        summary_text = _dataset_summary(report)
        if as_json:
            emit_json(_dataset_json(report, paths))
        elif not quiet:
            message(summary_text)
        if report.finished:
            _settle_gdp_logs(ctx, dataset, staged_rejects if ignore_format_errors else None)
            _append_log(ctx, log_file, summary_text)
        return
    assert output is not None  # no --dataset: a missing -o was refused above
    record = {
        "inputs": paths,
        "tokenizer": str(tokenizer.path),
        "encoder": text_encoder.name,
        **vars(options),
    }
    # Folders listed once: the run, its progress bar's total (a folder's files, not the folder)
    # and its summary's wording (a Hub folder's files are its rows' format) read the same files.
    files = expand_inputs(paths)
    with progress_bar(input_size(files), "B", "tokenize", quiet) as advance:
        metrics = tokenize_files(
            files,
            output,
            tokenizer,
            options,
            provenance=provenance(ctx, **record),
            ledger_path=ledger,
            rejects_path=rejects,
            seam_report_path=seam_report,
            max_seams=max_seams,
            advance=advance,
            encoder=text_encoder,
        )
    summary = metrics.as_dict()
    # The fields every writing command's --json shares (docs/json.md), beside the metrics.
    summary |= {
        "inputs": paths,
        "output": str(output),
        "seq_len": max_seq_length,
        "token_types": None if no_types else type_shares(metrics.tokens_by_type),
    }
    declined = getattr(text_encoder, "declined", None)
    if declined:
        fast = getattr(text_encoder, "declined_by", None) or "tiktoken"
        declined = f"{fast} not used: its {declined} check failed"
    units = input_units([format_of(path, options.input_format) for path in files])
    summary_text = _tokenize_summary(summary, output, rejects, declined, units)
    if as_json:
        emit_json(summary)
    elif not quiet:
        message(summary_text)
    _append_log(ctx, log_file, summary_text)


def _warn_beyond_model(
    tokenizer: LoadedTokenizer, model_config: Path | None, max_seq_length: int, quiet: bool
) -> None:
    """Rows longer than the model has positions fail in training, or are cut silently."""
    from tokentype_cli.tokenizer_loader import model_positions

    config = model_config or tokenizer.path.parent / "config.json"
    found = model_positions(config)
    if found is not None and max_seq_length > found[0] and not quiet:
        message(
            f"warning: --max-seq-length {max_seq_length:,} is longer than the model's"
            f" {found[0]:,} positions ({config}: {found[1]}); tokenize with at most that"
        )


# GDP's commands say where their output goes; plain tokenize tells by the name's suffix.
GDP_TARGET_KEY = "tokentype.gdp_target"
HDF5_SUFFIXES = (".hdf5", ".h5")


def _gdp_target(
    ctx: click.Context, given: Path, output: Path | None, dataset: Path | None
) -> tuple[Path | None, Path | None]:
    """Route GDP's --output_path: a dataset folder for pipeline, one file for data_prep."""
    target = ctx.meta.get(GDP_TARGET_KEY) or (
        "output" if given.suffix.lower() in HDF5_SUFFIXES else "dataset"
    )
    if output is not None or dataset is not None:
        raise click.UsageError("--output_path names the output: leave out -o and --dataset", ctx)
    if target == "output":
        if str(given) == "-":
            raise click.UsageError("--output_path: an HDF5 file cannot go to stdout", ctx)
        return given, None
    return None, given


def _gdp_log_file(ctx: click.Context, output: Path | None, dataset: Path | None) -> Path | None:
    """GDP's default log: logs.log in the output folder (the dataset, or the file's folder).
    None with no output named (the missing option is reported after)."""
    if not ctx.meta.get(GDP_TARGET_KEY):
        return None
    if dataset is not None:
        return dataset / "logs.log"
    return None if output is None else output.parent / "logs.log"


def _gdp_rejects(paths: list[str], output: Path | None, dataset: Path | None) -> Path | None:
    """Where --ignore_input_format_error puts skipped lines: GDP's json_error_log/ folder.

    A dataset folder appears whole at the end, so its lines wait beside it and move in after
    the manifest; as .log files the manifest check skips them, as GDP's does. None with no
    output named (the missing option is reported after).
    """
    stem = Path(paths[0]).stem if paths[0] != "-" else "stdin"
    if dataset is not None:
        return dataset.parent / f".{dataset.name}.json_error_log.{stem}.log"
    if output is None:
        return None
    folder = output.parent / "json_error_log"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{stem}.log"


def _settle_gdp_logs(ctx: click.Context, dataset: Path, rejects: Path | None) -> None:
    if rejects is None or not rejects.is_file():
        return
    folder = dataset / "json_error_log"
    folder.mkdir(exist_ok=True)
    name = rejects.name.removeprefix(f".{dataset.name}.json_error_log.")
    rejects.replace(folder / name)


def _append_log(ctx: click.Context, log_file: Path | None, summary: str) -> None:
    """Append the command line and the summary, as GDP's logs.log records a run."""
    if log_file is None:
        return
    import shlex

    from tokentype_cli import __version__

    command = shlex.join(["tokentype", *sys.argv[1:]]) if sys.argv else "tokentype"
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a", encoding="utf-8") as handle:
            handle.write(f"tokentype {__version__}: {command}\n{summary}\n\n")
    except OSError as exc:
        message(f"warning: {log_file}: cannot write the log ({exc.strerror or exc})")


def _check_output_file(ctx: click.Context, output: Path, overwrite: bool) -> None:
    """An existing -o file is replaced only with --overwrite, and only when it is HDF5."""
    gdp = bool(ctx.meta.get(GDP_TARGET_KEY))
    flag, option = ("--output_path", "--overwrite_output_path") if gdp else ("-o", "--overwrite")
    check_existing_output(ctx, output, overwrite, flag=flag, overwrite_flag=option)


def _dataset_json(report, inputs: list[str]) -> dict:
    """The build's report in the vocabulary every writing command's --json shares."""
    return {
        "inputs": inputs,
        "output": str(report.folder),
        "seq_len": report.metadata.get("max_seq_length") if report.metadata else None,
        "task": None if report.task is None else list(report.task),
        "finished": report.finished,
        "lines": report.lines,
        "splits": {
            "train": report.plan.train,
            "dev": report.plan.dev,
            "test": report.plan.test,
        },
        "files": report.files,
        "metrics": {kind: metrics.as_dict() for kind, metrics in report.metrics.items()},
        "metadata": report.metadata or None,
    }


def _dataset_summary(report) -> str:
    plan = report.plan
    if not report.finished:
        index, count = report.task
        return (
            f"{report.folder}: task {index}/{count} built {plural(len(report.files), 'file')}"
            f" of {plan.train + plan.dev} ({', '.join(report.files) or 'test splits only'});"
            " run --finish once every task is done"
        )
    lines = [
        f"{report.folder}: {plural(report.lines, *_source(report.units))} into {plan.train} train,"
        f" {plan.dev} dev and {plan.test} test files"
    ]
    for kind, metrics in report.metrics.items():
        sizes = [rows for name, rows in report.files.items() if name.startswith(kind + "_")]
        data = metrics.as_dict()
        types = ", ".join(f"{name} {count:,}" for name, count in data["tokens_by_type"].items())
        lines.append(
            f"  {kind}: {plural(metrics.rows, 'row')} ({min(sizes):,}-{max(sizes):,} per file),"
            f" {plural(metrics.articles, 'article')}; tokens: {types}"
        )
    return "\n".join(lines)


def _source(units: tuple[str, str]) -> tuple[str, str]:
    """An input record and many as a summary's first line names them: "input" before rows, as
    the same summary counts the output's rows."""
    one, many = units
    return (f"input {one}", f"input {many}") if one == "row" else units


def _tokenize_summary(
    m: dict,
    output: Path,
    rejects: Path | None,
    declined: str | None,
    units: tuple[str, str] = ("line", "lines"),
) -> str:
    """`units`: an input record and many (options.input_units)."""
    one, many = units
    source = _source(units)
    types = m["tokens_by_type"]
    lines = [
        f"{output}: {plural(m['rows'], 'row')} x {m['max_seq_length']:,} tokens"
        f" from {plural(m['lines'], *source)}"
        f" ({plural(m['articles'], 'article')}, {plural(m['pairs'], 'pair')})",
        "  tokens: " + ", ".join(f"{name} {count:,}" for name, count in types.items()),
        f"  packing efficiency {m['packing_efficiency']:.1%} (non-padding share of the rows)",
        f"  encoder {m['encoder']}" + (f" ({declined})" if declined else ""),
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
    dropped = m["articles_dropped"]
    if dropped["too_long"] or dropped["prompt_only_row"]:
        lines.append(
            f"  {plural(dropped['too_long'] + dropped['prompt_only_row'], 'article')} dropped:"
            f" {dropped['too_long']:,} longer than a row, {dropped['prompt_only_row']:,} in rows"
            " without completion tokens"
        )
    if m["lines_dropped"]:
        lines.append(
            f"  {plural(m['lines_dropped'], one, many)} put no token in the output (blank, prompt"
            " only, or every article dropped; --ledger says which and why)"
        )
    if m["articles_prompt_cut_away"]:
        lines.append(
            f"  warning: {plural(m['articles_prompt_cut_away'], 'article')} lost their whole"
            " prompt to truncate_left (answers without their question); raise"
            " --max-seq-length or use truncate_right"
        )
    if m["special_tokens_in_text"]:
        lines.append(
            f"  warning: {plural(m['special_tokens_in_text'], one, many)} write a special token in"
            f" their text (first: {m['special_tokens_first']}), which became that token;"
            " --split-special-tokens encodes it as plain text"
        )
    if m["pairs_skipped_prompt_only"]:
        lines.append(
            f"  {plural(m['pairs_skipped_prompt_only'], 'pair')} with an empty completion skipped"
            " (--keep-prompt-only-sequences keeps them)"
        )
    if m["conversations"]:
        lines.append(
            f"  {plural(m['conversations'], 'conversation')}:"
            f" {plural(m['seams'], 'seam')} in {m['conversations_with_seams']:,},"
            f" {m['conversations_with_open_turns']:,} with a learned turn that never learns to"
            f" end, {m['conversations_learning_nothing']:,} learning nothing"
        )
        lines.append(
            f"  {plural(m['assistant_turns'], 'learned assistant turn')}"
            f" ({m['tool_call_turns']:,} calling tools),"
            f" {plural(m['reasoning_tokens'], 'learned token')} of reasoning"
        )
    if m["lines_rejected"]:
        bad = plural(m["lines_rejected"], f"bad {one}", f"bad {many}")
        lines.append(f"  {bad} written to {rejects}")
    return "\n".join(lines)
