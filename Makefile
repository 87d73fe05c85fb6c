# netspec: `make demo` sets up and runs the main job; `make test` sets up and runs every check.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# The torch build this machine keeps on disk; elsewhere `make TORCH=torch` takes PyPI's latest.
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed

.PHONY: setup system editors demo test lint typecheck pytest bench update-fixtures clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# Chromium and Graphviz for the page's browser tests and graph.svg (apt-get when missing).
system:
	bash .ci/system-packages

# The main job: check LeNet, train it on MNIST (fetched, verified and cached on first use),
# export it to ONNX (verified against PyTorch), and classify a few test digits with it.
demo: $(STAMP)
	$(BIN)/netspec compile specs/lenet.net
	rm -rf runs/demo
	$(BIN)/netspec train specs/lenet.net --name demo
	$(BIN)/netspec run runs/demo/model.onnx runs/demo/samples

# ruff (style, and banned-api: torch and onnx only where they belong), then the import
# contracts in pyproject.toml ([tool.importlinter]: one-way layers, no torch in the runtime).
lint: $(STAMP)
	$(BIN)/ruff check netspec cli.py tests benchmarks
	$(BIN)/ruff format --check netspec cli.py tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/netspec fmt --check specs

typecheck: $(STAMP)
	$(BIN)/mypy netspec

# The VS Code grammar's scope tests (tests/test_editors.py) run vscode-tmgrammar-test, which
# npm installs into editors/vscode/node_modules where node and npm are; elsewhere the test
# skips (and fails under CI=true).
EDITORS := editors/vscode/node_modules/.installed

$(EDITORS): editors/vscode/package.json editors/vscode/package-lock.json
	if command -v npm >/dev/null 2>&1; then \
		cd editors/vscode && npm ci --no-audit --no-fund && touch node_modules/.installed; \
	else echo "netspec: no npm here; the VS Code grammar's tests will skip" >&2; fi

editors: $(EDITORS)

pytest: $(STAMP) system editors
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_compile.py
	$(BIN)/python benchmarks/bench_train_step.py
	$(BIN)/python benchmarks/bench_loop.py
	$(BIN)/python benchmarks/bench_heap.py
	$(BIN)/python benchmarks/bench_onnx.py
	$(BIN)/python benchmarks/bench_cold.py
	$(BIN)/python benchmarks/bench_fcn.py
	$(BIN)/python benchmarks/bench_serve.py
	$(BIN)/python benchmarks/bench_threads.py
	$(BIN)/python benchmarks/bench_lsp.py

update-fixtures: $(STAMP)
	$(BIN)/python -m tests.golden --update
	NETSPEC_REGEN=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_hints.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
