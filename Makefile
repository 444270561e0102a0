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

# promtool (Debian's prometheus package) runs the alert-rule unit tests of deploy/prometheus.
# Installed when missing and we may (root with apt-get); otherwise that one test says how.
promtool:
	@command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  echo "installing promtool (apt-get install prometheus)..." && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || \
	  echo "promtool not installed: the alert-rule test will skip (CI requires it)"

# Debian's Chromium and ChromeDriver drive the nursing worklist's browser test (tests/test_worklist_browser.py).
browser:
	@{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  echo "installing chromium and chromium-driver (apt-get) for the worklist's browser test..." && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; } || \
	  echo "chromium not installed: the worklist browser test will skip (CI requires it)"

.PHONY: install demo test test-full bench promtool browser image
install: $(STAMP)

demo: $(STAMP)
	$(BIN)/infusion-validator demo

test: $(STAMP) promtool browser
	$(BIN)/pytest -q

test-full: $(STAMP) promtool browser
	$(BIN)/pytest -q -m ''

bench: $(STAMP)
	$(BIN)/python -m benchmarks.batch

# The container image, built for real with podman on a base made from Debian packages (no registry
# needed), and checked to start: deploy/image/build-and-check.sh (installs podman with apt when missing).
image:
	bash deploy/image/build-and-check.sh
