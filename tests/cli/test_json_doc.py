"""Every command's --json output against docs/json.md: no field the doc does not list, every
`always` field present, every value of the stated type, and every listed field seen."""

from __future__ import annotations

import json
import re

import h5py
import pytest

from tests.helpers import (
    CODON_MODEL_CONFIG,
    CODON_VOCAB,
    EXAMPLE1_IDS,
    EXAMPLE2_IDS,
    EXAMPLE2_TYPES,
    ROOT,
    invoke,
    write_shard,
)

DOC = ROOT / "docs" / "json.md"
_ROW = re.compile(r"^\| `([^`]+)` \| `([^`]+)` \| ([^|]+) \|")


def documented() -> dict[str, dict[str, tuple[str, bool]]]:
    """{section: {field: (type, always)}} from the tables of docs/json.md."""
    sections: dict[str, dict[str, tuple[str, bool]]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), {})
            continue
        match = _ROW.match(line)
        if match and current is not None:
            field, kind, when = match.groups()
            assert field not in current, f"{field} listed twice"
            current[field] = (kind, when.strip() == "always")
    return sections


def _split_or(kind: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(kind):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and kind.startswith(" or ", i):
            parts.append(kind[start:i])
            start = i + 4
    return [*parts, kind[start:]]


def matches(value, kind: str) -> bool:
    for alternative in _split_or(kind):
        alternative = alternative.strip()
        if alternative.endswith("[]"):
            element = alternative[:-2].strip("()")
            if isinstance(value, list) and all(matches(v, element) for v in value):
                return True
            continue
        if {
            "any": True,
            "null": value is None,
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "string": isinstance(value, str),
            "object": isinstance(value, dict),
            "map": isinstance(value, dict),
        }[alternative]:
            return True
    return False


# Fields every writing command adds after its own (docs/json.md's tokenize section ends in them).
WRITING_FIELDS = ("inputs", "output", "seq_len", "token_types")


def map_values(section: str, sections: dict) -> dict[str, dict[str, tuple[str, bool]]]:
    """{map field: the table each of its values follows}, for maps whose values another section
    lists: the dataset build's `metrics` hold, per split, the tokenize section's metrics."""
    if section != "tokenize --dataset":
        return {}
    metrics = {
        field: spec
        for field, spec in sections["tokenize"].items()
        if field.split(".")[0] not in WRITING_FIELDS
    }
    return {"metrics": metrics}


def check(
    output: dict,
    fields: dict[str, tuple[str, bool]],
    seen: set[str],
    values_of: dict[str, dict[str, tuple[str, bool]]] | None = None,
) -> None:
    """Walk `output`, matching each key to a documented field (exact name first, then {name}).

    A `map` is walked too: each value against `values_of[field]` where another table lists it,
    else against the map's own `{key}` rows where the doc has them. `any` is not walked.
    """
    values_of = values_of or {}

    def children(parent: str) -> dict[str, str]:
        prefix = f"{parent}." if parent else ""
        return {
            field[len(prefix) :]: field
            for field in fields
            if field.startswith(prefix) and "." not in field[len(prefix) :]
        }

    def walk(value: dict, parent: str) -> None:
        listed = children(parent)
        for key, item in value.items():
            field = listed.get(key)
            if field is None:
                wildcards = [name for name in listed if name.startswith("{")]
                assert wildcards, f"{parent + '.' if parent else ''}{key} is not in {DOC.name}"
                field = listed[wildcards[0]]
            kind, _ = fields[field]
            assert matches(item, kind), f"{field} = {item!r} is not {kind}"
            seen.add(field)
            if kind.split()[0] == "any":
                continue
            if kind.split()[0] == "map":
                if isinstance(item, dict) and field in values_of:
                    for element in item.values():
                        assert isinstance(element, dict), f"{field} holds {element!r}"
                        check(element, values_of[field], set())
                    continue
                if not children(field):
                    continue
            if isinstance(item, dict):
                walk(item, field)
            elif isinstance(item, list):
                for element in item:
                    if isinstance(element, dict):
                        walk(element, f"{field}[]")
        for name, field in listed.items():
            if fields[field][1] and not name.startswith("{"):
                assert name in value, f"{field} is missing"

    walk(output, "")


@pytest.fixture
def shards(tmp_path):
    """A typed shard written by tokenize (provenance), one with a type outside 0..3, an untyped
    one, and a folder of two."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "GAA GGC GCC", "completion": "ATG ATC GAC"}\n')
    tokenized = tmp_path / "tok.h5"
    result = invoke("tokenize", source, "-o", tokenized, "--tokenizer", CODON_VOCAB,
                    "--max-seq-length", 11, "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    with h5py.File(tokenized, "r+") as f:
        f["input_ids"].attrs["note"] = "any attribute"
    odd = write_shard(tmp_path / "odd.h5", [EXAMPLE2_IDS], [[0, 0, 0, 1, 1, 9, 3, 2, 2, 2, 2]])
    untyped = write_shard(tmp_path / "untyped.h5", [EXAMPLE1_IDS])
    folder = tmp_path / "folder"
    folder.mkdir()
    write_shard(folder / "a.h5", [EXAMPLE2_IDS], [EXAMPLE2_TYPES])
    write_shard(folder / "b.h5", [EXAMPLE2_IDS] * 2, [EXAMPLE2_TYPES] * 2)
    return {"source": source, "tokenized": tokenized, "odd": odd, "untyped": untyped,
            "folder": folder, "tmp": tmp_path}  # fmt: skip


def outputs(section: str, s: dict) -> list[dict]:
    """Runs of the command that together give every field the doc lists for it."""
    tmp = s["tmp"]
    runs = {
        "validate": [
            ["validate", s["odd"], s["untyped"], s["folder"], tmp / "missing.h5", "--json"],
        ],
        "inspect": [
            ["inspect", s["tokenized"], "--json", "--prompt-loss-weight", 0.1],
            ["inspect", s["odd"], "--json"],
            ["inspect", s["untyped"], "--json", "--prompt-loss-weight", 0],
            ["inspect", s["folder"], "--json", "--prompt-loss-weight", 0],
            ["inspect", s["tokenized"], s["odd"], "--json", "--prompt-loss-weight", 1],
        ],
        "inspect --rows": [
            ["inspect", s["tokenized"], "--rows", "0", "--json", "--tokenizer", CODON_VOCAB],
            ["inspect", s["untyped"], "--rows", "0", "--json"],
            ["inspect", s["folder"], "--rows", "0", "--json", "--tokenizer", CODON_VOCAB],
            ["inspect", s["tokenized"], s["untyped"], "--rows", "-1", "--json"],
        ],
        "assign-types": [
            ["assign-types", s["untyped"], "--tokenizer", CODON_VOCAB, "--rule",
             "until:ATG=prompt", "--rule", "token:GAC=padding", "-o", tmp / "assigned.h5",
             "--json"],
            ["assign-types", s["tokenized"], "--from-existing", "--rule", "span:0:1=completion",
             "--dry-run", "--tokenizer", CODON_VOCAB, "--json"],
            ["assign-types", s["tokenized"], "--overwrite", "--sep", 2, "--dry-run", "--json"],
        ],
        "add-types": [
            ["add-types", s["untyped"], "-", "-o", tmp / "added.h5", "--json"],
        ],
        "tokenize": [
            ["tokenize", s["source"], "-o", tmp / "t1.h5", "--tokenizer", CODON_VOCAB,
             "--max-seq-length", 8, "--json"],
            ["tokenize", "-", "-o", tmp / "t2.h5", "--tokenizer", CODON_VOCAB, "--no-types",
             "--json"],
        ],
        "tokenize --dataset": [
            ["tokenize", s["source"], s["source"], s["source"], "--dataset", tmp / "ds",
             "--tokenizer", CODON_VOCAB, "--model-config", CODON_MODEL_CONFIG,
             "--max-seq-length", 8, "--train-files", 2, "--dev-files", 1, "--json"],
            ["tokenize", s["source"], s["source"], s["source"], "--dataset", tmp / "ds2",
             "--tokenizer", CODON_VOCAB, "--model-config", CODON_MODEL_CONFIG,
             "--max-seq-length", 8, "--train-files", 2, "--task", "0/2", "--json"],
        ],
        "diff": [
            ["diff", s["tokenized"], s["tokenized"], "--json"],
            ["diff", s["odd"], s["tokenized"], "--json", "--rows", 3],
            ["diff", s["untyped"], s["tokenized"], "--json", "--rows", 2],
            ["diff", s["folder"], s["folder"], "--json"],
        ],
        "repack": [
            ["repack", s["tokenized"], "-o", tmp / "repacked.h5", "--json"],
            ["repack", s["tokenized"], "--json"],
        ],
    }[section]  # fmt: skip
    stdin = {
        "add-types": "[0, 0, 0, 1, 1, 1, 3]\n",
        "tokenize": '{"prompt": "GAA", "completion": "ATG"}\n',
    }.get(section)
    produced = []
    for args in runs:
        result = invoke(*args, input=stdin)
        assert result.exit_code in (0, 1), (args, result.output)
        assert result.stderr == "", (args, result.stderr)
        produced.append(json.loads(result.stdout))
    return produced


SECTIONS = ["validate", "inspect", "inspect --rows", "assign-types", "add-types", "tokenize",
            "tokenize --dataset", "diff", "repack"]  # fmt: skip


GDP_COMMANDS = {"data_prep": "tokenize", "pipeline": "tokenize --dataset"}


def test_the_doc_has_a_section_for_every_json_output():
    from tokentype_cli.cli import cli

    assert list(documented()) == SECTIONS
    with_json = sorted(
        name
        for name, command in cli.commands.items()
        if any(p.name == "as_json" for p in command.params) and name not in GDP_COMMANDS
    )
    assert with_json == sorted({section.split()[0] for section in SECTIONS})
    # GDP's command lines print what tokenize prints, and its sections say so.
    text = DOC.read_text()
    for name, section in GDP_COMMANDS.items():
        body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        assert f"`tokentype {name} ... --json`" in body


@pytest.mark.parametrize("section", SECTIONS)
def test_output_matches_the_doc(section, shards):
    sections = documented()
    fields = sections[section]
    seen: set[str] = set()
    for output in outputs(section, shards):
        check(output, fields, seen, map_values(section, sections))
    assert sorted(set(fields) - seen) == [], "listed in docs/json.md but never produced"


def test_no_output_embeds_json_in_a_string(shards):
    def strings(value):
        if isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, str):
            yield value

    for section in SECTIONS:
        for output in outputs(section, shards):
            for text in strings(output):
                assert not text.lstrip().startswith(("{", "[")), (section, text)


def test_the_checker_catches_what_it_should():
    fields = {"a": ("integer", True), "b": ("object", False), "b.{name}": ("string or null", True)}
    check({"a": 1, "b": {"x": "y", "z": None}}, fields, set())
    for bad, why in (
        ({"a": 1, "c": 2}, "c is not in"),
        ({"b": {}}, "a is missing"),
        ({"a": "1"}, "is not integer"),
        ({"a": 1, "b": {"x": 3}}, "is not string or null"),
    ):
        with pytest.raises(AssertionError, match=why):
            check(bad, fields, set())
    assert matches([1, None], "(integer or null)[]") and not matches([1.5], "integer[]")
    # A map's values are checked against the table that lists them, or its own {key} rows.
    per_split = {"rows": ("integer", True)}
    maps = {"m": ("map", True), "n": ("map", True), "n.{file}": ("integer", True)}
    check({"m": {"train": {"rows": 3}}, "n": {"a.h5": 1}}, maps, set(), {"m": per_split})
    for bad, why in (
        ({"m": {"train": {"rows": 3, "odd": 1}}, "n": {}}, "odd is not in"),
        ({"m": {"train": {}}, "n": {}}, "rows is missing"),
        ({"m": {"train": {"rows": "3"}}, "n": {}}, "is not integer"),
        ({"m": {}, "n": {"a.h5": "1"}}, "is not integer"),
    ):
        with pytest.raises(AssertionError, match=why):
            check(bad, maps, set(), {"m": per_split})


def test_the_same_thing_has_the_same_name_and_value_across_commands(tmp_path):
    """A shard written by tokenize, retyped by assign-types and add-types: each writer's
    token_types, rows, seq_len and output are what inspect then reads from the file."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "GAA GGC", "completion": "ATG ATC GAC"}\n')
    shard = tmp_path / "s.h5"

    def run(*args, input=None):
        result = invoke(*args, "--json", input=input)
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        return json.loads(result.stdout)

    def read_back(path):
        return run("inspect", path)

    written = run("tokenize", "-", source, "-o", shard, "--tokenizer", CODON_VOCAB,
                  "--max-seq-length", 8, input='{"prompt": "GCC", "completion": "ATG"}\n')  # fmt: skip
    assert written["inputs"] == ["-", str(source)] and written["output"] == str(shard)
    summary = read_back(shard)
    assert written["token_types"] == summary["token_types"]
    assert (written["rows"], written["seq_len"]) == (summary["rows"], summary["seq_len"])
    assert {k: v["count"] for k, v in written["token_types"].items()} == written["tokens_by_type"]

    assigned = run("assign-types", shard, "--tokenizer", CODON_VOCAB, "--overwrite",
                   "--rule", "until:ATG=prompt", "-o", tmp_path / "a.h5")  # fmt: skip
    assert (assigned["path"], assigned["output"]) == (str(shard), str(tmp_path / "a.h5"))
    assert assigned["token_types_existing"] == summary["token_types"]
    assert assigned["token_types"] == read_back(tmp_path / "a.h5")["token_types"]

    rows = summary["rows"]
    types = "\n".join(json.dumps([1] * 7 + [3]) for _ in range(rows)) + "\n"
    added = run("add-types", shard, "-", "--overwrite", input=types)
    assert added["path"] == added["output"] == str(shard) and added["source"] == "-"
    after = read_back(shard)
    assert added["token_types"] == after["token_types"]
    assert added["token_types"]["separator"] == {"count": rows, "share": 1 / 8}
    assert (added["rows"], added["seq_len"]) == (after["rows"], after["seq_len"])
