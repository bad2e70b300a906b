# Two commands: `make evaluate` and `make test`. Each creates .venv when missing and installs the package.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: without the pin a resolver may pull a multi-GB CUDA build onto a CPU machine.
TORCH ?= torch==2.13.0
export MLFLOW_TRACKING_URI ?= sqlite:///mlruns/mlflow.db

# Default evaluation adapts to the machine and says what it chose (vlm_quant/cli/first_run.py): with the
# Hub, real SmolVLM-256M-Instruct weights (pinned revision) on 8 seeded COCO val images; without it, a
# local COCO folder (DATA_DIR, else ../shared/coco_val2017_mini) and random weights (quality meaningless).
# A real study: make evaluate EVAL_ARGS="--weights pretrained --n-samples 500 --data-dir /data/coco"
DATA_DIR ?=
EVAL_ARGS ?= --first-run $(if $(DATA_DIR),--data-dir $(DATA_DIR))
QUANT ?= fp16

.PHONY: evaluate test lint clean-venv

$(BIN)/.installed: pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -r requirements-lock.txt -e ".[dev]"
	touch $@

evaluate: $(BIN)/.installed
	$(BIN)/vlm-quant evaluate --quant $(QUANT) $(EVAL_ARGS)

# The suite, after the linter: `ruff check` (line length included) must be clean for `make test` to pass.
test: $(BIN)/.installed
	$(BIN)/ruff check vlm_quant entrypoints tests benchmarks tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check vlm_quant entrypoints tests benchmarks tools

clean-venv:
	rm -rf $(VENV)
