# The README's two commands: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The embedded database server secantusd-rs (crate secantus-mdb), pinned here and nowhere else. The crate declares
# rust-version 1.98, but this version builds and works with rustc 1.95 (this machine), hence --ignore-rust-version in
# scripts/install_secantusd.sh. Without cargo + cmake + a C compiler the app falls back to SecantusDB's Python server.
SECANTUS_MDB := 0.5.3-beta.196

.PHONY: run test lint bench load clean secantusd chromium

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# A few milliseconds when installed; the first time a cargo build of about 4 minutes. Never fails the build.
secantusd:
	@bash scripts/install_secantusd.sh $(SECANTUS_MDB)

# Debian's chromium for tests/browser/ when missing (apt-get as root or with password-less sudo); never fails the build.
chromium:
	@bash scripts/install_chromium.sh

run: $(STAMP) secantusd
	$(PY) -m app serve

test: $(STAMP) secantusd chromium
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check app tests scripts
	$(VENV)/bin/ruff format --check app tests scripts
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache
