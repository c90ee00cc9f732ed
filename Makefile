# The two commands of the README: `make demo` and `make test`.
.PHONY: demo test test-all lint bench bootstrap up

VENV := .venv/bin

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/smartcommunity demo

up: bootstrap
	$(VENV)/smartcommunity up

test: bootstrap
	$(VENV)/ruff check .
	$(VENV)/python -m pytest -m "not slow" -q -n 4 --dist loadgroup --durations=30

test-all: bootstrap
	$(VENV)/python -m pytest -q

lint: bootstrap
	$(VENV)/ruff check .

bench: bootstrap
	for b in bench/bench_*.py; do $(VENV)/python $$b || exit 1; done
