# Two entry points: `make demo` (set up, then predict GPT-3 175B on 1024 A100-80GB) and
# `make test` (set up, then run the whole test suite). Setup makes its own .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test data browser clean

$(STAMP): requirements.lock constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP) data browser

# Fashion-MNIST for the local-learning experiments (Debian package); optional.
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 || echo "note: dataset-fashion-mnist not installed (local-learning runs need --data)"; \
	fi

# Headless Chromium for the HTML-report browser test (Debian packages); optional.
browser:
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 || echo "note: chromium not installed (browser test will skip)"; \
	fi

demo: setup
	$(VENV)/bin/xlayer demo

test: setup
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
