# The two commands of the README: `make demo` and `make test`.
# Both create .venv and install the project into it on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

.PHONY: install demo test test-full bench
install: $(STAMP)

demo: $(STAMP)
	$(BIN)/infusion-validator demo

test: $(STAMP)
	$(BIN)/pytest -q

test-full: $(STAMP)
	$(BIN)/pytest -q -m ''

bench: $(STAMP)
	$(BIN)/python -m benchmarks.batch
