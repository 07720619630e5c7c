# One entry point for people and CI: `make run` serves, `make test` tests.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install lint test test-all bench-claim run clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

lint: install
	$(BIN)/ruff check scheduler api tests
	$(BIN)/mypy --strict -p leasehold -p tests
	$(BIN)/lint-imports

test: install
	$(BIN)/pytest -q

test-all: install
	$(BIN)/pytest -q -m ''

bench-claim: install
	$(BIN)/pytest -q -s -m load tests/load/test_claim_depth.py

# Without redis-server on PATH, say so and keep state in the process only (--ephemeral).
run: install
	@if command -v redis-server >/dev/null 2>&1; then exec $(BIN)/leasehold serve --with-reaper; \
	else echo "redis-server is not on PATH: running with --ephemeral (state is lost at exit;" \
	  "install redis-server to keep it)" >&2; \
	  exec $(BIN)/leasehold serve --with-reaper --ephemeral; fi

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist
