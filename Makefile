# Two commands do all the set-up:  `make run` (the main job) and `make test`.
# Both create .venv from the pinned requirements on first use.

SHELL := /bin/bash
# Python 3.10 (TFX 1.16 supports 3.9-3.10): on PATH, or from pyenv.
PYTHON ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do \
            $$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test test-fast serve install install-test bench clean freeze lock

run: $(VENV)/.installed
	$(BIN)/bert-pipeline run $(ARGS)

test: $(VENV)/.installed-test test-tools
	$(BIN)/python -m pytest -q -p no:cacheprovider tests $(PYTEST_ARGS)

# Debian packages two test tiers run, installed with apt-get when missing and this is root
# (else make says what is missing): chromium (browser tier: the run report) and skopeo
# (image tier: serving/deploy/kubernetes/pin-images.sh pins local images by digest).
TEST_TOOLS := chromium skopeo
.PHONY: test-tools
test-tools:
	@missing=""; for tool in $(TEST_TOOLS); do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "missing:$$missing (Debian packages) for the browser and image tests: install" \
	       "them as root (apt-get install$$missing), or run make test-fast" >&2; exit 1; fi; \
	echo "installing$$missing (apt-get)" >&2; apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null

# The unit tier, tests/unit: no pipeline runs, model servers, containers, object storage or
# browser (those tiers have their folders, tests/<tier>, and markers in pytest.ini).
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit $(PYTEST_ARGS)

# The local model server on the pushed models, with TF Serving's Docker defaults:
# gRPC on 8500, REST on 8501 (ARGS adds flags, e.g. ARGS=--host=0.0.0.0).
MODEL_NAME ?= bert_classifier
serve: $(VENV)/.installed
	$(BIN)/bert-pipeline serve --port=8500 --rest_api_port=8501 --model_name=$(MODEL_NAME) \
	  --model_base_path=$(CURDIR)/serving_model/$(MODEL_NAME) \
	  --monitoring_config_file=serving/deploy/monitoring.config $(ARGS)

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Every pin is installed with --require-hashes (a file whose sha256 is not in the
# requirements file is refused), --no-deps (exactly the pins, nothing resolved) and
# --no-build-isolation: the pins PyPI has only as source are built by the setuptools and
# wheel of requirements-pip.txt, installed first (with build isolation pip would download
# the newest setuptools, unhashed, for each). The project itself (-e .) is a separate
# step, it has no hash.
PIP := $(BIN)/pip install -q --disable-pip-version-check
PINS := $(PIP) --require-hashes --no-deps --no-build-isolation
$(VENV)/.installed: requirements-pip.txt requirements.txt setup.py
	@test -n "$(PYTHON)" || { echo "Python 3.10 not found: install it or pass PYTHON=/path/to/python3.10" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PINS) -r requirements-pip.txt
	$(PINS) -r requirements.txt
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PINS) -r requirements-test.txt
	touch $@

bench: $(VENV)/.installed
	$(BIN)/python bench/run_benchmarks.py $(ARGS)

freeze: $(VENV)/.installed
	$(BIN)/pip freeze --exclude-editable | grep -v -e '^pytest=' -e '^iniconfig=' -e '^kubernetes-validate=' -e '^importlib_resources=' -e '^faker=' -e '^moto=' -e '^Flask=' -e '^flask-cors=' -e '^blinker=' -e '^itsdangerous=' -e '^py-partiql-parser=' -e '^responses=' -e '^xmltodict=' -e '^kubeflow-training=' -e '^kubeflow-katib=' -e '^retrying='

# Rewrites the sha256 of every pin (PyPI's files for CPython 3.10 on Linux x86_64 and
# this machine's pip mirrors): run after changing a pin.
REQUIREMENTS := requirements-pip.txt requirements.txt requirements-test.txt \
  kubeflow/image/requirements-gpu.txt kubeflow/image/requirements-sbom.txt
lock:
	@test -n "$(PYTHON)" || { echo "Python 3.10 not found: pass PYTHON=/path/to/python3.10" >&2; exit 1; }
	$(PYTHON) tools/lock_requirements.py $(REQUIREMENTS)

clean:
	rm -rf pipeline_output serving_model

# The pipeline image (kubeflow/Dockerfile) with docker or podman, whichever works (podman,
# runc and debootstrap are installed with apt-get when missing and run as root). GPU=1
# adds TensorFlow's CUDA wheels. Where Beam's SDK image cannot be pulled, a stand-in base
# (Debian 12 + this Python 3.10) is built first. An unchanged image is reused; prints
# its name (also tagged bert-text-pipeline:latest, or :latest-gpu; :latest-standin and
# :latest-gpu-standin on the stand-in base).
GPU ?= 0
.PHONY: image
image:
	@GPU=$(GPU) PYTHON=$(PYTHON) kubeflow/image/build.sh
