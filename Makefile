# The two commands: `make demo` and `make test` (both create/refresh .venv first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_EPISODES ?= 4
DEMO_SEED ?= 0

.PHONY: venv demo test test-long test-fast test-durations style lint clean bench notebooks docs

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,onnx,docs,wandb]"
	touch $(STAMP)

venv: $(STAMP)

PRIOR_DIR := runs/priors
# the prior: SAC with a cost critic and CRPO under domain randomisation (pole/cart mass x0.6-1.6, motor gain
# x0.8-1.2) on the nominal cart-pole; trained once (~3 min on 2 cores), reused while runs/priors holds it
PRIOR_ARGS := --env safe_cartpole --steps 100000 --seed 0 --constraint crpo --set num_envs=4 \
	--set-env 'randomization.mass_scale=[0.6,1.6]' --set-env 'randomization.actuator_gain_scale=[0.8,1.2]'

demo: $(STAMP)
	@# SOOPER on the "real" cart-pole (pole twice as heavy): 1 episode of the prior, then MPC around it behind
	@# the shield; prints the safety margin and normalised return, leaves plots (cost per episode vs budget)
	@test -n "$$(ls -d $(PRIOR_DIR)/sac-safe_cartpole-*/checkpoints/* 2>/dev/null)" || \
		$(BIN)/saferl train sac $(PRIOR_ARGS) --out $(PRIOR_DIR)
	$(BIN)/saferl train sooper --env safe_cartpole --set-env shift.preset=heavy_pole --seed $(DEMO_SEED) \
		--steps $$(( $(DEMO_EPISODES) * 1000 )) \
		--set prior=$$(dirname $$(dirname $$(ls -dt $(PRIOR_DIR)/sac-safe_cartpole-*/checkpoints/* | head -1)))

# pytest-xdist workers (one per core on the 2-core CI machine); TEST_WORKERS=0 runs in this process
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

test: $(STAMP) style
	$(PYTEST) -m "not long" tests  # ends with the 25 slowest tests and their share (tests/conftest.py)

test-long: $(STAMP)
	@# the learning tests too long for make test's CI budget (constrained SAC, SOOPER, PETS through the CLI)
	$(PYTEST) --durations=20 -m long tests

test-durations: $(STAMP)
	@# make test, then its per-test seconds into tests/durations.json (the order in which the workers take groups)
	SAFERL_TEST_TIMES=.test-times.json $(PYTEST) -m "not long" tests
	$(BIN)/python -c "import json; t = json.load(open('.test-times.json'))['tests']; \
		json.dump({k: round(v['s'], 1) for k, v in sorted(t.items())}, open('tests/durations.json', 'w'), indent=0)"

test-fast: $(STAMP)
	@# the logic on pendulum, safe_cartpole and point_goal: skips `slow` (>= 5 s warm, soft robots, ultrasound)
	$(PYTEST) -m "not slow and not long" tests

# ruff's lint and format check (under a second) and mypy over saferl, envs and hardware (clean; 20-30 s on a fresh
# clone of 2 cores, under a second with a warm .mypy_cache): part of make test and so of CI
style: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# the checks of style (ruff lint + format check, mypy; configured in pyproject.toml), but all three run and it fails
# if any finds something (style stops at the first)
lint: $(STAMP)
	@status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	$(BIN)/mypy || status=1; \
	exit $$status

bench: $(STAMP)
	$(BIN)/python experiments/benchmarks/env_throughput.py

notebooks: $(STAMP)
	@# build experiments/notebooks/*.ipynb from src/*.py and execute them with the full budget (outputs kept)
	$(BIN)/python experiments/notebooks/build.py --execute --budget full

docs: $(STAMP)
	@# the documentation site into site/ (MkDocs + Material, strict: broken links and references fail); plots,
	@# notebooks and the CLI reference come from the repository at build time (docs/_hooks/saferl_docs.py)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs site  # the compilation cache lives in $${SAFERL_JAX_CACHE:-$$XDG_CACHE_HOME/saferl/jax}
