# Quick start: `make train` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: train test test-slow install install-test benchmark clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

install: $(STAMP)
install-test: $(TEST_STAMP)

train: $(STAMP)
	$(PY) train.py --use-cv

test: $(TEST_STAMP)
	$(PY) -m pytest

# the end-to-end tests through real processes (train.py, predict.py, the server, DDP, the notebook): CI runs them too
test-slow: $(TEST_STAMP)
	$(PY) -m pytest -m slow

benchmark: $(STAMP)
	$(PY) benchmarks/train_speed.py

clean:
	rm -rf $(VENV) logs checkpoints/*/ checkpoints/*.ckpt
