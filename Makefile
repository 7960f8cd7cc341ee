# Everything runs inside .venv, created on first use. `make demo` installs the core package only
# (the demo imports no torch, ray or test tools); `make test` adds the extras to the same venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE_STAMP := $(VENV)/.installed-core
STAMP := $(VENV)/.installed
# setuptools prints an informational notice on every editable install (not about this project).
EDITABLE := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q -e

.PHONY: demo test test-reference golden lint bench clean

$(CORE_STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(EDITABLE) .
	touch $(CORE_STAMP)

# torch first, pinned: an unpinned torch requirement would pull a multi-GB CUDA build.
$(STAMP): $(CORE_STAMP)
	$(BIN)/pip install -q torch==2.13.0
	$(EDITABLE) '.[dev,torch,ray]'
	touch $(STAMP)

demo: $(CORE_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/prep build configs/demo.yaml
	$(BIN)/prep show shards/demo-qwen3 --row 0

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest

# Differential tests against tinker-cookbook 0.6.1 itself (issue 14). The oracle lives in its own
# venv (.venv-ref: it pins its own torch/transformers) and is driven over JSON lines from the
# project's tests. Fails if the oracle cannot start. REF_SEEDS / REF_CONVS scale it up.
REF := .venv-ref
REF_STAMP := $(REF)/.installed

$(REF_STAMP):
	test -d $(REF) || $(PY) -m venv $(REF)
	$(REF)/bin/pip install -q --upgrade pip
	$(REF)/bin/pip install -q torch==2.13.0
	$(REF)/bin/pip install -q aiohttp anyio blobfile chz cloudpickle datasets huggingface-hub numpy \
		pillow pydantic pyrage rich safetensors termcolor tiktoken "tinker>=0.38.0" tqdm \
		"transformers>=4.57.6,!=5.3.0" jinja2
	$(REF)/bin/pip install -q --no-deps tinker-cookbook==0.6.1
	HF_HUB_OFFLINE=1 $(REF)/bin/python -c "from tinker_cookbook import renderers"
	touch $(REF_STAMP)

test-reference: $(STAMP) $(REF_STAMP)
	HF_HUB_OFFLINE=1 SHARDPREP_REFERENCE_REQUIRED=1 SHARDPREP_REF_PYTHON=$(REF)/bin/python \
		$(BIN)/pytest -m reference tests/reference -p no:cacheprovider

# One golden file (tests/fixtures/golden/RENDERER__TOKENIZER.jsonl.gz) made by tinker-cookbook from
# the repo's conversations and tokenizer (dev-only; see tests/fixtures/golden/README.md).
# make golden RENDERER=qwen3 TOKENIZER=qwen3 [OUT=/tmp/golden]
golden: $(STAMP) $(REF_STAMP)
	@test -n "$(RENDERER)" -a -n "$(TOKENIZER)" || \
		{ echo "usage: make golden RENDERER=name TOKENIZER=folder [OUT=dir]" >&2; exit 2; }
	HF_HUB_OFFLINE=1 SHARDPREP_REF_PYTHON=$(REF)/bin/python $(BIN)/python \
		tests/reference/make_golden.py $(RENDERER) $(TOKENIZER) $(if $(OUT),--out $(OUT))

lint: $(STAMP)
	$(BIN)/ruff format --check shardprep tests bench examples
	$(BIN)/ruff check shardprep tests bench examples
	$(BIN)/mypy shardprep

bench: $(STAMP)
	# Real chat shapes (alpaca + glaive tool calls, varied): SFT at ~4 M and ~45 M tokens (marginal
	# rate and fixed cost derived, where a build's time goes), DPO at ~4 M; encoders, build, tinker
	# and TRL paths (up to 5 M tokens).
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_build.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_reader.py
	# From a loopback S3 server (moto): cold / warm / a cache a tenth of the data, vs MosaicML
	# streaming on the same tokens as MDS when it is installed (bench/bench_remote.py says how).
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_remote.py
	# Packing plan vs TRL's bfd and the token-budget sampler; 10 M rows plan time and memory (issue 24).
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_packing.py
	# Start-up: `prep --version` and an up-to-date `prep build`, fresh processes (issue 16 point 4).
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_startup.py

clean:
	rm -rf shards $(VENV) .pytest_cache .mypy_cache .ruff_cache
