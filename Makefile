# The two commands: `make demo` and `make test` (both create/refresh .venv first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STEPS ?= 100000
DEMO_SEED ?= 0

.PHONY: venv demo test test-fast clean bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,onnx]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@# SAC with a cost critic and CRPO: swings the cart-pole up while keeping the episode cost under the
	@# budget of 100 (~2.5 min on 2 cores; constrained_priors.json), then evaluates it
	$(BIN)/saferl train sac --env safe_cartpole --steps $(DEMO_STEPS) --seed $(DEMO_SEED) \
		--constraint crpo --set num_envs=4
	$(BIN)/saferl eval $$(ls -dt runs/sac-safe_cartpole-* | head -1) --episodes 10

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(BIN)/python experiments/benchmarks/env_throughput.py

clean:
	rm -rf $(VENV) .jax_cache runs
