# Everything runs inside .venv, created on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,torch,ray]'
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/prep build configs/demo.yaml
	$(BIN)/prep show shards/demo-qwen3 --row 0

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check shardprep tests bench
	$(BIN)/mypy shardprep

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_build.py --tokens 20000000
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_reader.py

clean:
	rm -rf shards $(VENV) .pytest_cache .mypy_cache .ruff_cache
