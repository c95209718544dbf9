# Two entry points for a fresh machine (Python 3.11+, no GPU needed):
#   make demo   set up .venv and upscale the bundled clip with the shipped weights
#   make test   set up .venv and run the test suite
#   make wheel-check  build the wheel, install it into a fresh venv, run it outside the repository
VENV ?= .venv
PY := $(VENV)/bin/python
# Where PyTorch's CPU build comes from. Empty: pip's configured index (here it holds the CPU build of
# torch 2.13.0). On another machine, `make test TORCH_INDEX=https://download.pytorch.org/whl/cpu`
# takes PyTorch's own CPU wheel instead of the multi-GB CUDA build the public index resolves to.
TORCH_INDEX ?=
TORCH_PIP_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)

.PHONY: demo test bench setup lint wheel-check

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch first, so the project's torch range never pulls a multi-GB CUDA build
	$(PY) -m pip install -q $(TORCH_PIP_ARGS) torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# the real tritonserver of tests/test_triton.py (its numpy<2 pin is not needed by the server)
	$(PY) -m pip install -q --no-deps nvidia-pytriton==0.7.0
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/streamsr run streamsr/data/sample.mp4 -o sample_x2.mp4 --model espcn --scale 2 --stats-json sample_x2.json

test: $(VENV)/.installed
	$(PY) -m pytest

wheel-check:
	.ci/wheel-check

bench: $(VENV)/.installed
	$(VENV)/bin/streamsr bench --model espcn --scale 2 --size 640x360 --frames 120 --output BENCHMARKS.md

lint: $(VENV)/.installed
	$(PY) -m pip install -q ruff==0.17.6
	$(VENV)/bin/ruff check .
