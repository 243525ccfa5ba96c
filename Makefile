# MarsIce: the README's two commands are `make demo` and `make test`; both run `make setup` first.
#
# setup: Debian 12's QGIS (apt, only what is missing), then a venv at .venv made from
# /usr/bin/python3 --system-site-packages (so QGIS's own Python modules stay visible) with the
# pinned PyPI packages of pyproject.toml. Idempotent: a stamp file skips pip when nothing changed.
# GPU=1 installs tensorflow[and-cuda] instead of tensorflow-cpu.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SYSTEM_PYTHON := /usr/bin/python3
APT_PACKAGES := qgis python3-qgis qgis-providers python3-venv python3-h5py
GPU ?= 0
EXTRAS := $(if $(filter 1,$(GPU)),gpu,cpu),dev
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
comma := ,
DEMO_DIR ?= demo_output

.PHONY: setup apt demo test lint format zip demo-model model model-level2 model-level1 model-ensemble model-threshold model-patch clean

setup: apt $(STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	@test -x $(PY) || $(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(VENV)/bin/marsice demo -o $(DEMO_DIR)

# Two pytest-xdist workers: most tests wait on child processes, QGIS or local servers (see tests/conftest.py).
test: setup lint
	$(PY) -m pytest -q -n 2

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Retrain the shipped demo weights (about 30 minutes on 2 CPU cores; see models/demo_xception_256.md).
demo-model: setup
	$(VENV)/bin/marsice train --synthetic 800 --data-seed 1000 --epochs 10 --input-size 256 --bn-momentum 0.9 \
	  -o models/demo_xception_256.keras

# The shipped detector: the demo weights fine-tuned on 1,600 new generated chunks (real-band geometry,
# per-CCD steps, the evaluation's 16-pixel label rule, sun-aware augmentation); see its model card.
model: setup
	$(VENV)/bin/marsice train --synthetic 1600 --data-seed 30000 --init models/demo_xception_256.keras --epochs 8 \
	  --learning-rate 3e-4 --augment sun --keep-best -o models/marsice_xception_256.keras

# Real HiRISE pixels for training and threshold choice (read in place, never copied into the project; only the
# landmark tiles' open split is read, see marsice_plugin/cnn/real_tiles.py).
REAL ?= ../shared/realdata
REAL_INDEX ?= ../shared/data/hirise_rdr_color_index.csv.gz

# The fast-read detector (--fast), in three fine-tuning stages (about 85 minutes on 2 cores, plus about 80 for
# stage 3 on shared cores); see its model card. Stage 1: the full-read weights on 2,000 chunks decoded at JPEG2000
# level 2, as 'marsice detect' then reads products (its card's read_level). Stage 2: 1,600 more chunks, half with a
# strip-edge no-data band, as the chunks along a product's black margins are. Stage 3: 800 more rendered chunks
# with real ice-free tiles of the open split and the same tiles with planted patches.
model-level2: setup
	mkdir -p build/models
	$(VENV)/bin/marsice train --synthetic 2000 --data-seed 32000 --read-level 2 \
	  --init models/marsice_xception_256.keras --epochs 8 --learning-rate 3e-4 --augment sun --keep-best \
	  -o build/models/level2_stage1.keras
	$(VENV)/bin/marsice train --synthetic 1600 --data-seed 34000 --edge-nodata 0.5 --read-level 2 \
	  --init build/models/level2_stage1.keras --epochs 6 --learning-rate 1e-4 --augment sun --keep-best \
	  -o build/models/level2_rendered.keras
	$(VENV)/bin/marsice train --synthetic 800 --data-seed 60000 --edge-nodata 0.5 --hard-ice 0.3 --read-level 2 \
	  --real $(REAL)/landmark_tiles --real-index $(REAL_INDEX) --init build/models/level2_rendered.keras \
	  --epochs 4 --learning-rate 1e-4 --augment sun --keep-best -o models/marsice_xception_256_level2.keras

# The finer read (about 95 minutes on 2 cores, then its last layer refitted on real tiles, about 40 more on
# shared cores; see its model card): the default level-2 weights carried over
# to 512 px inputs and fine-tuned on 1,600 new chunks decoded at JPEG2000 level 1 (twice the detail), half
# with strip-edge no-data bands. Batches of 10: 512 px in the paper's batches of 25 needs about 25 GiB.
model-level1: setup
	$(VENV)/bin/marsice train --synthetic 1600 --data-seed 40000 --edge-nodata 0.5 --read-level 1 --input-size 512 \
	  --init build/models/level2_rendered.keras --epochs 5 --batch-size 10 --learning-rate 2e-4 --augment sun \
	  --keep-best -o build/models/level1_rendered.keras
	$(VENV)/bin/marsice train --head-only --batch-size 8 --synthetic 600 --data-seed 62000 --edge-nodata 0.5 \
	  --hard-ice 0.3 --read-level 1 --input-size 512 --real $(REAL)/landmark_tiles --real-index $(REAL_INDEX) \
	  --init build/models/level1_rendered.keras -o models/marsice_xception_512_level1.keras

# The default detector, in seconds (no training): the two models above as one Keras model that averages their
# probabilities, read at level 1 (chosen on held-out chunks, bench/heldout_compare.py; see its card).
model-ensemble: setup
	$(VENV)/bin/marsice ensemble models/marsice_xception_512_level1.keras models/marsice_xception_256_level2.keras \
	  -o models/marsice_ensemble_512_level1.keras

# detect's default threshold of the shipped models, chosen on tuning products and written into their cards
# (bench/choose_threshold.py; about 8 minutes for the ensemble, 3 for the fast model, on 2 cores)
model-threshold: setup
	$(VENV)/bin/python bench/choose_threshold.py models/marsice_ensemble_512_level1.keras --write-card \
	  -o models/marsice_ensemble_512_level1.threshold.json
	$(VENV)/bin/python bench/choose_threshold.py models/marsice_xception_256_level2.keras --write-card \
	  --real $(REAL)/landmark_tiles --real-index $(REAL_INDEX) -o models/marsice_xception_256_level2.threshold.json

# The second stage (about 90 minutes on 2 shared cores; see models/marsice_patch_64.md): the union of two small
# CNNs on level-0 crops of the brightness rule's candidates. The rendered member: rendered products (seeds
# 200000-200359, tuning 210000-210089) and real ice-free HiRISE pixels (../shared/realdata, open split only). The
# real-texture member: the same plus open-split tiles with ice and decoys planted three times at the crops' scale.
# The union keeps what either keeps; the second member's threshold holds real tuning negatives to 1 %.
model-patch: setup
	$(VENV)/bin/python bench/train_patch_model.py -o build/patch_model/rendered/marsice_patch_64.keras
	$(VENV)/bin/python bench/train_patch_model.py --join-diagonals -o build/patch_model/joined/marsice_patch_64.keras
	$(VENV)/bin/python bench/train_patch_model.py --mean build/patch_model/rendered/marsice_patch_64.keras \
	  build/patch_model/joined/marsice_patch_64.keras -o build/patch_model/mean/marsice_patch_64.keras
	$(VENV)/bin/python bench/train_patch_model.py --plant-rounds 3 --plant-radius 2 12 \
	  -o build/patch_model/planted/marsice_patch_64.keras
	$(VENV)/bin/python bench/train_patch_model.py --union build/patch_model/planted/marsice_patch_64.keras \
	  --compare build/patch_model/mean/marsice_patch_64.keras -o models/marsice_patch_64.keras

# The models the plugin runs: the default ensemble and the fast model (--fast), each with its card, and detect's
# second stage (marsice_patch_64, `make model-patch`) where it has been built.
ZIP_MODELS := $(foreach m,marsice_ensemble_512_level1 marsice_xception_256_level2,\
  models/$(m).keras models/$(m).card.json models/$(m).md) \
  $(wildcard $(foreach e,keras card.json md,models/marsice_patch_64.$(e)))

# An installable plugin zip: the package folder with metadata.txt inside (symlinks resolved), the shipped
# models as package data in marsice_plugin/models/ (about 30 MB: deflate gains little on network weights), and
# pyproject.toml, the one list of pins: the plugin's first-run set-up installs them (marsice_plugin/environment.py).
# ZIP_BUILD and ZIP_DIST (absolute or relative paths) let a test build its own zip beside a running `make zip`.
ZIP_BUILD ?= build/zip
ZIP_DIST ?= dist
zip:
	@rm -rf $(ZIP_BUILD) && mkdir -p $(ZIP_BUILD)/marsice_plugin/models $(ZIP_DIST)
	cp -rL marsice_plugin/. $(ZIP_BUILD)/marsice_plugin
	cp $(ZIP_MODELS) $(ZIP_BUILD)/marsice_plugin/models/
	cp pyproject.toml $(ZIP_BUILD)/marsice_plugin/
	find $(ZIP_BUILD) -name __pycache__ -prune -exec rm -rf {} +
	rm -f $(ZIP_DIST)/marsice_plugin.zip
	$(SYSTEM_PYTHON) -c "import shutil; shutil.make_archive('$(abspath $(ZIP_DIST))/marsice_plugin', 'zip', '$(ZIP_BUILD)', 'marsice_plugin')"
	@echo "$(ZIP_DIST)/marsice_plugin.zip"

clean:
	rm -rf build dist $(DEMO_DIR) .pytest_cache .ruff_cache
