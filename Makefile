# roofsim: `make demo` runs the main job on built-in defaults; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install install-torch demo test lint app validate validate-local bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The optional torch extra: calibrate --local then also times GEMMs (fp32, bf16) through PyTorch's CPU kernels.
install-torch: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,torch]'

# The main job on built-in defaults: replay 2,000 requests of the built-in conversation workload (statistics of the
# Azure 2023 conversation trace) through Llama-3.1-8B on one H100 with vLLM-style continuous batching.
demo: $(STAMP)
	$(VENV)/bin/roofsim simulate --model llama-3.1-8b --hardware h100-sxm --workload conversation --num-requests 2000 --seed 0

test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# The Streamlit dashboard on http://localhost:8501 (PORT=N to change).
PORT ?= 8501
app: $(STAMP)
	$(VENV)/bin/roofsim app --port $(PORT)

# Debian's Chromium for the dashboard's browser test; installed only when missing and apt-get can run (root).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update && apt-get install -y chromium chromium-driver; \
	else echo "make browser: /usr/bin/chromium missing and apt-get unavailable (not root): the browser test will skip"; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy -p roofsim

clean:
	rm -rf $(VENV) build *.egg-info

# Kernel-level validation: first the leave-one-GPU-out table (fit on three GPUs, predict the fourth from its
# datasheet; a deterministic sample of <= 300 rows per table stratum) and docs/figures/validation-transfer.html,
# then refit the shipped calibration profiles from ../shared/data and print their held-out-shape errors
# (docs/validation.md quotes this output; ~3-6 min on 2 cores). Then the end-to-end interval coverage of the
# rebuilt profiles: every 4th silicon row, every 10th Splitwise/Argonne row and the vLLM logs, each a 16-member
# ensemble (docs/validation-e2e.md "Interval coverage" quotes it; ~9-20 min on 2 cores).
validate: $(STAMP)
	$(PY) scripts/build_profiles.py
	$(PY) scripts/validate_e2e.py --ensemble 16 --coverage-only --every 4,10,10

# Local end-to-end validation on this machine: calibrate --local (quick grid), serve a real numpy transformer,
# replay its log with the local calibration; 3 repeats; writes docs/validation-local.md + docs/figures/validation-local.html
# (~5-10 min on 2 cores; run it on a quiet machine for numbers to quote; FULL=1 for the full calibration grid).
validate-local: $(STAMP)
	$(PY) scripts/validate_local.py --repeats 3 $(if $(FULL),--full,)
