# Two entry points: `make demo` (a short decentralized training run) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# Options of the demo, e.g. make demo DEMO_ARGS="--ranks 2 --steps 20" (python -m dsgd.demo --help).
DEMO_ARGS ?=
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo test bench lint

$(VENV)/.installed: setup.py scripts/install.sh
	DSGD_TEST_TOOLS=1 bash scripts/install.sh $(VENV)
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m dsgd.demo $(DEMO_ARGS)

test: install
	$(PY) -m pytest tests -q -x --timeout=600 -p no:cacheprovider --durations=25

bench: install
	bash launch/dsgd-mpirun -np 4 --oversubscribe -- $(PY) -m dsgd.bench mix --json

lint: install
	$(VENV)/bin/hadolint docker/Dockerfile docker/Dockerfile.cpu
