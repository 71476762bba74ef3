"""generative_data_prep's command lines run with only the program name changed: `pipeline` and
`data_prep`, GDP's flags, model ids from the Hugging Face cache, special tokens, logs."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tests.helpers import CODON_VOCAB, CONFORMANCE, assert_one_line_error, hub_cache, invoke, jsonl
from tokentype_cli.cli import cli
from tokentype_cli.tokenizer_loader import load_tokenizer

GPT2 = CONFORMANCE / "tokenizer-gpt2"
GT_INPUT = CONFORMANCE / "generative_tuning" / "input.jsonl"

# The command lines of GDP's README (and advanced_usage.md), as written there. They are parsed,
# never run: _as_tokentype drops GDP's `python3 -m generative_data_prep` for tokentype's CLI.
GDP_README = [
    "python3 -m generative_data_prep pipeline --input_path=./tests/examples/generative_tuning/"
    "example_generative_tuning_data.jsonl --output_path=./tests/examples/generative_tuning/"
    "pipelined_generative_tuning --pretrained_tokenizer=openai-community/gpt2"
    " --max_seq_length=1024 --shuffle=on_RAM --input_packing_config=single::drop",
    "python3 -m generative_data_prep pipeline --input_path=./tests/examples/pretraining/"
    "example_pretraining_data.jsonl --output_path=./tests/examples/pretraining/"
    "pipelined_pretraining --pretrained_tokenizer=openai-community/gpt2 --max_seq_length=1024"
    " --shuffle=on_RAM --input_packing_config=full",
    "python3 -m generative_data_prep pipeline --input_path=./tests/examples/dialogue/"
    "example_dialogue_data.jsonl --output_path=./tests/examples/dialogue/pipelined_dialogue"
    " --pretrained_tokenizer=openai-community/gpt2 --max_seq_length=1024 --shuffle=on_RAM"
    " --input_packing_config=single::truncate_right",
    "python3 -m generative_data_prep pipeline --input_path=./tests/examples/metaICL/"
    "example_metaICL_data.jsonl --output_path=./tests/examples/metaICL/pipelined_metaICL"
    " --pretrained_tokenizer=openai-community/gpt2 --max_seq_length=1024 --shuffle=on_RAM"
    " --input_packing_config=greedy::drop --packing_boundary=prompt_completion_pair"
    " --attention_boundary=jsonl",
    "python3 -m generative_data_prep pipeline --input_path=data.jsonl --output_path=out"
    " --pretrained_tokenizer=openai-community/gpt2 --max_seq_length=1024"
    " --input_packing_config='greedy::drop' --shuffle=on_RAM",
    "python3 -m generative_data_prep data_prep --input_path=data.jsonl"
    " --output_path=out_file/data.hdf5 --pretrained_tokenizer=openai-community/gpt2"
    " --max_seq_length=1024",
]


@pytest.fixture
def gpt2_cached(tmp_path, monkeypatch):
    """openai-community/gpt2 in a Hugging Face cache of the test's own, offline."""
    if not GPT2.is_dir() or not GT_INPUT.is_file():
        pytest.skip(f"GPT-2 tokenizer or GDP's example not present under {CONFORMANCE}")
    cache = tmp_path / "hf" / "hub"
    hub_cache(cache, "openai-community/gpt2", GPT2)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _as_tokentype(line: str) -> list[str]:
    argv = shlex.split(line)
    assert argv[:3] == ["python3", "-m", "generative_data_prep"]
    return argv[3:]


@pytest.mark.parametrize("line", GDP_README, ids=lambda line: line.split("--output_path=")[1][:30])
def test_gdp_readme_command_lines_run_with_only_the_program_name_changed(
    line, gpt2_cached, tmp_path, monkeypatch
):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = _as_tokentype(line)
    options = dict(arg.removeprefix("--").split("=", 1) for arg in argv[1:] if "=" in arg)
    source = Path(options["input_path"])
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(GT_INPUT.read_bytes())
    output = Path(options["output_path"])
    output.parent.mkdir(parents=True, exist_ok=True)
    result = invoke(*argv)
    assert result.exit_code == 0, result.output
    log = (output if argv[0] == "pipeline" else output.parent) / "logs.log"
    assert "tokentype" in log.read_text() and "rows" in log.read_text()
    if argv[0] == "pipeline":
        metadata = yaml.safe_load((output / "metadata.yaml").read_text())
        assert metadata["max_seq_length"] == 1024
        assert (output / "tokenizer" / "tokenizer.json").is_file()
        checked = invoke("validate", output, "-q")
        assert checked.exit_code == 0, checked.output
    else:
        with h5py.File(output) as handle:
            assert handle["input_ids"].shape[1] == 1024


