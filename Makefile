# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
# torch is pinned to its CPU build here (a bare `pip install torch` pulls a multi-GB CUDA build);
# on a CUDA machine: make setup TORCH=torch
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint typecheck bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test,serve,ray]"
	touch $(STAMP)

demo: setup
	@mkdir -p out
	$(VENV)/bin/livedream video samples/box.mp4 -o out/box_dream.mp4
	$(VENV)/bin/livedream image samples/fruits.jpg -o out/fruits_dream.jpg
	@echo "demo: wrote out/box_dream.mp4 (dreamed video, sound kept) and out/fruits_dream.jpg"

# Everything: lint, types, the floors, every test (a few minutes on 2 cores).
test: setup lint typecheck
	$(PY) -m pytest -q

# The unit tests alone (no end-to-end runs of commands, servers, browsers): under a minute.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check livedream tests scripts

typecheck: setup
	$(VENV)/bin/mypy

bench: setup
	$(VENV)/bin/livedream bench --json out/bench.json --markdown out/bench.md --plots docs

clean:
	rm -rf out .pytest_cache .ruff_cache .mypy_cache
