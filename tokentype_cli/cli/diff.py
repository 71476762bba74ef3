"""`tokentype diff`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tokentype_cli.cli.base import (
    cli,
    color_option,
    emit_json,
    json_option,
    progress_bar,
    prompt_loss_weight_option,
    tokenizer_option,
)
from tokentype_cli.report.options import IGNORABLE

if TYPE_CHECKING:
    from tokentype_cli.tokenizer_loader import LoadedTokenizer


def _ignore(ctx: click.Context, param: click.Parameter, value: str | None) -> frozenset[str]:
    names = frozenset(part.strip() for part in (value or "").split(",") if part.strip())
    unknown = names - set(IGNORABLE)
    if unknown:
        raise click.BadParameter(
            f"{', '.join(sorted(unknown))}: use {' and/or '.join(IGNORABLE)}, comma-separated",
            ctx,
            param,
        )
    return names


@cli.command("diff")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@prompt_loss_weight_option(help_extra="Weighs the learned totals (0 when not given).")
@click.option(
    "--ignore",
    default=None,
    metavar="WHAT",
    callback=_ignore,
    help="Accept these differences (comma-separated): "
    + "; ".join(f"{name}: {why}" for name, why in IGNORABLE.items())
    + ".",
)
@click.option(
    "--rows",
    "show_rows",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Show up to N changed rows token by token, A above B, the changed tokens marked.",
)
@tokenizer_option(help_extra="Decodes the tokens of --rows (ids are shown without one).")
@color_option
@json_option
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print nothing, not even the report or --json: only the exit code tells (0 the same,"
    " 1 different, 2 cannot compare).",
)
@click.pass_context
def diff_command(
    ctx: click.Context,
    a: Path,
    b: Path,
    prompt_loss_weight: float | None,
    ignore: frozenset[str],
    show_rows: int,
    tokenizer: LoadedTokenizer | None,
    color: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Compare what two builds teach: rows matched by content, then their token types.

    A and B are two shards, or two folders whose *.h5 / *.hdf5 files pair up by relative name.
    Rows are matched by their input_ids wherever they sit, so a reshuffled or rebalanced build
    still compares; within matched rows every token's type is compared. The report gives rows,
    tokens by type and the learned weight of each build, rows only in A or only in B, and a
    from -> to matrix of the tokens whose type changed. Exit 0 when both teach the same thing,
    1 when they differ, 2 when they cannot be compared (a file missing or unreadable, a bad
    invocation), as diff(1) does.

    Example:

    \b
        tokentype diff old.h5 new.h5 --rows 3 --tokenizer gpt2/
        tokentype diff build-v1/ build-v2/ --ignore order || echo "the masks changed"
        tokentype diff old/ new/ --json | jq '.type_changes'
    """
    from tokentype_cli.diff.compare import DiffOptions, diff_builds, format_diff, format_shown

    options = DiffOptions(
        prompt_loss_weight=prompt_loss_weight or 0.0, ignore=ignore, show_rows=show_rows
    )
    from tokentype_cli.errors import OptionError, TokentypeError

    try:
        with progress_bar(None, "tok", "diff", quiet) as advance:
            result = diff_builds(a, b, options, progress=advance)
    except OptionError:
        raise
    except TokentypeError as exc:
        # diff(1): trouble is 2, so `diff a b || echo changed` never mistakes it for a change.
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(2)
    # -q prints nothing (as validate -q): the exit status says whether the builds differ.
    if as_json and not quiet:
        emit_json(result.as_dict())
    elif not quiet:
        click.echo(format_diff(result), nl=False)
        if result.shown:
            click.echo("")
            click.echo(
                format_shown(result, tokenizer=tokenizer, color=color),
                nl=False,
                color=color or None,
            )
    if result.differences:
        ctx.exit(1)
