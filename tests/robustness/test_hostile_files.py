"""Hostile and damaged files, in process: data loss, reading outside the input, tracebacks.

Every hostile file is built here with h5py under tmp_path. Each case checks the exit code, one
line naming the file (and object or row), no traceback, the inputs byte-identical and no
temporaries left. Cases that need a process of their own (memory, signals, locks, closed
streams) are in test_processes.py.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.helpers import (
    CODON_VOCAB,
    EXAMPLE1_IDS,
    EXAMPLE1_TYPES,
    assert_one_line_error,
    digest,
    invoke,
    write_shard,
)
from tokentype_cli import interrupts
from tokentype_cli.errors import OptionError, ShardError, TokenizerError
from tokentype_cli.schema.names import INPUT_IDS, TOKEN_TYPE_IDS
from tokentype_cli.schema.read import MAX_READ_BYTES, iter_row_chunks
from tokentype_cli.schema.temporary import remove_stale_temporaries, temporary_name
from tokentype_cli.schema.write import atomic_path, check_target
from tokentype_cli.tokenizer_loader import load_tokenizer

TYPES = np.array([EXAMPLE1_TYPES], np.int32)


def snapshot(folder):
    """Every file under `folder` with its digest: compared before and after a failing run."""
    return {
        str(p.relative_to(folder)): digest(p) if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def shard(tmp_path):
    """Example 1 (input_ids only) and its types as .npy, in tmp_path."""
    path = write_shard(tmp_path / "a.h5", [EXAMPLE1_IDS])
    np.save(tmp_path / "t.npy", TYPES)
    return path


# --- data loss: -o naming one of the command's own inputs ------------------------------------------


@pytest.mark.parametrize(
    ("args", "output", "what"),
    [
        (["add-types", "a.h5", "t.npy"], "t.npy", "the types source"),
        (["add-types", "a.h5", "b.h5"], "b.h5", "the types source"),
        (["add-types", "a.h5", "b.h5:token_type_ids"], "b.h5", "the types source"),
        (["add-types", "a.h5", "t.npy"], "a.h5", "the input"),
        (["add-types", "a.h5", "t.npy"], "hardlink.npy", "the types source"),
        (["assign-types", "a.h5", "--rules", "r.toml"], "r.toml", "the rules file"),
        (["assign-types", "a.h5", "--tokenizer", "vocab.json"], "vocab.json", "the tokenizer"),
        (["assign-types", "a.h5", "--sep", "2"], "./sub/../a.h5", "the input"),
        (["repack", "a.h5"], "a.h5", "the input"),
        (["repack", "a.h5"], "./sub/../a.h5", "the input"),
        (["repack", "a.h5"], "hardlink.h5", "the input"),
    ],
)
def test_output_naming_an_input_is_refused(shard, tmp_path, monkeypatch, args, output, what):
    tmp_path.joinpath("sub").mkdir()
    write_shard(tmp_path / "b.h5", [EXAMPLE1_IDS], TYPES)
    tmp_path.joinpath("r.toml").write_text('sep = 2\n[[rules]]\nuntil = [10]\ntype = "prompt"\n')
    tmp_path.joinpath("vocab.json").write_bytes(CODON_VOCAB.read_bytes())
    os.link(tmp_path / "t.npy", tmp_path / "hardlink.npy")  # same inode, other name
    os.link(tmp_path / "a.h5", tmp_path / "hardlink.h5")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = invoke(*args, "-o", output)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr
    assert f"-o {Path(output)} is {what}" in result.stderr
    assert snapshot(tmp_path) == before


# --- data loss: the user block ------------------------------------------------------------------


@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize("command", ["add-types", "assign-types"])
def test_a_user_block_is_kept(tmp_path, command, in_place):
    path = tmp_path / "a.h5"
    header = b"#!/bin/sh\n# a user block: a header some tools write before the HDF5 data\n"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["input_ids"] = np.array([EXAMPLE1_IDS], np.int32)
    with open(path, "r+b") as f:
        f.write(header)
    np.save(tmp_path / "t.npy", TYPES)
    args = ["t.npy"] if command == "add-types" else ["--sep", "2"]
    out = path if in_place else tmp_path / "out.h5"
    result = invoke(
        command, path, *[tmp_path / a if a.endswith(".npy") else a for a in args],
        *([] if in_place else ["-o", out]),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[: len(header)] == header
    expected = EXAMPLE1_TYPES if command == "add-types" else [1, 1, 1, 1, 1, 1, 3]
    with h5py.File(out, "r") as f:
        assert f.userblock_size == 512
        assert f[TOKEN_TYPE_IDS][:].tolist() == [expected]
        assert f[INPUT_IDS][:].tolist() == [EXAMPLE1_IDS]


# --- data loss: -o that is not a regular file ----------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "link-to-char-device", "folder"])
def test_output_that_is_not_a_regular_file_is_refused(shard, tmp_path, kind):
    out = tmp_path / "out.h5"
    if kind == "fifo":
        os.mkfifo(out)
        needle = "is a FIFO (named pipe), not a regular file"
    elif kind == "link-to-char-device":
        out.symlink_to(os.devnull)  # the rename would replace the link, never the device
        needle = "is a character device, not a regular file"
    else:
        out.mkdir()
        needle = "is a directory"  # click's own check
    # A bad invocation however it is found: click refuses a folder while parsing, the others are
    # found before the write.
    code = 2
    before = snapshot(tmp_path)
    for args in (["add-types", shard, tmp_path / "t.npy"], ["assign-types", shard, "--sep", "2"]):
        result = invoke(*args, "-o", out)
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.stderr
        assert needle in result.stderr, result.stderr
        assert snapshot(tmp_path) == before
    assert check_target(tmp_path / "new.h5") is None
    with pytest.raises(OptionError, match="character device"):
        check_target(os.devnull)


@pytest.mark.parametrize("command", ["validate", "inspect", "add-types", "assign-types"])
def test_a_shard_that_is_a_fifo_is_one_line_not_a_hang(tmp_path, command):
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer for ever
    np.save(tmp_path / "t.npy", TYPES)
    args = {"add-types": [tmp_path / "t.npy"], "assign-types": ["--sep", "2"]}.get(command, [])
    result = invoke(command, fifo, *args)
    assert result.exit_code == 1
    assert "is a FIFO (named pipe), not a regular file" in result.output
    assert "Traceback" not in result.output


def test_output_inside_a_regular_file_says_so(shard, tmp_path):
    (tmp_path / "afile").write_text("x")
    before = snapshot(tmp_path)
    result = invoke("add-types", shard, tmp_path / "t.npy", "-o", tmp_path / "afile" / "t.h5")
    assert_one_line_error(result, 1, "afile is a file, not a folder")
    assert snapshot(tmp_path) == before


# --- reading outside the input: external links, soft links leaving the file, virtual datasets ----


def _outside_shards(tmp_path):
    """Files whose input_ids live elsewhere, by the way they reach out."""
    write_shard(tmp_path / "other.h5", [EXAMPLE1_IDS])
    tmp_path.joinpath("passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    files = {}
    with h5py.File(tmp_path / "external.h5", "w") as f:
        f["input_ids"] = h5py.ExternalLink("other.h5", "/input_ids")
    files["external"] = ("external.h5", "'input_ids' is an external link to other.h5")
    with h5py.File(tmp_path / "soft.h5", "w") as f:
        f["elsewhere"] = h5py.ExternalLink("other.h5", "/")
        f["input_ids"] = h5py.SoftLink("/elsewhere/input_ids")
    files["soft"] = ("soft.h5", "'elsewhere' is an external link to other.h5")
    with h5py.File(tmp_path / "system.h5", "w") as f:
        f["input_ids"] = np.array([EXAMPLE1_IDS], np.int32)
        f["extra"] = h5py.ExternalLink(str(tmp_path / "passwd"), "/x")
    files["system"] = ("system.h5", "'extra' is an external link to")
    layout = h5py.VirtualLayout((1, 7), np.int32)
    layout[:] = h5py.VirtualSource("other.h5", "input_ids", shape=(1, 7))
    with h5py.File(tmp_path / "virtual.h5", "w") as f:
        f.create_virtual_dataset("input_ids", layout, fillvalue=0)
    files["virtual"] = ("virtual.h5", "'input_ids' is a virtual dataset reading other.h5")
    return files


@pytest.mark.parametrize("kind", ["external", "soft", "system", "virtual"])
def test_data_outside_the_file_is_refused_by_default(tmp_path, kind):
    name, needle = _outside_shards(tmp_path)[kind]
    path = tmp_path / name
    np.save(tmp_path / "t.npy", TYPES)
    before = snapshot(tmp_path)
    for args in (
        ["inspect", path],
        ["inspect", path, "--rows", "0"],
        ["assign-types", path, "--sep", "2", "-o", tmp_path / "out.h5"],
        ["assign-types", path, "--sep", "2"],
        ["add-types", path, tmp_path / "t.npy"],
        ["add-types", tmp_path / "other.h5", path],  # a source reaching out
    ):
        result = invoke(*args)
        assert_one_line_error(result, 1, needle, "--allow-external")
        assert snapshot(tmp_path) == before
    result = invoke("validate", path)
    assert result.exit_code == 1
    assert "outside-data" in result.stdout and needle in result.stdout
    data = json.loads(invoke("validate", path, "--json").stdout)
    assert "outside-data" in [f["check"] for f in data["files"][0]["findings"]]


@pytest.mark.parametrize("kind", ["external", "soft", "virtual"])
def test_allowed_outside_data_is_copied_in_so_the_output_stands_alone(tmp_path, kind):
    name, _ = _outside_shards(tmp_path)[kind]
    (tmp_path / "elsewhere").mkdir()
    out = tmp_path / "elsewhere" / "typed.h5"
    result = invoke("assign-types", tmp_path / name, "--sep", "2", "-o", out, "--allow-external")
    assert result.exit_code == 0, result.output
    assert invoke("validate", tmp_path / name, "--allow-external").exit_code == 0
    (tmp_path / "other.h5").unlink()  # the output must not need it
    with h5py.File(out, "r") as f:
        assert f[INPUT_IDS][:].tolist() == [EXAMPLE1_IDS]
        assert not f[INPUT_IDS].is_virtual
        assert all(not isinstance(f.get(k, getlink=True), h5py.ExternalLink) for k in f)
    result = invoke("validate", out)
    assert result.exit_code == 0, result.stdout


def test_allowed_link_to_a_file_that_is_not_hdf5_is_one_line(tmp_path):
    tmp_path.joinpath("passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["input_ids"] = h5py.ExternalLink(str(tmp_path / "passwd"), "/input_ids")
    np.save(tmp_path / "t.npy", TYPES)
    before = snapshot(tmp_path)
    for args in (
        ["assign-types", path, "--sep", "2"],
        ["add-types", path, tmp_path / "t.npy"],
        ["inspect", path],
    ):
        assert_one_line_error(invoke(*args, "--allow-external"), 1, str(path))
        assert snapshot(tmp_path) == before


def test_a_virtual_dataset_whose_source_is_missing_never_passes_on_fill_values(tmp_path):
    _outside_shards(tmp_path)
    path = tmp_path / "virtual.h5"
    (tmp_path / "other.h5").rename(tmp_path / "moved.h5")
    result = invoke("validate", path, "--allow-external")
    assert result.exit_code == 1
    assert "virtual-source-missing" in result.stdout
    assert "reads other.h5:input_ids, which does not exist" in result.stdout
    before = snapshot(tmp_path)
    for args in (["inspect", path], ["assign-types", path, "--sep", "2"]):
        assert_one_line_error(invoke(*args, "--allow-external"), 1, "'input_ids'", "other.h5")
    assert snapshot(tmp_path) == before


# --- damaged metadata and link loops in the writing commands --------------------------------------


def _flip_object_header(tmp_path):
    """A shard whose input_ids object header fails its checksum (one flipped byte)."""
    path = write_shard(tmp_path / "a.h5", [EXAMPLE1_IDS])
    data = bytearray(path.read_bytes())
    headers = [i for i in range(len(data)) if data[i : i + 4] == b"OHDR"]
    data[headers[-1] + 8] ^= 0xFF  # the last header is the dataset's, after the root group's
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("damage", ["checksum", "soft-loop", "input-loop", "dangling"])
@pytest.mark.parametrize("command", ["add-types", "assign-types", "inspect", "validate"])
def test_damaged_metadata_is_one_line(tmp_path, damage, command):
    if damage == "checksum":
        path = _flip_object_header(tmp_path)
    else:
        path = tmp_path / "a.h5"
        with h5py.File(path, "w") as f:
            f["input_ids"] = np.array([EXAMPLE1_IDS], np.int32)
            if damage == "soft-loop":
                f["loop_a"] = h5py.SoftLink("/loop_b")
                f["loop_b"] = h5py.SoftLink("/loop_a")
            elif damage == "dangling":
                f["gone"] = h5py.SoftLink("/nowhere")
            else:
                del f["input_ids"]
                f["input_ids"] = h5py.SoftLink("/input_ids")
    np.save(tmp_path / "t.npy", TYPES)
    before = snapshot(tmp_path)
    args = {
        "add-types": [path, tmp_path / "t.npy"],
        "assign-types": [path, "--sep", "2"],
        "inspect": [path],
        "validate": [path],
    }[command]
    result = invoke(command, *args)
    assert snapshot(tmp_path) == before
    if command == "validate":
        # What the other commands refuse as damaged is an error finding here, not exit 0.
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert "error    unreadable:" in result.stdout
        return
    assert_one_line_error(result, 1, str(path))


# --- tracebacks: deep nesting, ids outside the tokenizer, odd attributes, .npy layouts ----------


DEEP = 100_000


@pytest.mark.parametrize("suffix", [".json", ".toml", ""])
def test_deeply_nested_rules_are_one_line(shard, tmp_path, suffix):
    rules = tmp_path / f"rules{suffix}"
    text = "[" * DEEP + "]" * DEEP
    rules.write_text(f"rules = {text}\n" if suffix == ".toml" else '{"rules": ' + text + "}")
    result = invoke("assign-types", shard, "--rules", rules)
    assert_one_line_error(result, 1, str(rules), "nested too deeply")


def test_deeply_nested_tokenizer_and_jsonl_are_one_line(shard, tmp_path):
    tokenizer = tmp_path / "tok.json"
    tokenizer.write_text('{"model": ' + "[" * DEEP + "]" * DEEP + "}")
    with pytest.raises(TokenizerError, match="nested too deeply"):
        load_tokenizer(tokenizer)
    tokenizer.write_text("[" * DEEP + "]" * DEEP)
    result = invoke("validate", shard, "--tokenizer", tokenizer)
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr and "nested too deeply" in result.stderr
    before = snapshot(tmp_path)
    result = invoke("add-types", shard, "-", input="[" * DEEP + "]" * DEEP + "\n")
    assert_one_line_error(result, 1, "<stdin>:1", "nested too deeply")
    assert snapshot(tmp_path) == before


def test_a_vocabulary_id_beyond_int32_is_a_tokenizer_error(tmp_path):
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"a": 0, "b": 10**20}))
    with pytest.raises(TokenizerError, match="'b' has id 100000000000000000000"):
        load_tokenizer(vocab)


def _bpe_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "ab": 2}, merges=[("a", "b")]))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return path


@pytest.mark.parametrize("tokenizer", ["word-level", "bpe"])
def test_ids_outside_the_tokenizer_show_as_bad_ids(tmp_path, tokenizer):
    ids = [[-5, 2, 70, 2**31 - 1, 2, 1, 2]]
    path = write_shard(tmp_path / "a.h5", ids, [[1, 1, 1, 1, 3, 1, 3]])
    vocab = CODON_VOCAB if tokenizer == "word-level" else _bpe_tokenizer(tmp_path)
    result = invoke("inspect", path, "--rows", "0", "--tokenizer", vocab)
    assert result.exit_code == 0, result.output
    assert "<bad id -5>" in result.stdout and f"<bad id {2**31 - 1}>" in result.stdout
    before = snapshot(tmp_path)
    result = invoke("assign-types", path, "--tokenizer", vocab, "--sep", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "<bad id -5>" in result.stdout
    result = invoke("assign-types", path, "--tokenizer", vocab, "--sep", "2", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert "<bad id -5>" in json.loads(result.stdout)["preview"][0]["tokens"]
    assert snapshot(tmp_path) == before


def test_empty_reference_and_large_attributes_in_inspect_json(tmp_path):
    path = write_shard(tmp_path / "a.h5", [EXAMPLE1_IDS])
    with h5py.File(path, "r+") as f:
        dataset = f[INPUT_IDS]
        dataset.attrs["empty"] = h5py.Empty("f8")
        dataset.attrs["reference"] = dataset.ref
        dataset.attrs["references"] = np.array([dataset.ref, f.ref], dtype=h5py.ref_dtype)
        dataset.attrs["large"] = np.zeros(1 << 20, np.uint8)
    for args in (["--json"], []):
        result = invoke("inspect", path, *args)
        assert result.exit_code == 0, result.output
        assert len(result.stdout) < 10_000
    attrs = json.loads(invoke("inspect", path, "--json").stdout)["datasets"][INPUT_IDS]["attrs"]
    assert attrs["empty"] is None
    assert attrs["reference"] == "<HDF5 object reference>"
    assert attrs["references"] == ["<HDF5 object reference>"] * 2
    assert attrs["large"]["bytes"] == 1 << 20 and attrs["large"]["shape"] == [1 << 20]


@pytest.mark.parametrize("layout", ["fortran", "3-d", "c"])
def test_truncated_or_odd_npy_sources_are_one_line(tmp_path, layout):
    path = write_shard(tmp_path / "three.h5", [EXAMPLE1_IDS] * 3)
    rows = np.array([EXAMPLE1_TYPES] * 3, np.int32)
    source = tmp_path / "t.npy"
    if layout == "fortran":
        np.save(source, np.asfortranarray(rows))  # 3 x 7: stored column by column
    elif layout == "3-d":
        np.save(source, rows.reshape(3, 7, 1))
    else:
        np.save(source, rows)
    header = np.lib.format.read_array_header_1_0
    with open(source, "rb") as f:
        np.lib.format.read_magic(f)
        assert header(f)[1] == (layout == "fortran")
    source.write_bytes(source.read_bytes()[:-5])
    before = snapshot(tmp_path)
    result = invoke("add-types", path, source)
    assert_one_line_error(result, 1, str(source), "truncated")
    assert snapshot(tmp_path) == before


def test_a_fortran_order_npy_is_read_by_rows(shard, tmp_path):
    rows = np.array([EXAMPLE1_TYPES, [1, 1, 1, 1, 1, 1, 3], [0] * 6 + [3]], np.int32)
    path = write_shard(tmp_path / "three.h5", [EXAMPLE1_IDS] * 3)
    np.save(tmp_path / "f.npy", np.asfortranarray(rows))
    np.save(tmp_path / "wrong.npy", rows.reshape(3, 7, 1))
    assert invoke("add-types", path, tmp_path / "f.npy").exit_code == 0
    with h5py.File(path) as f:
        assert f[TOKEN_TYPE_IDS][:].tolist() == rows.tolist()
    result = invoke("add-types", path, tmp_path / "wrong.npy", "--overwrite")
    assert_one_line_error(result, 1, "shape (3, 7, 1) differs")


# --- messages --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "value"), [("<u4", 2**31), ("<i8", 2**40), ("<i8", -(2**40))])
def test_ids_beyond_int32_are_an_error_in_validate(tmp_path, dtype, value):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        ids = np.array([EXAMPLE1_IDS], dtype)
        ids[0, 3] = value
        f.create_dataset("input_ids", data=ids, maxshape=(None, 7), compression="gzip")
    result = invoke("validate", path)
    assert result.exit_code == 1
    assert "id-beyond-int32: 'input_ids' values beyond int32" in result.stdout
    assert f"{value} at row 0, column 3" in result.stdout


def test_max_seq_length_is_bounded_where_it_is_accepted(shard, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "GAA", "completion": "ATG"}\n')
    for args in (
        ["validate", shard],
        ["tokenize", source, "-o", tmp_path / "o.h5", "--tokenizer", CODON_VOCAB],
    ):
        result = invoke(*args, "--max-seq-length", 10**9)
        assert result.exit_code == 2
        assert "1,000,000,000 tokens per row is more than the 1,048,576" in result.stderr
    assert not (tmp_path / "o.h5").exists()


# --- the mechanisms: stale temporaries, the interruption flag, a full disk --------------------------


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now names no process
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ours = temporary_name(tmp_path / "a.h5")
        assert f"-{os.getpid()}-" in ours.name and ours.name.startswith(".a.h5.tokentype-")

        def owned_by(pid, name=ours.name):
            return tmp_path / name.replace(f"-{os.getpid()}-", f"-{pid}-")

        stale_file = owned_by(gone.pid)
        stale_folder = owned_by(gone.pid, ours.name.replace(".tmp", "0.tmp"))
        live = owned_by(alive.pid)
        other_host = owned_by(gone.pid, ours.name.replace(".tokentype-", ".tokentype-elsewhere"))
        stale_file.write_bytes(b"left by a SIGKILLed run")
        stale_folder.mkdir()
        (stale_folder / "types.npy").write_bytes(b"x")
        for path in (ours, live, other_host, tmp_path / ".a.h5.12345.tmp"):
            path.write_bytes(b"not stale")
        shard = write_shard(tmp_path / "s.h5", [EXAMPLE1_IDS])  # any write into the folder
        assert shard.exists()
        assert not stale_file.exists() and not stale_folder.exists()
        for path in (ours, live, other_host, tmp_path / ".a.h5.12345.tmp"):
            assert path.exists(), path
        assert remove_stale_temporaries(tmp_path) == []
    finally:
        alive.kill()
        alive.wait()


def test_a_swallowed_signal_still_stops_before_the_rename(shard, tmp_path):
    # The handler's exception can be lost (raised inside a callback Python ignores); the flag it
    # set stops every loop and the rename.
    before = snapshot(tmp_path)
    interrupts.note(signal.SIGTERM)
    try:
        with (
            pytest.raises(interrupts.Interrupted) as caught,
            atomic_path(tmp_path / "out.h5") as temporary,
        ):
            temporary.write_bytes(b"complete")
        assert caught.value.code == 143
        with h5py.File(shard) as f, pytest.raises(interrupts.Interrupted):
            next(iter_row_chunks([f[INPUT_IDS]]))
        result = invoke("add-types", shard, tmp_path / "t.npy")
        assert result.exit_code == 143
        assert result.stderr.strip().splitlines() == [
            "Aborted: SIGTERM received; outputs were left as they were."
        ]
    finally:
        interrupts.reset()
    assert snapshot(tmp_path) == before


def test_a_signal_turned_into_another_error_by_c_code_is_still_one_line(
    shard, tmp_path, monkeypatch
):
    # The handler raised inside h5py's type-conversion callback, which made it a TypeError
    # ("Operation not defined for data type class"): that was a traceback, seen once in CI.
    from tokentype_cli.schema import write

    def interrupted_in_c(*args, **kwargs):
        interrupts.note(signal.SIGTERM)
        raise TypeError("Operation not defined for data type class")

    monkeypatch.setattr(write, "create_rows_dataset", interrupted_in_c)
    before = snapshot(tmp_path)
    try:
        result = invoke("add-types", shard, tmp_path / "t.npy")
    finally:
        interrupts.reset()
    assert result.exit_code == 143
    assert result.stderr.strip().splitlines() == [
        "Aborted: SIGTERM received; outputs were left as they were."
    ]
    assert snapshot(tmp_path) == before


def test_a_full_disk_names_the_output_not_the_input(shard, tmp_path, monkeypatch):
    import tokentype_cli.schema.write as schema_write

    before = snapshot(tmp_path)
    real = schema_write.RowAppender.flush

    def full(self):
        if self.pending:
            raise OSError(
                "Can't write data (file write failed: errno = 28, error message = 'No space"
                " left on device')"
            )
        return real(self)

    monkeypatch.setattr(schema_write.RowAppender, "flush", full)
    result = invoke("add-types", shard, tmp_path / "t.npy")
    assert_one_line_error(result, 1, f"{shard}: cannot be written: the disk is full")
    assert "damaged" not in result.stderr
    assert snapshot(tmp_path) == before
    with (
        pytest.raises(ShardError, match=r"out\.h5: cannot be written: the disk is full"),
        atomic_path(tmp_path / "out.h5"),
    ):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert snapshot(tmp_path) == before


def test_reads_are_bounded_whatever_the_chunking(tmp_path, monkeypatch):
    import tokentype_cli.schema.read as schema

    path = tmp_path / "tall.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("input_ids", data=np.arange(4096 * 64, dtype="<i4").reshape(4096, 64),
                         chunks=(4096, 1))  # fmt: skip
    monkeypatch.setattr(schema, "MAX_READ_BYTES", 16 * 1024)
    monkeypatch.setattr(schema, "MAX_CHUNKS_PER_READ", 16)
    reads = []
    original = h5py.Dataset.read_direct

    def spy(self, dest, source_sel=None, dest_sel=None):
        reads.append(source_sel)
        return original(self, dest, source_sel, dest_sel)

    monkeypatch.setattr(h5py.Dataset, "read_direct", spy)
    with h5py.File(path) as f:
        dataset = f[INPUT_IDS]
        seen = 0
        for first, (block,) in iter_row_chunks([dataset], rows_per_step=1 << 20):
            assert block.nbytes <= 16 * 1024
            assert block.tolist() == dataset[first : first + len(block)].tolist()
            seen += len(block)
    assert seen == 4096
    # Each read touched at most 16 one-column chunks.
    assert reads and all(s[1].stop - s[1].start <= 16 for s in reads)
    assert MAX_READ_BYTES == 1 << 24
