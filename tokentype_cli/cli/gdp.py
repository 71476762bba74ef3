"""`tokentype pipeline` and `tokentype data_prep`: generative_data_prep's two command lines, run
by `tokenize` with its output routed as GDP routes it."""

from __future__ import annotations

import click

from tokentype_cli.cli.base import cli, gdp_spelling, shown_names
from tokentype_cli.cli.tokenize import GDP_TARGET_KEY, TokenizeCommand, tokenize_command

# GDP flags spelled as tokentype spells them: listed in GDP's help too.
GDP_PLAIN_NAMES = ("--shuffle", "--silent")


def _gdp_name(name: str) -> bool:
    return gdp_spelling(name) or name in GDP_PLAIN_NAMES


class GdpCommand(TokenizeCommand):
    """tokenize under one of GDP's command names: --output_path is a dataset folder (pipeline)
    or one HDF5 file (data_prep); --help lists the options by GDP's spellings."""

    def __init__(self, *args, target: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.target = target

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[GDP_TARGET_KEY] = self.target
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """GDP's flags by GDP's spellings; tokenize --help lists the rest."""
        params = [
            param
            for param in self.get_params(ctx)
            if isinstance(param, click.Option) and any(_gdp_name(n) for n in param.opts)
        ]
        records = []
        with shown_names(params, _gdp_name):
            for param in params:
                hidden, param.hidden = param.hidden, False
                try:
                    records.append(param.get_help_record(ctx))
                finally:
                    param.hidden = hidden
        with formatter.section("GDP's options"):
            formatter.write_dl([record for record in records if record])
        with formatter.section("Also"):
            formatter.write_text(
                "-h, --help and every option of `tokentype tokenize --help`, by its own name."
            )


PIPELINE_HELP = """Build a dataset folder from GDP's `pipeline` command line.

The command lines of generative_data_prep run with only the program name changed: `python -m
generative_data_prep pipeline --input_path=... --output_path=DIR ...` becomes `tokentype pipeline
--input_path=... --output_path=DIR ...`, which is `tokentype tokenize INPUT --dataset DIR ...`.
An existing empty DIR is taken; logs.log in DIR records the run (after the manifest, as GDP
writes it) unless --log_file_path names another file. Every tokenize option is accepted too; the
README's "Coming from generative_data_prep" lists the differences and why.

Example:

\b
    tokentype pipeline --input_path=data.jsonl --output_path=out --pretrained_tokenizer=openai-community/gpt2 --max_seq_length=1024 --input_packing_config='greedy::drop' --shuffle=on_RAM
    tokentype pipeline --input_path=data.jsonl --output_path=out --pretrained_tokenizer=gpt2/ --json | jq .metadata
"""

DATA_PREP_HELP = """Tokenize into one HDF5 file from GDP's `data_prep` command line.

`python -m generative_data_prep data_prep --input_path=... --output_path=FILE.hdf5 ...` becomes
`tokentype data_prep --input_path=... --output_path=FILE.hdf5 ...`, which is `tokentype tokenize
INPUT -o FILE.hdf5 ...`; logs.log beside FILE records the run unless --log_file_path names
another file. Every tokenize option is accepted too.

Example:

\b
    tokentype data_prep --input_path=data.jsonl --output_path=out/data.hdf5 --pretrained_tokenizer=openai-community/gpt2 --max_seq_length=1024
    tokentype data_prep --input_path=data.jsonl --output_path=data.hdf5 --pretrained_tokenizer=gpt2/ --json | jq .rows
"""

for _name, _target, _help in (
    ("pipeline", "dataset", PIPELINE_HELP),
    ("data_prep", "output", DATA_PREP_HELP),
):
    cli.add_command(
        GdpCommand(
            _name,
            target=_target,
            params=tokenize_command.params,
            callback=tokenize_command.callback,
            help=_help,
            short_help=_help.splitlines()[0].rstrip("."),
            context_settings=tokenize_command.context_settings,
        )
    )
