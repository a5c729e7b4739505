# `make demo` and `make test` set up everything they need (the system packages listed in
# scripts/system-deps.sh, a virtual environment in .venv with the dependencies) and then run.
# Set TORCH to choose another torch build, e.g. TORCH=torch.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.grpokit-installed
PYTEST_ARGS ?= -n 2

# -qq: pip prints errors only (a failed install still says why), not warnings or progress
PIP := $(PY) -m pip install -qq

.PHONY: setup demo test clean system-deps

# System packages first, so a missing one stops the command before anything runs. The
# target-specific TARGET reaches this prerequisite, so it checks what that target needs.
setup: TARGET = setup
demo: TARGET = demo
test: TARGET = test
system-deps:
	@PYTHON="$(PYTHON)" scripts/system-deps.sh $(or $(TARGET),setup)

$(STAMP): pyproject.toml Makefile | system-deps
	@echo "grpokit: installing torch and the dependencies into $(VENV) (a few minutes the first time)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) --upgrade pip
	@$(PIP) "$(TORCH)"
	@$(PIP) -e ".[dev]"
	@touch $(STAMP)

setup: system-deps $(STAMP)

demo: system-deps $(STAMP)
	@$(VENV)/bin/grpokit train

test: system-deps $(STAMP)
	@$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "grpokit: pytest collected no tests; that is a failure, not a pass" >&2; fi; \
	exit $$rc

clean:
	rm -rf $(VENV) .cache .pytest_cache
