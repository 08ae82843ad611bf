# Set-up and checks for castseg. `make setup` creates .venv with PyTorch from the index pip is
# configured for (on Linux, PyPI's wheel is the CUDA build, which runs on CPU too).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: setup test test-floor demo

setup: $(BIN)/castseg

$(BIN)/castseg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

test: setup
	$(BIN)/ruff check castseg tests benchmarks scripts
	$(BIN)/ruff format --check castseg tests benchmarks scripts
	$(BIN)/lint-imports
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-floor

# The model and checkpoint tests again under the lowest transformers that pyproject.toml allows,
# in a venv of their own (`setup` installs the newest).
FLOOR_VENV ?= .venv-floor
TRANSFORMERS_FLOOR = $(shell sed -n 's/.*"transformers>=\([0-9.]*\)".*/\1/p' pyproject.toml)

$(FLOOR_VENV)/bin/castseg: pyproject.toml
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/pip install --quiet "torch==2.13.0"
	$(FLOOR_VENV)/bin/pip install --quiet -e ".[dev]" "transformers==$(TRANSFORMERS_FLOOR)"
	touch $@

test-floor: $(FLOOR_VENV)/bin/castseg
	$(FLOOR_VENV)/bin/pytest -q tests/models \
		tests/test_demo_teacher.py

demo: setup
	$(BIN)/castseg demo
