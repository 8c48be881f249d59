# The two commands a newcomer needs are `make up` and `make test` (see README.md).
VENV := .venv/bin

.PHONY: up down status test lint bench chaos install

install:
	@bash workers/stack/bootstrap.sh $(BOOTSTRAP_FLAGS)

# The browser tests drive Debian's Chromium: `make test` (and its prerequisites) install it.
test bench: BOOTSTRAP_FLAGS := --for-tests

up: install
	@$(VENV)/conveyor stack up

down:
	@$(VENV)/conveyor stack down

status:
	@$(VENV)/conveyor stack status

lint: install
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

test: lint
	$(VENV)/pytest

bench: install
	$(VENV)/python -m bench.stack_timings
	$(VENV)/conveyor stack up
	$(VENV)/python -m bench.put_to_ready
	$(VENV)/python -m bench.upload
	$(VENV)/python -m bench.download
	$(VENV)/python -m bench.scan
	$(VENV)/python -m bench.thumbnails
	$(VENV)/python -m bench.ocr
	$(VENV)/python -m bench.text_extraction
	$(VENV)/python -m bench.load
	$(VENV)/python -m bench.orchestration
	$(VENV)/python -m bench.orchestration_floor
	$(VENV)/python -m bench.batch_ratio
	$(VENV)/python -m bench.browser_upload
	$(VENV)/python -m bench.chaos

# SIGKILL every process of a throwaway stack of its own in turn while 200 uploads are in
# flight; prints the recovery time per component and checks the end state.
chaos: install
	$(VENV)/python -m bench.chaos
