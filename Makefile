# Two commands: `make evaluate` and `make test`. Each creates .venv when missing and installs the package.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: without the pin a resolver may pull a multi-GB CUDA build onto a CPU machine.
TORCH ?= torch==2.13.0
export MLFLOW_TRACKING_URI ?= sqlite:///mlruns/mlflow.db

# Default evaluation: the offline demo (real SmolVLM-256M architecture, random weights, 8 real COCO
# images). A real study: make evaluate EVAL_ARGS="--weights pretrained --n-samples 500 --data-dir /data/coco"
DATA_DIR ?= ../shared/coco_val2017_mini
EVAL_ARGS ?= --weights random --n-samples 8 --data-dir $(DATA_DIR)
QUANT ?= fp16

.PHONY: evaluate test lint clean-venv

$(BIN)/.installed: pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -r requirements-lock.txt -e ".[dev]"
	touch $@

evaluate: $(BIN)/.installed
	$(BIN)/vlm-quant evaluate --quant $(QUANT) $(EVAL_ARGS)

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check vlm_quant entrypoints tests

clean-venv:
	rm -rf $(VENV)
