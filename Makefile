# The two commands a newcomer types (see README): `make quickstart` and `make test`.
VENV ?= .venv
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test test-all quickstart bench clean

setup:
	bash scripts/setup.sh

test: setup
	$(VENV)/bin/python -m pytest

test-all: setup
	$(VENV)/bin/python -m pytest -m "slow or not slow"

quickstart: setup
	$(VENV)/bin/plinth run examples/quickstart.toml

bench: setup
	for b in benchmarks/*.py; do $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache
