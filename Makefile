# synthlearn: set up a virtual environment and run the quickstart or the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch 2.14.1 / torchvision 0.29.1 are the builds this project is developed against;
# set TORCH_SPEC= to keep whatever torch is already installed in the venv.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PLUGINS := $(wildcard plugins/*/pyproject.toml)
# pytest-xdist workers for `make test` (auto: one per CPU core); each test module runs
# whole on one worker (--dist loadscope), so a module-scoped fixture's run is made once
TEST_WORKERS ?= auto

.PHONY: setup demo test test-all lint clean

$(BIN)/synthlearn: pyproject.toml $(PLUGINS)
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_SPEC),$(BIN)/pip install --quiet $(TORCH_SPEC))
	$(BIN)/pip install --quiet -e '.[test]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $(BIN)/synthlearn

setup: $(BIN)/synthlearn   ## create .venv with synthlearn, its plugins and test tools

demo: setup                ## run the quickstart recipe; results in runs/quickstart-<time>/
	$(BIN)/synthlearn run templates/recipes/quickstart.yaml

# `make test` is what CI runs: everything but the tests marked slow, on TEST_WORKERS
# processes, with the 15 slowest listed so that a test that grows shows up;
# `make test-all` adds the slow ones.
# pytest's testpaths (pyproject.toml) are every plugins/<name>/tests/ (first: their modules
# are the longest), the core's tests/ and templates/plugin/tests/; the fixtures come
# from synthlearn.testing (pytest11).
test: setup                ## lint and run the test suite without the slow tests (CPU only)
	$(BIN)/ruff check framework plugins tests benchmarks templates
	$(BIN)/pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadscope --durations=15

test-all: setup            ## lint and run every test, the slow end-to-end checks included
	$(BIN)/ruff check framework plugins tests benchmarks templates
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=15

lint: setup
	$(BIN)/ruff check framework plugins tests benchmarks templates

clean:
	rm -rf $(VENV) runs .synthlearn-cache .pytest_cache
