"""The package's shape: no import loops, commands in folders of their own, a light start-up.

These read the source with `ast` (every import, at module level or inside a function), so a loop
hidden in a function-level import fails here too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tokentype_cli"
HEAVY = ("numpy", "h5py", "yaml", "jinja2")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for each `import` / `from ... import` of a tokentype_cli module."""
    found = []
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return [(m, names) for m, names in found if m.split(".")[0] == "tokentype_cli"]


def graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (a name that is a submodule counts as one)."""
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for module, names in imports(path):
            targets = {f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES}
            if len(targets) < len(names) or not names:
                targets.add(module)
            # A package's __init__ runs before its modules: every __init__ here is only a
            # docstring, so importing a.b is an edge to a.b alone.
            edges[name] |= {t for t in targets if t in MODULES and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_a_loop_hidden_in_a_function():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_loops():
    assert cycles(graph()) == []


def test_no_private_name_is_imported_across_modules():
    crossing = [
        f"{name}: from {module} import {imported}"
        for name, path in MODULES.items()
        for module, names in imports(path)
        for imported in names
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert crossing == []


def test_only_the_cli_package_imports_click():
    importers = sorted(
        name
        for name, path in MODULES.items()
        if any(
            isinstance(node, (ast.Import, ast.ImportFrom))
            and any(
                (getattr(node, "module", None) or alias.name).split(".")[0] == "click"
                for alias in node.names
            )
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert importers and all(name.startswith("tokentype_cli.cli") for name in importers)


def test_every_command_lives_in_a_package_named_after_it():
    from tokentype_cli.cli import cli

    # repack rewrites a shard into the schema's storage: the schema package owns it.
    homes = {"repack": "schema"}
    # GDP's two command lines are tokenize under GDP's names: one cli module for both.
    gdp = {"pipeline": "dataset", "data_prep": "tokenize"}
    for command in cli.commands:
        package = homes.get(command, gdp.get(command, command.replace("-", "_")))
        if command == "assign-types":
            package = "rules"  # the rules and the command that applies them
        module = "gdp" if command in gdp else command.replace("-", "_")
        assert (PACKAGE / package / "__init__.py").is_file(), command
        assert (PACKAGE / "cli" / f"{module}.py").is_file(), command


def test_every_package_init_is_only_a_docstring():
    # So importing one module of a package never drags in its siblings (start-up stays light).
    for path in PACKAGE.rglob("__init__.py"):
        if path.parent in (PACKAGE, PACKAGE / "cli"):
            continue
        body = ast.parse(path.read_text(encoding="utf-8")).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), path


STARTUP = """
import json, sys
from tokentype_cli.cli import main
sys.argv = ["tokentype", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["-V"],
        ["tokenize", "--help"],
        ["validate", "--help"],
        ["inspect", "--help"],
        ["diff", "--help"],
        ["assign-types", "--help"],
        ["add-types", "--help"],
        ["repack", "--help"],
        ["pipeline", "--help"],
        ["data_prep", "--help"],
    ],
)
def test_start_up_imports_nothing_heavy(argv):
    result = subprocess.run(
        [sys.executable, "-c", STARTUP.format(heavy=HEAVY), json.dumps(argv)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []


def test_tab_completion_imports_nothing_heavy():
    env = {
        "_TOKENTYPE_COMPLETE": "bash_complete",
        "COMP_WORDS": "tokentype tok",
        "COMP_CWORD": "1",
    }
    code = (
        "import os, sys, json\n"
        "from tokentype_cli.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.stderr)\n"
    )
    import os

    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    assert "tokenize" in result.stdout
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
