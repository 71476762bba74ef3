"""`tokentype assign-types`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from tokentype_cli.cli.base import (
    TOKEN_TYPE,
    allow_external_option,
    cli,
    color_option,
    emit_json,
    json_option,
    message,
    output_options,
    plural,
    progress_bar,
    provenance,
    quiet_option,
    tokenizer_option,
)
from tokentype_cli.schema.names import TOKEN_TYPE_NAMES, TokenType

if TYPE_CHECKING:
    from tokentype_cli.tokenizer_loader import LoadedTokenizer


@cli.command("assign-types")
@click.argument("file", type=click.Path(dir_okay=False, readable=False, path_type=Path))
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(dir_okay=False, readable=False, allow_dash=True),
    default=None,
    help="TOML or JSON rules file (- for stdin) with sep, pad, default, from_existing and a"
    " list of rules; applied before any --rule.",
)
@click.option(
    "--rule",
    "rule_specs",
    multiple=True,
    metavar="KIND:ARGS=TYPE",
    help="A rule, repeatable, applied in order after the file's: span:A:B, token:T..., until:P...,"
    " through:P..., between:S... .. E...; TYPE is prompt, completion, padding, separator or 0..3."
    ' A pattern is text in quotes ("### Response:"), a regular expression (re:"^###"), or'
    ' tokens: bare integers are ids, bare words vocabulary tokens, tok:"a b" a token with spaces.',
)
@click.option(
    "--sep",
    "seps",
    multiple=True,
    metavar="TOKEN",
    help="Separator token (type 3, ends an article), repeatable. Default: the rules file's sep,"
    " else the --tokenizer's eos, else none.",
)
@click.option(
    "--pad",
    metavar="TOKEN",
    default=None,
    help="Padding token: its run at the end of a row is type 2. Default: the rules file's pad,"
    " else the --tokenizer's pad token, else its eos, else none.",
)
@click.option(
    "--no-sep",
    is_flag=True,
    help="No separators, not even the --tokenizer's eos: each row is one article.",
)
@click.option(
    "--no-pad",
    is_flag=True,
    help="No padding, not even the --tokenizer's pad or eos: trailing runs keep their types.",
)
@click.option(
    "--default",
    "default_type",
    type=TOKEN_TYPE,
    default=None,
    help="Type of every token no rule sets (other than separators and padding)."
    "  [default: completion]",
)
@click.option(
    "--from-existing",
    is_flag=True,
    help="Start from FILE's token_type_ids (their separators and padding stay) instead of"
    " --sep/--pad/--default; replaces them.",
)
@tokenizer_option(
    help_extra="Lets tokens be written as text; --sep defaults to its eos, --pad to its pad."
)
@output_options
@allow_external_option
@click.option(
    "--require-match",
    is_flag=True,
    help="Fail (exit 1, nothing written) if an until/through/between rule finds nothing in an"
    " article; the message names the first such row.",
)
@click.option(
    "--require-exact",
    is_flag=True,
    help="Fail (exit 1, nothing written) if a text pattern starts or ends inside a token (a seam);"
    " the message names the first such row and token.",
)
@click.option(
    "--ignore-case",
    is_flag=True,
    help="Text and re: patterns ignore case, in --rule and in the rules file (where a pattern's"
    ' own "ignore_case" wins).',
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Compute and report, print the first rows by type on stdout, write nothing.",
)
@click.option(
    "--explain",
    "explain_spec",
    metavar="KIND:ARGS[=TYPE]",
    default=None,
    help="Print where this rule matches in the first --show articles, each match between ⟦ ⟧,"
    " with the types the other rules (and this one, given a TYPE) set; write nothing.",
)
@click.option(
    "--show",
    "show_rows",
    type=click.IntRange(min=0),
    default=3,
    help="Rows --dry-run prints, or articles --explain shows.",
)
@color_option
@json_option
@quiet_option
@click.pass_context
def assign_types_command(
    ctx: click.Context,
    file: Path,
    rules_file: str | None,
    rule_specs: tuple[str, ...],
    seps: tuple[str, ...],
    pad: str | None,
    no_sep: bool,
    no_pad: bool,
    default_type: TokenType | None,
    from_existing: bool,
    tokenizer: LoadedTokenizer | None,
    output: Path | None,
    overwrite: bool,
    allow_external: bool,
    require_match: bool,
    require_exact: bool,
    ignore_case: bool,
    dry_run: bool,
    explain_spec: str | None,
    show_rows: int,
    color: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Set token_type_ids of an already-tokenized shard by rules.

    Separators (--sep) and end-of-row padding (--pad) come first; every other token starts as
    --default. A row splits into articles at separators; each article's body (without its
    separator and padding) then goes through the rules in order, a later rule overriding an
    earlier one. Separators and padding are never changed. Rules (KIND:ARGS=TYPE):

    \b
      span:A:B          body positions A..B-1, a Python slice (span::-1, span:3:)
      token:T...        every occurrence of these tokens
      until:P...        the tokens before the first occurrence of pattern P
      through:P...      the same, including the occurrence
      between:S .. E    from each S through the next E (or the end of the body)

    A quoted pattern is text, found in the article's decoded text (needs --tokenizer): a token
    partly inside what a rule selects (a seam) counts as inside, except for until. re:"..." is a
    regular expression, tok:WORD a vocabulary token. The rules-file keys, quoting and worked
    examples: docs/rules.md.

    FILE is replaced atomically (an error or interruption leaves it as it was), or -o writes a
    new file. What every rule matched and the tokens per type go to stderr (stdout with --json):
    existing (the file's own types, when it has them), structure (where the rules start) and
    after.

    Example:

    \b
        tokentype assign-types shard.h5 --tokenizer codons.json --rule 'until:ATG=prompt'
        tokentype assign-types alpaca.h5 --tokenizer gpt2/ --overwrite \\
            --rule 'through:"### Response:"=prompt' --require-match
        tokentype assign-types alpaca.h5 --tokenizer gpt2/ --explain 'through:"### Response:"'
        tokentype assign-types shard.h5 --rules rules.toml -o typed.h5 --require-match
        tokentype assign-types chat.h5 --tokenizer tok/ --overwrite \\
            --rule 'between:"<|user|>" .. "<|assistant|>"=prompt' --dry-run --color always | less -R
        tokentype assign-types shard.h5 --sep 2 --rule 'span:2:4=0' --json | jq '.rules'
    """
    from tokentype_cli.errors import RuleError
    from tokentype_cli.inspect import shard as inspect_shard
    from tokentype_cli.report import rows as row_view
    from tokentype_cli.rules.assign import assign_types
    from tokentype_cli.rules.parse import (
        RulesConfig,
        build_structure,
        load_rules_file,
        parse_pattern_spec,
        parse_rule_spec,
        parse_token_word,
    )

    showing = dry_run or explain_spec is not None
    if not showing and ctx.get_parameter_source("show_rows") is not ParameterSource.DEFAULT:
        raise click.UsageError(
            "--show only applies with --dry-run or --explain; add --dry-run", ctx
        )
    config = (
        RulesConfig()
        if rules_file is None
        else load_rules_file(rules_file, tokenizer, ignore_case=ignore_case)
    )
    explained = None
    try:
        rules = list(config.rules)
        for number, spec in enumerate(rule_specs, 1):
            rules.append(
                parse_rule_spec(spec, f"--rule {number}", tokenizer, ignore_case=ignore_case)
            )
        if explain_spec is not None:
            explained = parse_pattern_spec(
                explain_spec, "--explain", tokenizer, ignore_case=ignore_case
            )
        sep_ids = [parse_token_word(s, tokenizer, f"--sep {s!r}") for s in seps]
        pad_id = None if pad is None else parse_token_word(pad, tokenizer, f"--pad {pad!r}")
    except RuleError as exc:
        raise click.UsageError(str(exc), ctx) from exc
    structure = build_structure(
        config,
        sep=sep_ids or None,
        pad=pad_id,
        default=default_type,
        from_existing=from_existing,
        tokenizer=tokenizer,
        no_sep=no_sep,
        no_pad=no_pad,
    )
    if explained is not None:
        _explain(file, structure, rules, explained, tokenizer, show_rows, as_json, color)
        return
    record = {
        "rules_file": rules_file,
        "rules": [rule.describe() for rule in rules],
        "sep": list(structure.sep),
        "pad": structure.pad,
        "default": int(structure.default),
        "from_existing": structure.from_existing,
        "tokenizer": None if tokenizer is None else str(tokenizer.path),
    }
    with progress_bar(None, "rows", "assign-types", quiet) as advance:
        report = assign_types(
            file,
            structure,
            rules,
            output=output,
            overwrite=overwrite,
            require_match=require_match,
            require_exact=require_exact,
            dry_run=dry_run,
            preview_rows=show_rows if dry_run else 0,
            provenance=provenance(ctx, **record),
            progress=advance,
            allow_external=allow_external,
            inputs={
                "the rules file": rules_file,
                "the tokenizer": None if tokenizer is None else tokenizer.path,
            },
            tokenizer=tokenizer,
        )
    preview = []
    # assign_types sets both or neither.
    if report.preview_ids is not None and report.preview_types is not None:
        preview = list(enumerate(zip(report.preview_ids, report.preview_types, strict=True)))
    if as_json:
        data = report.as_dict()
        if dry_run:
            data["preview"] = [
                inspect_shard.row_as_dict(row, ids, types, tokenizer)
                for row, (ids, types) in preview
            ]
        emit_json(data)
        return
    for row, (ids, types) in preview:
        click.echo(inspect_shard.format_row_header(row, report.rows, types))
        click.echo(
            row_view.format_row(ids, types, tokenizer=tokenizer, color=color),
            color=color or None,
        )
    message(_assign_types_summary(report), quiet)


