# Two entry points for a fresh machine: `make train` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Material's banner about its successor is not a build problem.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

# pytest-xdist: one worker per logical CPU, each file whole on one worker (so a fixture its
# tests share is built once), files in the order tests/conftest.py sorts them (Ray, then
# slow, first). `make test XDIST=` runs them in one process.
XDIST ?= -n logical --dist loadfile --no-loadscope-reorder
# The tests run with Python's default of writing bytecode, even where the environment turns
# it off (PYTHONDONTWRITEBYTECODE): pytest then rewrites the test modules' asserts once, not
# in every worker on every run, and each Ray actor and CLI subprocess loads learnerkit's
# compiled modules instead of compiling them again (__pycache__ is ignored by git).
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest

.PHONY: setup train test test-fast lint format docs docs-serve bench clean

$(STAMP): Makefile pyproject.toml constraints.txt plugins/*/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned (constraints.txt): an unpinned torch can pull a multi-GB CUDA build.
	$(BIN)/pip install -q -c constraints.txt -e ".[torch,tf,ray,offline,multiagent,mujoco,atari,test,docs]" $(addprefix -e ,$(wildcard plugins/*))
	touch $(STAMP)

setup: $(STAMP)

train: $(STAMP)
	$(BIN)/learnerkit train

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MKDOCS) build --strict --quiet
	$(PYTEST) -q $(XDIST)

test-fast: $(STAMP)
	$(PYTEST) -q $(XDIST) -m "not slow and not ray"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The documentation site (docs/, mkdocs.yml): strict, so a broken link or reference fails.
docs: $(STAMP)
	$(MKDOCS) build --strict

docs-serve: $(STAMP)
	$(MKDOCS) serve

bench: $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e ".[bench]"
	$(BIN)/python bench/learner_throughput.py
	$(BIN)/python bench/ppo_cartpole.py
	$(BIN)/python bench/impala_cartpole.py
	$(BIN)/python bench/learning_bars.py
	$(BIN)/python bench/learner_group_scaling.py

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache
