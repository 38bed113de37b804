# otlake: `make demo` and `make test` do all the set-up they need.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export PYRIGHT_PYTHON_IGNORE_WARNINGS := 1
export UV_LINK_MODE := copy

.PHONY: install train-env demo test bench lint clean

install: .venv/.installed

.venv/.installed: pyproject.toml uv.lock $(wildcard native/*.c)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

# LLM Foundry, torch 2.7.0 and the transformers it pins: a uv project of its own (envs/train), never in .venv
train-env: envs/train/.venv/.installed

envs/train/.venv/.installed: envs/train/pyproject.toml envs/train/uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	cd envs/train && $(UV) sync --frozen
	@touch $@

demo: install
	$(UV) run --frozen otlake demo

# the LLM Foundry runs (tests/test_train.py) take both cores: they run after the rest, in one process, so
# they never starve the local LM server's tests of CPU
test: install train-env
	$(UV) run --frozen --group hf --group lm pytest -rs -n 2 --dist loadfile --ignore=tests/test_train.py
	$(UV) run --frozen --group hf --group lm pytest -rs tests/test_train.py

bench: install train-env
	$(UV) run --frozen --group lm python -m bench.run

lint: install
	$(UV) run --frozen ruff check .

# README's CLI reference, between its cog markers, from the click commands (otlake/cli_reference.py);
# tests/test_cli_reference.py fails while it is out of date
.PHONY: readme
readme: install
	$(UV) run --frozen cog -r README.md

clean:
	rm -rf .venv envs/train/.venv otlake-data bench-data .pytest_cache
