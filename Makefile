# Two commands for a fresh clone:  `make demo` runs the demo on SQLite, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install demo test lint docs bench lock clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,demo]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/python -m uvicorn demo.app:app --host 127.0.0.1 --port 8000

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The docs site, built into site/ (`make test` builds it too); `.venv/bin/mkdocs serve` previews it.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: lint
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

# The peer benchmark (about twenty minutes): needs PostgreSQL, Redis and wrk; writes its section of docs/benchmarks.md.
bench: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,demo,bench]'
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m benchmarks.run --rounds 5 --record

lock: install
	{ echo '# Versions the tests were last run with; `make` installs within these. Refresh: make lock'; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v fastapi.prisma.session; } > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage demo.db site
