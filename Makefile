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

.PHONY: venv run test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet --no-binary elasticdeform -e '.[$(EXTRA),test]'
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/emkit evaluate emkit:isbi2012/train-labels emkit:isbi2012/train-labels

test: venv
	$(PY) -m pytest -q tests

bench: venv
	$(PY) benchmarks/metrics.py

clean:
	rm -rf $(VENV) build *.egg-info