def _explain(
    file, structure, rules, explained, tokenizer, articles: int, as_json: bool, color: bool
) -> None:
    """--explain: the first articles with the rule's matches marked, on stdout; nothing written."""
    from tokentype_cli.rules.assign import explain, format_explanation

    rule, token_type = explained
    matches = explain(
        file,
        structure,
        rules,
        rule,
        apply=token_type is not None,
        articles=articles,
        tokenizer=tokenizer,
    )
    if as_json:
        emit_json(
            {
                "path": str(file),
                "rule": rule.describe() if token_type is not None else rule.text,
                "articles": [match.as_dict(tokenizer) for match in matches],
            }
        )
        return
    for match in matches:
        click.echo(format_explanation(match, tokenizer=tokenizer, color=color), color=color or None)


def _assign_types_summary(report) -> str:
    """Structure, what each rule did, tokens per type: existing, structure, after."""

    if not report.written:
        outcome = "dry run, nothing written"
    elif report.output is None or report.output == report.path:
        outcome = f"written to {report.path} in place"
    else:
        outcome = f"written to {report.output}"
    structure = report.structure
    if structure.from_existing:
        start = "structure: separators and padding of the existing token_type_ids"
    else:
        sep = " ".join(str(t) for t in structure.sep) or "none"
        pad = "none" if structure.pad is None else str(structure.pad)
        start = f"structure: sep {sep}, pad {pad}, default {TOKEN_TYPE_NAMES[structure.default]}"
    lines = [
        f"{report.path}: {plural(report.rows, 'row')} x {plural(report.seq_len, 'token')},"
        f" {plural(report.articles, 'article')} ({outcome})",
        f"  {start}",
    ]
    if not report.rules:
        lines.append("  no rules: types come from the structure alone")
    width = max((len(r.rule.describe()) for r in report.rules), default=0)
    for number, rule_report in enumerate(report.rules, 1):
        not_matched = report.articles - rule_report.matched
        line = (
            f"  rule {number}  {rule_report.rule.describe():<{width}}  matched"
            f" {rule_report.matched:,} of {plural(report.articles, 'article')}, {not_matched:,} not;"
            f" set {plural(rule_report.tokens_set, 'token')}"
        )
        if not_matched and rule_report.first_unmatched_row is not None:
            line += f" (first unmatched row {rule_report.first_unmatched_row})"
        if rule_report.rule.uses_text:
            line += f"; {plural(rule_report.seams, 'seam')}"
            if rule_report.first_seam is not None:
                line += f" (first in row {rule_report.first_seam[0]})"
        lines.append(line)
    names = list(TOKEN_TYPE_NAMES.values())
    counted = [report.before, report.after] + ([] if report.existing is None else [report.existing])
    columns = [
        max(len(name), *(len(str(int(c[i]))) for c in counted)) for i, name in enumerate(names)
    ]
    # Each row says what it counts: the file's own types, the structure the rules start from
    # (with --from-existing that is the existing types), the result.
    table = [] if report.existing is None else [("existing", report.existing)]
    if not structure.from_existing:
        table.append(("structure", report.before))
    table.append(("after", report.after))
    label_width = max(len("tokens"), *(len(label) for label, _ in table))
    lines.append(
        f"  {'tokens':<{label_width}}  "
        + "  ".join(f"{n:>{w}}" for n, w in zip(names, columns, strict=True))
    )
    for label, counts in table:
        values = "  ".join(f"{int(c):>{w}}" for c, w in zip(counts, columns, strict=True))
        lines.append(f"  {label:<{label_width}}  {values}")
    return "\n".join(lines)
