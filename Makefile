# Two entry points for a fresh machine (see README):
#   make run   creates .venv and runs the default recipe
#   make test  creates .venv and runs the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRA  ?= cpu
export NO_ALBUMENTATIONS_UPDATE := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export KERAS_BACKEND := tensorflow

.PHONY: venv run quick test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet --no-binary elasticdeform -e '.[$(EXTRA),test]'
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/emkit recipe run isbi_n4

quick: venv
	$(VENV)/bin/emkit recipe run isbi_n4 --quick

test: venv
	$(PY) -m pytest -q tests

bench: venv
	$(PY) benchmarks/metrics.py
	$(PY) benchmarks/models.py
	$(PY) benchmarks/sampling.py
	$(PY) benchmarks/postprocess.py
	$(PY) benchmarks/inference.py

clean:
	rm -rf $(VENV) build *.egg-info
