"""Command-line interface: the only package that imports click.

Each command parses options, calls the library, turns library errors into click errors (exit 1)
and formats output. Data goes to stdout; progress and messages go to stderr. `base` holds the
group and the shared options; each command lives in a module of its own.

Each command imports its library module when it runs, so `--help` and every other command start
without loading what they do not use (the tokenizer stack, the rule engine). Option choices come
from light modules, which stay the one place spelling them.
"""

from tokentype_cli.cli import (  # noqa: F401
    add_types,
    assign_types,
    diff,
    gdp,
    inspect,
    repack,
    tokenize,
    validate,
)
from tokentype_cli.cli.base import cli, exit_on_signals, main, use_color

__all__ = ["cli", "exit_on_signals", "main", "use_color"]
