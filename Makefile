# The verbs developers and CI both run. Every target creates the virtual environment it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-slow test-gpu lint format bench clean

install: $(STAMP)

# torch==2.13.0 first: on these machines it is a CPU build from local disk; pyproject's range then
# installs nothing more (a bare `torch` would pull a multi-GB CUDA build).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Upscale the bundled 2 s clip (Big Buck Bunny, CC-BY 3.0) x2 with the shipped `base` model, with a
# picture of the skip mask.
demo: $(STAMP)
	mkdir -p out
	$(BIN)/skipsr upscale examples/bbb_320x180.mp4 out/demo_x2.mp4 --mask-out out/demo_mask.mp4 --overwrite
	@echo "wrote out/demo_x2.mp4 and out/demo_mask.mp4"

test: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

# The benchmark tools' own tests (`bench capacity`, `bench run`): 44-81 s more in CI on 2 cores.
test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

# On a machine with CUDA: the GPU module alone (skipped elsewhere).
test-gpu: $(STAMP)
	$(BIN)/pytest -q tests/test_gpu.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache *.egg-info
