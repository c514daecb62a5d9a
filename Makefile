# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use.
.PHONY: setup demo test bench clean-server

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/curate demo

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python benchmarks/bench_publish_sync.py
