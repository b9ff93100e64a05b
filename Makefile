# The two commands of README.md:
#   make demo   install if needed, generate the shapes dataset, train Mask R-CNN locally, evaluate, plot
#   make test   install if needed, lint, run the test suite (both MMDetection generations)
#
# MMDET picks the MMDetection generation: 2 (MMDetection 2.28, mmcv-full 1.7.2, in .venv, the default) or 3
# (MMDetection 3.3, mmcv 2.1.0 + mmengine 0.10.7, in .venv-mmdet3). `make install MMDET=3`, `make demo MMDET=3`.
# Plain `make test` installs and tests both; `make test MMDET=2` or `MMDET=3` just that one (+ the neutral tests).
#
# CUDA=1 (`make install CUDA=1 [MMDET=3]`) installs mmcv with its CUDA ops, built also on a machine without a GPU
# (TORCH_CUDA_ARCH_LIST and CUDA_HOME pass through; scripts/install.sh says how they default).
# `make cuda-wheel MMDET=2|3` builds (or takes from the cache) that generation's CUDA mmcv wheel without installing
# it and checks it (scripts/cuda-wheel.sh); it is slow (an hour or more on 2 cores), so not part of `make test`.
# It only needs the environment to exist (its torch): it does not re-run the installer.
MMDET ?= 2
VENV_2 ?= .venv
VENV_3 ?= .venv-mmdet3
# VENV=... (as before) overrides the environment of the generation MMDET picks.
ifneq ($(origin VENV),undefined)
VENV_$(MMDET) := $(VENV)
endif
VENV := $(VENV_$(MMDET))
BIN := $(VENV)/bin
STAMP_2 := $(VENV_2)/.model_hub_mmdet-installed
STAMP_3 := $(VENV_3)/.model_hub_mmdet-installed
STAMP := $(STAMP_$(MMDET))

ifeq ($(filter 2 3,$(MMDET)),)
$(error MMDET must be 2 or 3, not '$(MMDET)')
endif

# Test layout: generation-neutral tests, the 3.x tests, everything else under TEST_ROOT is 2.x.
TEST_ROOT ?= tests
TEST_CORE ?= tests/core
TEST_MMDET3 ?= tests/mmdet3
PYTEST_ARGS ?=
# Generations `make test` covers: both unless MMDET was given (command line or environment).
ifeq ($(origin MMDET),file)
TEST_GENERATIONS := 2 3
else
TEST_GENERATIONS := $(MMDET)
endif
PHASE := bash scripts/phase.sh

.PHONY: install install-all demo test lint bench clean-runs cuda-wheel FORCE

install: $(STAMP)

install-all: $(STAMP_2) $(STAMP_3)

# Re-run the installer when it or the package's requirements change (it is idempotent and fast when warm), and
# whenever CUDA is given: the stamp does not say which mmcv ops were installed.
$(STAMP_2) $(STAMP_3): scripts/install.sh setup.py pyproject.toml $(if $(CUDA),FORCE)
	@$(PHASE) "install: MMDetection $(GEN).x into $(VENV_$(GEN))" env MMDET=$(GEN) VENV="$(abspath $(VENV_$(GEN)))" \
	  bash scripts/install.sh
	touch $@
$(STAMP_2): GEN := 2
$(STAMP_3): GEN := 3

data/shapes/annotations/val.json: | $(STAMP)
	$(BIN)/model-hub-mmdet make-shapes data/shapes

# Two single-threaded processes (gloo): faster than one process of two threads on 2 cores (bench/demo_speed.py).
DEMO_NPROC ?= 2
DEMO_EXP_2 := examples/shapes/shapes.yaml
DEMO_EXP_3 := examples/shapes/shapes_mmdet3.yaml
DEMO_EXP ?= $(DEMO_EXP_$(MMDET))
DEMO_OUT_2 := runs/demo
DEMO_OUT_3 := runs/demo-mmdet3
DEMO_OUT ?= $(DEMO_OUT_$(MMDET))

demo: install data/shapes/annotations/val.json
	$(BIN)/model-hub-mmdet train $(DEMO_EXP) --local --nproc $(DEMO_NPROC) --out $(DEMO_OUT)

lint: install
	@$(PHASE) lint $(BIN)/ruff check .

# The neutral tests run once, in the first tested generation's environment; each generation's own in its own.
test: $(foreach g,$(TEST_GENERATIONS),$(STAMP_$(g))) lint
	@$(PHASE) --needs $(TEST_CORE) "tests: generation-neutral ($(TEST_CORE), $(VENV))" \
	  $(BIN)/pytest $(PYTEST_ARGS) $(TEST_CORE)
ifneq ($(filter 2,$(TEST_GENERATIONS)),)
	@$(PHASE) --needs $(TEST_ROOT) "tests: MMDetection 2.x ($(VENV_2))" \
	  $(VENV_2)/bin/pytest $(PYTEST_ARGS) $(TEST_ROOT) --ignore=$(TEST_CORE) --ignore=$(TEST_MMDET3)
endif
ifneq ($(filter 3,$(TEST_GENERATIONS)),)
	@$(PHASE) --needs $(TEST_MMDET3) "tests: MMDetection 3.x ($(TEST_MMDET3), $(VENV_3))" \
	  $(VENV_3)/bin/pytest $(PYTEST_ARGS) $(TEST_MMDET3)
endif

bench: install
	$(BIN)/python bench/storage.py

cuda-wheel:
	@test -x $(BIN)/python || { echo "make cuda-wheel: $(VENV) does not exist: make install MMDET=$(MMDET) first"; exit 1; }
	@$(PHASE) "cuda-wheel: MMDetection $(MMDET).x's CUDA mmcv, built with $(VENV)'s torch" \
	  env MMDET=$(MMDET) VENV="$(abspath $(VENV))" bash scripts/cuda-wheel.sh

FORCE:

clean-runs:
	rm -rf runs
