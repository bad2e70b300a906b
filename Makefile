# Two commands: `make evaluate` and `make test`. Each creates .venv when missing and installs the package.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch and torchvision first, pinned as a pair (torchvision's compiled ops match one torch release; the
# fast image processors need torchvision): without the pins a resolver may pull mismatched builds.
TORCH ?= torch==2.14.1 torchvision==0.29.1
export MLFLOW_TRACKING_URI ?= sqlite:///mlruns/mlflow.db

# Default evaluation adapts to the machine and says what it chose (vlm_quant/cli/first_run.py): with the
# Hub, real SmolVLM-256M-Instruct weights (pinned revision) on 8 seeded COCO val images; without it, a
# local COCO folder (DATA_DIR, else ../shared/coco_val2017_mini) and random weights (quality meaningless).
# A real study: make evaluate EVAL_ARGS="--weights pretrained --n-samples 500 --data-dir /data/coco"
DATA_DIR ?=
EVAL_ARGS ?= --first-run $(if $(DATA_DIR),--data-dir $(DATA_DIR))
QUANT ?= fp16

.PHONY: evaluate test lint gguf clean-venv

# The lock's own torch pair is what TORCH defaults to; it is left out of the second install so that an
# override stays. llm-compressor is left out too and installed after, without its dependency pins.
$(BIN)/.installed: pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	grep -v -E '^(torch(vision)?|llmcompressor)==' requirements-lock.txt > $(VENV)/lock-without-torch.txt
	$(BIN)/pip install -q -r $(VENV)/lock-without-torch.txt -e ".[dev]"
	# llm-compressor's metadata pins an older transformers/torch/compressed-tensors: without its pins
	# (docs/ptq_methods.md); every dependency it imports is in the lock.
	grep -E '^llmcompressor==' requirements-lock.txt | xargs $(BIN)/pip install -q --no-deps
	touch $@

evaluate: $(BIN)/.installed
	$(BIN)/vlm-quant evaluate --quant $(QUANT) $(EVAL_ARGS)

# The suite, after the linter: `ruff check` (line length included) must be clean for `make test` to pass.
# Two pytest-xdist workers, each file on one worker (`--dist loadfile`: a page generated from several
# tests of one file needs them in one process; module fixtures are built once). On the 2-core machine,
# idle: 7 min 51 s for 1032 tests (was 14 min 58 s for 953 before torch's threads were shared out per
# worker in tests/conftest.py and the slowest fixtures were cut). `make test PYTEST_ARGS=` runs one process.
PYTEST_ARGS ?= -n 2 --dist loadfile
test: $(BIN)/.installed
	$(BIN)/ruff check vlm_quant entrypoints tests benchmarks tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# GGUF on llama.cpp (the gguf-* presets, docs/gguf.md): pip builds llama-cpp-python from source (cmake and a
# C++ compiler; 32 min 24 s on the 2-core VM under load) and caches the wheel it built, so a later install
# (a fresh venv, CI) takes seconds; then llama.cpp's converter, copied out of the same release's sdist.
# -DGGML_NATIVE=OFF: a library that runs on any x86-64 CPU, not only the build machine's.
gguf: $(BIN)/.installed
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install -q "llama-cpp-python==0.3.36" "diskcache==5.6.3"
	$(BIN)/python tools/install_gguf_converter.py

lint: $(BIN)/.installed
	$(BIN)/ruff check vlm_quant entrypoints tests benchmarks tools

clean-venv:
	rm -rf $(VENV)
