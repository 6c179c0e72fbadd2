# Two commands: `make demo` and `make test`. Both install what is missing first
# and are safe to run again.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEBIAN_DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PORT ?= 3000

.PHONY: demo test install data tools lint clean-venv

$(PY):
	python3 -m venv $(VENV)

# Reinstall when the dependency list changes. torch/torchvision first, pinned to
# the releases this machine's pip cache serves (a plain `torch` would fetch a
# several-GB CUDA build from the registry).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

# The dataset: Debian's package where apt exists, else the checksum-verified
# download from the official URLs into the user cache.
data: install
	@if [ -f $(DEBIAN_DATA) ] || [ -n "$$WARDROBE_DATA_DIR" ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && apt-get install -y -q dataset-fashion-mnist; \
	else $(VENV)/bin/wardrobe data --download >/dev/null; fi
	@$(VENV)/bin/wardrobe data --no-download --quiet

# Test-only system tools: headless Chromium for the browser tests (driven by PyPI's playwright,
# never `playwright install`), and PostgreSQL's server binaries for the store tests, which start
# a throw-away cluster of their own (tests/pg_cluster.py).
tools:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; fi

demo: data
	$(VENV)/bin/wardrobe demo --port $(PORT)

test: data tools
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean-venv:
	rm -rf $(VENV)
