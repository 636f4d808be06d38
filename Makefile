# make demo: set up .venv and run the demo; make test: set up .venv and run the tests.
SHELL := /bin/bash
VENV := .venv
# Python 3.12: on PATH, or pyenv's 3.12.1 (as on the project's machines).
PYTHON312 ?= $(shell python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null || \
	PYENV_VERSION=3.12.1 python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null)

export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(VENV))/bin/python
export PYSPARK_DRIVER_PYTHON := $(abspath $(VENV))/bin/python

.PHONY: venv demo test lint bench clean

$(VENV)/.installed: setup.py requirements.txt
	@test -n "$(PYTHON312)" || { echo "Python 3.12 not found: install it or set PYTHON312=/path/to/python3.12"; exit 1; }
	@command -v java >/dev/null || { echo "Java 17 not found (Spark needs it): apt-get install openjdk-17-jre-headless"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON312) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/dedup demo --out demo-out

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: venv lint
	$(VENV)/bin/pytest -q

bench: venv
	$(VENV)/bin/python bench/hash_path.py

clean:
	rm -rf $(VENV) demo-out bench-out build dist *.egg-info
