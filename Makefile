# Two entry points for a fresh machine: `make train` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup train test test-fast lint format bench clean

$(STAMP): pyproject.toml constraints.txt plugins/*/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned (constraints.txt): an unpinned torch can pull a multi-GB CUDA build.
	$(BIN)/pip install -q -c constraints.txt -e ".[torch,tf,ray,offline,multiagent,test]" $(addprefix -e ,$(wildcard plugins/*))
	touch $(STAMP)

setup: $(STAMP)

train: $(STAMP)
	$(BIN)/learnerkit train

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not ray"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e ".[bench]"
	$(BIN)/python bench/learner_throughput.py
	$(BIN)/python bench/ppo_cartpole.py
	$(BIN)/python bench/impala_cartpole.py
	$(BIN)/python bench/learning_bars.py
	$(BIN)/python bench/learner_group_scaling.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
