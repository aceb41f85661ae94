# synthlearn: set up a virtual environment and run the quickstart or the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch 2.14.1 / torchvision 0.29.1 are the builds this project is developed against;
# set TORCH_SPEC= to keep whatever torch is already installed in the venv.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PLUGINS := $(wildcard plugins/*/pyproject.toml)

.PHONY: setup demo test lint clean

$(BIN)/synthlearn: pyproject.toml $(PLUGINS)
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_SPEC),$(BIN)/pip install --quiet $(TORCH_SPEC))
	$(BIN)/pip install --quiet -e '.[test]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $(BIN)/synthlearn

setup: $(BIN)/synthlearn   ## create .venv with synthlearn, its plugins and test tools

demo: setup                ## run the quickstart recipe; results in runs/quickstart-<time>/
	$(BIN)/synthlearn run templates/recipes/quickstart.yaml

test: setup                ## lint and run the test suite (CPU only)
	$(BIN)/ruff check framework plugins tests benchmarks templates
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check framework plugins tests benchmarks templates

clean:
	rm -rf $(VENV) runs .synthlearn-cache .pytest_cache
