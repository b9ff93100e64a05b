# The two commands of README.md:
#   make demo   install if needed, generate the shapes dataset, train Mask R-CNN locally, evaluate, plot
#   make test   install if needed, lint, run the test suite
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.model_hub_mmdet-installed

.PHONY: install demo test lint bench clean-runs

install: $(STAMP)

# Re-run the installer when it or the package's requirements change (it is idempotent and fast when warm).
$(STAMP): scripts/install.sh setup.py pyproject.toml
	bash scripts/install.sh
	touch $(STAMP)

data/shapes/annotations/val.json: | $(STAMP)
	$(BIN)/model-hub-mmdet make-shapes data/shapes

# Two single-threaded processes (gloo): faster than one process of two threads on 2 cores (bench/demo_speed.py).
DEMO_NPROC ?= 2

demo: install data/shapes/annotations/val.json
	$(BIN)/model-hub-mmdet train examples/shapes/shapes.yaml --local --nproc $(DEMO_NPROC) --out runs/demo

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/storage.py

clean-runs:
	rm -rf runs
