# Entry points: `make demo` (a short decentralized training run), `make test` (the whole suite),
# `make quick` (unit and in-process tests, a few minutes: run it before each commit) and
# `make experiments` (every experiment script's quick mode, end to end; CI runs it after the suite).
VENV ?= .venv
PY := $(VENV)/bin/python
# Options of the demo, e.g. make demo DEMO_ARGS="--ranks 2 --steps 20" (python -m dsgd.demo --help).
DEMO_ARGS ?=
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install bytecode demo test quick experiments bench lint

$(VENV)/.installed: setup.py scripts/install.sh
	DSGD_TEST_TOOLS=1 bash scripts/install.sh $(VENV)
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m dsgd.demo $(DEMO_ARGS)

# The repository's modules compiled once before a run: every rank a test starts imports dsgd, and
# where PYTHONDONTWRITEBYTECODE is set nothing caches them, so each process would compile them again.
bytecode: install
	@$(PY) -m compileall -q -j 0 dsgd topologies tests experiments examples launch

# Test files run on TEST_WORKERS processes side by side (a file's tests stay together, so its
# module fixtures run once); the ranks a test starts wait in MPI often enough to share the cores.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -x --timeout=600 -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

# Both print their wall time last (a failing run too), so a slow change shows at once.
test: bytecode
	@start=$$(date +%s); $(PYTEST) --durations=25 --ignore=tests/experiments tests; status=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s wall (load average $$(cut -d' ' -f1-3 /proc/loadavg))"; exit $$status

quick: bytecode
	@start=$$(date +%s); $(PYTEST) --durations=10 tests/unit tests/inprocess; status=$$?; \
	echo "make quick: $$(( $$(date +%s) - start )) s wall (load average $$(cut -d' ' -f1-3 /proc/loadavg))"; exit $$status

# Each experiment (experiments/*.py) run small, end to end, in its --quick mode; where a committed
# quick reference exists its numbers must come out the same. Minutes of real training runs, so not
# part of the suite's budget.
experiments: bytecode
	@start=$$(date +%s); $(PYTEST) --timeout=1500 --durations=10 tests/experiments; status=$$?; \
	echo "make experiments: $$(( $$(date +%s) - start )) s wall (load average $$(cut -d' ' -f1-3 /proc/loadavg))"; exit $$status

bench: install
	bash launch/dsgd-mpirun -np 4 --oversubscribe -- $(PY) -m dsgd.bench mix --json

lint: install
	$(VENV)/bin/hadolint docker/Dockerfile docker/Dockerfile.cpu
