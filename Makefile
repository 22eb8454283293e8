# Crucible: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test test-fast lint proto tools clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $@

demo: install
	$(BIN)/crucible demo --output demo-output

# Builds (once per machine) and lists the upstream programs the tests run.
tools:
	bash scripts/test-tools.sh > .tools.env

test: install tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	set -a && . ./.tools.env && set +a && $(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not cluster and not slow"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

# Regenerates the committed gRPC stubs from crucible/protocol/crucible.proto.
proto: install
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \
	  --grpc_python_out=. crucible/protocol/crucible.proto

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
