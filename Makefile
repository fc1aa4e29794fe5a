# Entra Broker: `make demo` runs the whole thing locally, `make test` runs every check.
# Both bootstrap their own virtualenv in .venv, so a fresh machine needs only python3 (3.11+) and make.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck pytest venv clean

$(BIN)/python:
	@scripts/ensure-venv.sh "$(PYTHON)" "$(VENV)"

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(VENV)/.installed $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check broker devidp demo tests bench
	$(BIN)/ruff format --check broker devidp demo tests bench

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy --strict broker devidp demo

pytest: $(VENV)/.installed-test
	@scripts/ensure-redis.sh
	@scripts/ensure-chromium.sh
	@scripts/ensure-ingresses.sh
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
