# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-test

.PHONY: demo test install lint bench mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## demo: start the emulator seeded from examples/demo, plan -> apply -> plan, stop it
demo: $(STAMP)
	$(BIN)/python examples/demo/run_demo.py

## test: the whole suite (unit + integration against the emulator on loopback)
test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/ruff check reconcile tests
	$(BIN)/mypy

## mutation: mutation testing (mutmut) of the modules that guard users; one worker, bounded to
## MUTATION_MINUTES (default 40). Slow and CPU-heavy, so not part of `make test`. Score and surviving
## mutants: tests/README.md. `$(BIN)/mutmut results` / `$(BIN)/mutmut show NAME` afterwards.
MUTATION_MINUTES ?= 40
mutation: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	timeout --signal=INT $$(( $(MUTATION_MINUTES) * 60 )) $(BIN)/mutmut run --max-children 1 || true
	$(BIN)/python tests/mutation_report.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis demo-out mutants
