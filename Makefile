# atelier: `make run` installs into .venv and writes a demo stylization to out/; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run serve test test-slow lint typecheck bench clean gpu-kit gpu-prepare gpu-restore

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU wheel first, pinned: an unpinned torch would pull gigabytes of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/atelier stylize examples/garden.jpg --style examples/van_gogh_wheat_field_with_cypresses.jpg \
		--size 512 --seed 0 --overwrite -o out/garden_van_gogh.png
	$(BIN)/atelier stylize examples/garden.jpg --style examples/van_gogh_wheat_field_with_cypresses.jpg \
		--method adain --size 512 --overwrite -o out/garden_adain.png
	$(BIN)/atelier stylize examples/garden.jpg --model wheat_field --size 512 --overwrite -o out/garden_wheat_field.png
	@echo "demos written to out/garden_van_gogh.png (gatys), out/garden_adain.png (adain) and" \
		"out/garden_wheat_field.png (the shipped per-style network)"

# The web studio on http://127.0.0.1:8000/ (API docs at /docs); Ctrl-C stops it.
serve: $(STAMP)
	$(BIN)/atelier serve

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/gatys.py
	$(BIN)/python benchmarks/feedforward.py
	$(BIN)/python benchmarks/per_style.py

# A lent GPU (docs/GPU_RECIPE.md): build gpu_kit/, move the shipped weights aside for the device calls, restore them.
gpu-kit: $(STAMP)
	scripts/gpu_recipe.sh kit

gpu-prepare: $(STAMP)
	scripts/gpu_recipe.sh prepare

gpu-restore:
	scripts/gpu_recipe.sh restore

clean:
	rm -rf $(VENV) out .pytest_cache