def test_data_prep_gives_what_tokenize_gives(gpt2_cached, tmp_path):
    gdp = invoke(
        "data_prep", f"--input_path={GT_INPUT}", f"--output_path={tmp_path / 'a.hdf5'}",
        "--pretrained_tokenizer", "openai-community/gpt2", "--max_seq_length", "1024",
        "--input_packing_config", "single::drop", "--silent",
    )  # fmt: skip
    assert gdp.exit_code == 0, gdp.output
    assert gdp.stderr == ""
    own = invoke(
        "tokenize", GT_INPUT, "-o", tmp_path / "b.hdf5", "--tokenizer", GPT2,
        "--max-seq-length", "1024", "--packing", "single::drop", "-q",
    )  # fmt: skip
    assert own.exit_code == 0, own.output
    with h5py.File(tmp_path / "a.hdf5") as a, h5py.File(tmp_path / "b.hdf5") as b:
        for name in ("input_ids", "token_type_ids"):
            assert np.array_equal(a[name][:], b[name][:])


def test_an_existing_output_needs_overwrite_output_path(gpt2_cached, tmp_path):
    args = [
        "data_prep", "--input_path", GT_INPUT, "--output_path", tmp_path / "a.hdf5",
        "--pretrained_tokenizer", "openai-community/gpt2", "--max_seq_length", "256", "--silent",
    ]  # fmt: skip
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    assert again.exit_code == 2
    assert "--overwrite_output_path" in again.stderr
    assert invoke(*args, "--overwrite_output_path").exit_code == 0


