# The two commands of the README: `make demo` and `make test`. Both set everything up first.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench setup clean

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	./scripts/setup.sh
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/veil demo

# Ends with how long it took (ruff and the suite, after setup), pass or fail.
test: $(VENV)/.installed
	@start=$$(date +%s); $(BIN)/ruff check . && $(BIN)/pytest -q; rc=$$?; \
	t=$$(( $$(date +%s) - start )); \
	echo "make test: $$([ $$rc = 0 ] && echo passed || echo FAILED) in $$((t / 60)) min $$((t % 60)) s on $$(nproc) cores"; \
	exit $$rc

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/data_volumes.py
	$(BIN)/python benchmarks/privacy_tradeoff.py
	$(BIN)/python benchmarks/privacy_speed.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/lane_training.py
	$(BIN)/python benchmarks/scheduler.py
	$(BIN)/python benchmarks/reliability.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
