# Set-up and checks for castseg. `make setup` creates .venv with PyTorch from the index pip is
# configured for (on Linux, PyPI's wheel is the CUDA build, which runs on CPU too).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: setup test demo

setup: $(BIN)/castseg

$(BIN)/castseg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

test: setup
	$(BIN)/ruff check castseg tests benchmarks scripts
	$(BIN)/ruff format --check castseg tests benchmarks scripts
	$(BIN)/pytest -q

demo: setup
	$(BIN)/castseg demo
