# Fanli — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck migrations-check bench bench-sf10 clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded default: the demo company in the web application, on
# http://127.0.0.1:8000/ (SQLite and DuckDB in fanli-data/; the demo sign-ins are printed).
run: $(STAMP)
	$(BIN)/fanli demo
	$(BIN)/fanli web-demo

test: $(STAMP) browser
	$(BIN)/pytest -q

# The browser tests drive Debian's Chromium (Playwright launches it; it downloads no browser).
# As root it is installed here; otherwise those tests say they were skipped, and why.
# A CJK font (WenQuanYi Micro Hei) lets the screenshots show Chinese text.
browser:
	@{ command -v chromium >/dev/null && fc-list :lang=zh | grep -q . ; } || \
	  { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    chromium fonts-wqy-microhei >/dev/null; } || \
	  echo "chromium is not installed (apt-get install chromium): browser tests will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Models and migrations must not drift: migrate a scratch database, then `alembic check`.
migrations-check: $(STAMP)
	rm -rf .migrations-check
	FANLI_DATA_DIR=.migrations-check $(BIN)/fanli db upgrade
	FANLI_DATA_DIR=.migrations-check $(BIN)/alembic check
	rm -rf .migrations-check

# Benchmarks print figures and compare against a hand-written reference query in the same run.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.engine --sf 1 --repeat 5
	$(BIN)/python -m benchmarks.store --sf 1
	$(BIN)/python -m benchmarks.api_load

bench-sf10: $(STAMP)
	$(BIN)/python -m benchmarks.engine --sf 10 --repeat 2

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