def test_a_file_that_is_not_hdf5_is_never_replaced(gpt2_cached, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for extra in ([], ["--overwrite"]):
        result = invoke("tokenize", GT_INPUT, "-o", notes, "--tokenizer", GPT2, *extra)
        assert result.exit_code == 2
        assert "is not an HDF5 file; it is never replaced" in result.stderr
    assert notes.read_text() == "my notes\n"


def test_an_existing_empty_output_folder_is_taken(gpt2_cached, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    args = ["--tokenizer", GPT2, "--max-seq-length", "512", "--train-files", "2", "-q"]
    assert invoke("tokenize", GT_INPUT, "--dataset", out, *args).exit_code == 0
    assert (out / "metadata.yaml").is_file()
    again = invoke("tokenize", GT_INPUT, "--dataset", out, *args)
    assert again.exit_code == 2
    assert "already exists; pass --overwrite" in again.stderr


def test_model_id_resolves_from_hf_home(tmp_path, monkeypatch):
    if not GPT2.is_dir():
        pytest.skip(f"GPT-2 tokenizer not present at {GPT2}")
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    snapshot = hub_cache(tmp_path / "home" / "hub", "gpt2", GPT2)
    loaded = load_tokenizer("gpt2")
    assert loaded.path == snapshot / "tokenizer.json"
    assert loaded.eos_id == 50256


def test_an_uncached_model_id_offline_is_one_line_naming_how_to_fetch(tmp_path):
    result = invoke(
        "tokenize", tmp_path / "in.jsonl", "-o", tmp_path / "o.h5", "--tokenizer", "acme/model-7b"
    )
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "acme/model-7b" in last and "HF_HUB_OFFLINE is set" in last
    assert "hf download acme/model-7b" in last


def test_special_tokens_dict_adds_tokens_and_tokenizer_folder_carries_them(gpt2_cached, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"prompt": "a [SEP] b", "completion": "c"}) + "\n")
    out = tmp_path / "ds"
    result = invoke(
        "pipeline", "--input_path", source, "--output_path", out,
        "--pretrained_tokenizer", "openai-community/gpt2", "--max_seq_length", "16",
        "--num_training_splits", "1", "--special_tokens_dict", "{'sep_token': '[SEP]'}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with h5py.File(out / "train_1_of_1.hdf5") as handle:
        assert 50257 in handle["input_ids"][0].tolist()
    carried = load_tokenizer(out / "tokenizer")
    assert carried.vocab["[SEP]"] == 50257
    config = json.loads((out / "tokenizer" / "tokenizer_config.json").read_text())
    assert config["sep_token"] == "[SEP]"
    assert config["added_tokens_decoder"]["50257"]["special"] is True
    assert json.loads((out / "tokenizer" / "special_tokens_map.json").read_text())["sep_token"]
    assert invoke("validate", out, "-q").exit_code == 0


def test_tokenizer_folder_carries_every_tokenizer_file(gpt2_cached, tmp_path):
    source = tmp_path / "tok"
    source.mkdir()
    for file in GPT2.iterdir():
        (source / file.name).write_bytes(file.read_bytes())
    extras = {
        "vocab.json": "{}",
        "merges.txt": "#version: 0.2\n",
        "added_tokens.json": "{}",
        "generation_config.json": "{}",
        "model.safetensors": "weights",
    }
    for name, text in extras.items():
        (source / name).write_text(text)
    out = tmp_path / "ds"
    result = invoke(
        "tokenize", GT_INPUT, "--dataset", out, "--tokenizer", source, "--max-seq-length", 256,
        "--train-files", 1, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    carried = sorted(p.name for p in (out / "tokenizer").iterdir())
    assert carried == sorted(
        [p.name for p in GPT2.iterdir()] + [n for n in extras if n != "model.safetensors"]
    )


def test_metadata_counts_mean_what_gdp_means(gpt2_cached, tmp_path):
    out = tmp_path / "ds"
    result = invoke(
        "tokenize", GT_INPUT, "--dataset", out, "--tokenizer", GPT2, "--max-seq-length", 1024,
        "--packing", "single::drop", "--train-files", 2, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metadata = yaml.safe_load((out / "metadata.yaml").read_text())
    types = np.concatenate(
        [h5py.File(out / f"train_{k}_of_2.hdf5")["token_type_ids"][:].ravel() for k in (1, 2)]
    )
    assert metadata["train_completion_tokens"] == int(((types == 1) | (types == 3)).sum())
    assert metadata["train_completion_tokens_without_separators"] == int((types == 1).sum())
    lines = len(GT_INPUT.read_text().splitlines())
    assert metadata["train_articles"] == lines  # one line too long is dropped, still counted
    assert metadata["train_packed_articles"] == lines


def test_logs_appended_after_the_manifest_do_not_fail_validate(gpt2_cached, tmp_path):
    out = tmp_path / "ds"
    args = ["--output_path", out, "--pretrained_tokenizer", "openai-community/gpt2"]
    result = invoke("pipeline", "--input_path", GT_INPUT, *args, "--num_training_splits", 2)
    assert result.exit_code == 0, result.output
    with open(out / "logs.log", "a") as log:
        log.write("GDP appends its elapsed time here\n")
    (out / "json_error_log").mkdir(exist_ok=True)
    (out / "json_error_log" / "input.log").write_text("{broken\n")
    checked = invoke("validate", out)
    assert checked.exit_code == 0, checked.output


def test_ignore_input_format_error_keeps_bad_lines_in_json_error_log(gpt2_cached, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(GT_INPUT.read_text() + "{broken\n")
    out = tmp_path / "ds"
    args = ["--output_path", out, "--pretrained_tokenizer", "openai-community/gpt2"]
    refused = invoke("pipeline", "--input_path", source, *args, "--num_training_splits", 2)
    assert refused.exit_code == 1
    result = invoke(
        "pipeline", "--input_path", source, *args, "--num_training_splits", 2,
        "--ignore_input_format_error",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "{broken" in (out / "json_error_log" / "in.log").read_text()
    assert not list(tmp_path.glob(".ds*"))
    assert invoke("validate", out, "-q").exit_code == 0


def test_no_output_path_is_a_usage_error_not_a_traceback(tmp_path):
    # The default logs.log and json_error_log/ went by an output that was never named. (Files
    # made here: without ../shared, a missing input was the error instead.)
    source = jsonl(tmp_path / "in.jsonl", {"prompt": "a", "completion": "b"})
    pipeline = invoke("pipeline", "--input_path", source, "--pretrained_tokenizer", CODON_VOCAB)
    assert_one_line_error(pipeline, 2, "Missing option")
    tokenize = invoke("tokenize", source, "--tokenizer", CODON_VOCAB, "--ignore_input_format_error")
    assert_one_line_error(tokenize, 2, "Missing option")


def test_gdp_spellings_are_hidden_from_help_and_completion():
    from click.shell_completion import ShellComplete

    text = invoke("tokenize", "--help").stdout
    assert "--max-seq-length" in text and "--max_seq_length" not in text
    assert "--pretrained_tokenizer" not in text and "_" not in "".join(
        word for word in text.split() if word.startswith("--")
    )
    complete = ShellComplete(cli, {}, "tokentype", "_TOKENTYPE_COMPLETE")
    names = [item.value for item in complete.get_completions(["tokenize"], "--")]
    assert "--max-seq-length" in names and not [n for n in names if "_" in n]
    gdp_help = invoke("pipeline", "--help").stdout
    assert "--pretrained_tokenizer" in gdp_help and "--output_path" in gdp_help
    assert "--max-seq-length" not in gdp_help


def test_a_folder_holding_files_needs_overwrite_output_path(gpt2_cached, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    args = ["pipeline", "--input_path", GT_INPUT, "--output_path", out,
            "--pretrained_tokenizer", "openai-community/gpt2", "--num_training_splits", 2]  # fmt: skip
    refused = invoke(*args)
    assert refused.exit_code == 2 and "--overwrite_output_path" in refused.stderr
    assert invoke(*args, "--overwrite_output_path", "--silent").exit_code == 0
    assert not (out / "old.txt").exists()
