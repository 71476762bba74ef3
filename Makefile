# Two set-up commands on a fresh machine: `make demo` and `make test`. Both create (or reuse) the
# virtual environment in .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make test` also installs the test-only oracles (transformers, no torch) and the optional
# sentencepiece encoder, whose tests skip without it; `make demo` does not.
TEST_STAMP := $(VENV)/.installed-oracles
# Wheels whose tokenizer files the tests convert (Llama-3/4's tiktoken files, Mistral's tekken):
# downloaded, never installed, as installing them would move numpy in the test environment.
ORACLE_WHEELS := $(VENV)/oracle-wheels
DEMO := demo_out

.PHONY: install demo test lint format bench bench-full clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,parquet]'
	touch $@

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,parquet,oracles,sentencepiece]'
	$(BIN)/python -m pip download --quiet --no-deps --dest $(ORACLE_WHEELS) \
		'llama-models>=0.3' 'mistral_common>=1.5'
	touch $@

install: $(STAMP)

# One worker per core; worksteal keeps the long subprocess tests from queuing behind one
# worker. PYTEST_ARGS narrows a run (`make test PYTEST_ARGS=tests/cli`). pytest's exit 5 (no
# test collected) fails with a sentence saying so: a run that tested nothing must not pass.
PYTEST_ARGS ?=
test: $(TEST_STAMP)
	@status=0; TOKENTYPE_ORACLE_WHEELS=$(ORACLE_WHEELS) \
		$(BIN)/python -m pytest -q -n auto --dist worksteal $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then \
		echo "make test: pytest collected no tests (exit 5); check testpaths and PYTEST_ARGS" >&2; \
	fi; \
	exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" PYTHON="$(CURDIR)/$(BIN)/python" bash sample_data/demo.sh $(DEMO)

# Not tests: each prints a table of throughput and peak RSS next to plain h5py / a floor.
# `make bench` gives the headline ratios at small sizes in a few minutes; `make bench-full` runs
# every benchmark at its own sizes. Both remove what they wrote (benchmarks/run.py). The
# comparison with Hugging Face datasets runs where datasets is installed (`.[compare]`).
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

bench-full: $(STAMP)
	$(BIN)/python benchmarks/run.py --full

clean:
	rm -rf $(DEMO) benchmarks/out .pytest_cache .ruff_cache .hypothesis
