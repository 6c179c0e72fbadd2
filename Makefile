# Two commands: `make demo` and `make test`. Both install what is missing first
# and are safe to run again.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
DEBIAN_DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PORT ?= 3000

.PHONY: demo test install lock bento-smoke data tools lint clean-venv

$(PY):
	python3 -m venv $(VENV)

# The environment holds exactly requirements.lock (pip-sync removes anything else), then the
# project itself with --no-deps. torch/torchvision are pinned there to the releases this
# machine's pip cache serves (a plain `torch` would fetch a several-GB CUDA build).
$(STAMP): $(LOCK) pyproject.toml | $(PY)
	$(PY) -m pip install -q $$(grep -E '^(pip|pip-tools)==' $(LOCK))
	$(VENV)/bin/pip-sync -q $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(STAMP)

# Regenerate the lock from pyproject.toml (keeps current pins that still fit; UPGRADE=1 takes the
# newest releases), then the Bento's package list derived from it. Commit both files.
lock: | $(PY)
	$(PY) -m pip install -q $$(grep -E '^pip-tools==' $(LOCK) || echo pip-tools)
	$(VENV)/bin/pip-compile -q --extra dev --strip-extras --allow-unsafe --no-emit-index-url \
		--no-emit-find-links $(if $(UPGRADE),--upgrade) --output-file $(LOCK) pyproject.toml
	$(MAKE) install
	$(PY) deploy/bento_requirements.py

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

# Two pytest-xdist workers, a test file each at a time (module fixtures such as a server stay in one
# worker); the suite waits on servers and browsers much of the time, so two fill two cores.
# --durations names the slowest, to find the next minute to save (docs/operations.md).
TEST_WORKERS ?= 2

test: data tools
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not bento_smoke" -n $(TEST_WORKERS) --dist loadfile --durations=20

# The built Bento, served from a clean venv of its own requirements (about 2 minutes; .ci/run runs it).
bento-smoke: install
	$(PY) -m pytest -q -m bento_smoke tests/test_bento_smoke.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean-venv:
	rm -rf $(VENV)
