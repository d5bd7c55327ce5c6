# Appliance: `make run` serves the app on embedded defaults, `make test` runs the tests.
# Every setting is VAR ?= default, so `make run PORT=8080` works.

PYTHON ?= python3
VENV ?= .venv
PORT ?= 8000
HOST ?= 127.0.0.1
DATA_DIR ?= var
# make run's simulated beacons: python (bumble) or sketch (the firmware itself, built for the host)
BEACONS ?= python
# make run's printer: none, or standin (a stand-in Bambu A1 on loopback: mosquitto, a printer player
# and a TLS camera; appliance_sim/printer/). Its ports:
PRINTER ?= none
STANDIN_MQTT_PORT ?= 18883
STANDIN_CAMERA_PORT ?= 16000
PYTEST_ARGS ?=
# make run's satellite scanners: 0, or 1-5 simulated rooms each with a scanner (appliance_sim/rooms.py)
# sending its sightings to the appliance through mosquitto on loopback (SCANNERS_MQTT_PORT)
SCANNERS ?= 0
SCANNERS_MQTT_PORT ?= 11883
# make hil-test: which rig (tests/hil/rigs/RIG.yaml): virtual (the twin in QEMU, built when needed) or lab
RIG ?= virtual
HIL_ARGS ?=
HIL_REPORT ?= build/hil-report.xml
# Not on the virtual rig, by name: scenario 8 flashes a real Nano 33 BLE over USB (the lab rig's).
HIL_VIRTUAL_DESELECT := --deselect tests/hil/test_appliance.py::test_8_flash_the_beacon_and_its_version_matches_the_build

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Browser libraries come from npm (pinned in package-lock.json) and are served by the app.
VENDOR := appliance/web/static/vendor
VENDOR_JS := $(VENDOR)/socket.io.min.js

.PHONY: help system-packages setup run test pytest lint bench bench-smoke bench-relay firmware-test firmware-size firmware firmware-sim flash \
  flash-beacons wheel hil-test constraints clean fuzz soak

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

setup: $(STAMP) $(VENDOR_JS) ## create .venv with the app and the dev tools, fetch browser libraries (idempotent)

$(VENDOR_JS): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: sudo apt-get install npm"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/socket.io-client/dist/socket.io.min.js $@

# The venv is rebuilt when the dependencies change; pip only installs the pinned versions.
$(STAMP): pyproject.toml sim/pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is needed: sudo apt-get install python3 python3-venv"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || \
	  { echo "venv is missing: sudo apt-get install python3-venv"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt pip
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]' -e ./sim
	@touch $@

# PRINTER=standin starts the stand-in printer first (it writes a new access code file) and stops it
# when the app stops. Its certificate is new each time, so the pinned one is forgotten first.
STANDIN_ENV := APPLIANCE_PRINTER_HOST=127.0.0.1 APPLIANCE_PRINTER_SERIAL=03919A3A2200009 \
  APPLIANCE_PRINTER_MQTT_PORT=$(STANDIN_MQTT_PORT) APPLIANCE_PRINTER_CAMERA_PORT=$(STANDIN_CAMERA_PORT)

run: setup $(if $(filter sketch,$(BEACONS)),firmware-sim) ## serve the app at http://$(HOST):$(PORT) (data in ./var, simulated beacons; BEACONS=sketch runs the firmware; PRINTER=standin a stand-in Bambu A1; SCANNERS=3 three rooms with scanners over MQTT)
	@test "$(PRINTER)" = none -o "$(PRINTER)" = standin || { echo "PRINTER=none or PRINTER=standin"; exit 2; }
	@$(BIN)/python -c 'print("Open http://$(HOST):$(PORT)  (first time: $(BIN)/appliance user add NAME)")'
ifneq ($(SCANNERS),0)
	@# The beacons are in the rooms (the appliance's own radio hears none); the app starts once the
	@# rooms have issued their scanners' credentials and started the broker.
	@set -eu; mkdir -p $(DATA_DIR); \
	  $(BIN)/python -m appliance_sim.rooms --data-dir $(DATA_DIR) --scanners $(SCANNERS) \
	    --port $(SCANNERS_MQTT_PORT) & rooms=$$!; \
	  trap 'kill $$rooms 2>/dev/null; wait $$rooms 2>/dev/null' EXIT INT TERM; \
	  while [ ! -e $(DATA_DIR)/sim-rooms/ready ]; do sleep 0.2; kill -0 $$rooms; done; \
	  APPLIANCE_DATA_DIR=$(DATA_DIR) APPLIANCE_RADIO=virtual APPLIANCE_VIRTUAL_BEACONS=0 \
	    APPLIANCE_MQTT_EMBEDDED=true APPLIANCE_MQTT_EMBEDDED_PORT=$(SCANNERS_MQTT_PORT) \
	    APPLIANCE_MQTT_HOMEASSISTANT=true $(BIN)/appliance serve --host $(HOST) --port $(PORT)
else ifeq ($(PRINTER),standin)
	@set -eu; mkdir -p $(DATA_DIR); rm -f $(DATA_DIR)/printer-access-code $(DATA_DIR)/printer-cert.sha256; \
	  $(BIN)/python -m appliance_sim.printer --dir $(DATA_DIR)/standin-printer \
	    --access-code-file $(DATA_DIR)/printer-access-code \
	    --mqtt-port $(STANDIN_MQTT_PORT) --camera-port $(STANDIN_CAMERA_PORT) & standin=$$!; \
	  trap 'kill $$standin 2>/dev/null; wait $$standin 2>/dev/null' EXIT INT TERM; \
	  while [ ! -s $(DATA_DIR)/printer-access-code ]; do sleep 0.2; kill -0 $$standin; done; \
	  APPLIANCE_DATA_DIR=$(DATA_DIR) APPLIANCE_RADIO=virtual APPLIANCE_VIRTUAL_BEACON_KIND=$(BEACONS) \
	    $(STANDIN_ENV) $(BIN)/appliance serve --host $(HOST) --port $(PORT)
else
	APPLIANCE_DATA_DIR=$(DATA_DIR) APPLIANCE_RADIO=virtual APPLIANCE_VIRTUAL_BEACON_KIND=$(BEACONS) \
	  $(BIN)/appliance serve --host $(HOST) --port $(PORT)
endif

system-packages: ## the Debian packages make test needs (system-packages/test.txt): installed as root, else the apt-get line
	@tools/apt-needs test

test: system-packages lint pytest firmware-test ## everything that runs in minutes: lint, unit and integration tests, firmware

pytest: system-packages setup firmware-sim ## the Python tests
	@# Our own temporary directory: pytest keeps three runs per user in /tmp, so two checkouts
	@# testing at once would delete each other's (nginx lost its files that way).
	mkdir -p build
	$(BIN)/pytest --basetemp=$(CURDIR)/build/pytest $(PYTEST_ARGS)

lint: setup ## ruff, mypy --strict (the app, the simulation) and the import contracts (pyproject.toml)
	$(BIN)/ruff check appliance sim tests firmware/flash.py
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/mypy --strict firmware/flash.py

firmware-test: firmware-sim ## build the beacon sketch on the host and run its unit tests
	$(MAKE) -C firmware test

firmware-sim: ## build the sketch as a simulated beacon (firmware/build/sim/beacon-sim)
	$(MAKE) -C firmware sim

# Two things get flashed, each with its own target: beacons here, the card in image/image.mk.
flash-beacons: setup ## flash Nano 33 BLE boards with the beacon sketch (BEACON_ID=n | FIRST_ID=n | IMAGE=f.bin)
	$(MAKE) -C firmware flash FLASH_PYTHON=$(abspath $(BIN))/python $(if $(IMAGE),IMAGE=$(abspath $(IMAGE)))

flash:
	@echo "Say what to flash: make flash-beacons BEACON_ID=n (Nano 33 BLE boards) or"
	@echo "  sudo make flash-card DEVICE=/dev/sdX (the image onto a card)"; exit 2

firmware-size: ## compile the sketch's logic for the Nano 33 BLE (Cortex-M4) and print its size
	$(MAKE) -C firmware size

firmware: ## compile the real sketch with arduino-cli (when installed)
	$(MAKE) -C firmware firmware

# The virtual rig boots the twin, so it is built first (as root; ~5 min from nothing, see image/README.md).
# python -m pytest: the repository root is on sys.path, where the rigs import the image's tools.
hil-test: setup firmware-sim $(if $(filter virtual,$(RIG)),twin) ## hardware-in-the-loop suite on RIG=virtual (default) or RIG=lab; JUnit report in build/hil-report.xml
	@test -f tests/hil/rigs/$(RIG).yaml || { echo "No rig '$(RIG)': RIG=virtual or RIG=lab (tests/hil/rigs/)"; exit 2; }
	$(BIN)/python -m pytest tests/hil -p no:cacheprovider -v --lg-env tests/hil/rigs/$(RIG).yaml \
	  --junitxml=$(HIL_REPORT) -o junit_suite_name=hil-$(RIG) -o junit_family=xunit2 \
	  $(if $(filter virtual,$(RIG)),$(HIL_VIRTUAL_DESELECT)) $(HIL_ARGS)

# BENCH_ARGS: e.g. --only rest,relay,printer --browsers 10 --seconds 8 (tests/bench/goals.py --help).
BENCH_ARGS ?=
bench: setup ## issue 14's goals beside their anchors (REST, relay, nginx, writes, start-up, RSS), issue 11's printer link, timelapse render time/CPU, MQTT scanners (CPU, RSS, latency); build/bench/
	$(BIN)/python tests/bench/goals.py --out build/bench $(BENCH_ARGS)
	$(BIN)/python tests/bench/timelapse_bench.py --out build/bench
	$(BIN)/python tests/bench/mqtt_bench.py --out build/bench

bench-smoke: setup ## make bench in miniature (2 browsers, a second a point), for CI: every row still runs and gives a number; build/bench-smoke/
	$(BIN)/python tests/bench/smoke.py

# FUZZ_ARGS: e.g. --examples 100 --sio-examples 200 (tests/hardening/fuzz.py --help).
FUZZ_ARGS ?=
fuzz: setup ## schemathesis (every check; anonymous, logged in, with a token) and a Socket.IO fuzzer against `appliance serve`; 0 server errors, db check ok (minutes; build/fuzz/)
	$(BIN)/python tests/hardening/fuzz.py --out build/fuzz $(FUZZ_ARGS)

# SOAK_ARGS: e.g. --minutes 60 --browsers 100 (tests/hardening/soak.py --help).
SOAK_ARGS ?=
soak: setup ## 100 browsers, 2 publishers at 2 fps, 20 logins/min through nginx for 10 min: errors, RSS growth, p95 frame latency (build/soak/)
	$(BIN)/python tests/hardening/soak.py --out build/soak $(SOAK_ARGS)

bench-relay: setup ## the full relay table (1, 10, 50 browsers, deflate on and off); build/bench/
	$(BIN)/python tests/bench/relay_bench.py --out build/bench

# The one wheel build, for `make wheel`, the image and ansible/site.yml (group_vars/all.yml looks
# in build/dist). Rebuilt when the app changes. Its sources are listed (find) only when make
# considers the stamp: a pattern rule's $$ prerequisites are expanded when the rule is used
# (.SECONDEXPANSION), an explicit rule's may be expanded while make reads the file. Build isolation
# fetches the pinned setuptools; the browser libraries it serves must be in place first.
WHEEL_DIR := build/dist
WHEEL_STAMP := $(WHEEL_DIR)/wheel.stamp
WHEEL_SOURCES = pyproject.toml $(shell find appliance -type f -not -path '*/__pycache__/*' -not -name '*.pyc')
# The venv's Python when `make setup` has run, else the host's (an image build as root).
WHEEL_PYTHON = $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))

.SECONDEXPANSION:
$(WHEEL_DIR)/%.stamp: $$(WHEEL_SOURCES) $(VENDOR_JS)
	rm -rf $(WHEEL_DIR)
	$(WHEEL_PYTHON) -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir $(WHEEL_DIR) .
	@touch $@

wheel: $(WHEEL_STAMP) ## build the app's wheel into build/dist (the image and ansible install it)
	@ls $(WHEEL_DIR)/*.whl

constraints: ## re-pin every dependency after changing pyproject.toml
	rm -rf build/constraints-venv
	$(PYTHON) -m venv build/constraints-venv
	build/constraints-venv/bin/pip install --quiet --upgrade pip
	build/constraints-venv/bin/pip install --quiet '.[dev]' ./sim
	{ echo "# Exact versions for every install (make setup, the image). Regenerate with: make constraints"; \
	  build/constraints-venv/bin/pip freeze --all --exclude-editable | grep -v -e '^appliance' -e '^setuptools'; } > constraints.txt

clean: ## remove build output (keeps .venv and var/)
	rm -rf build firmware/build .pytest_cache .mypy_cache .ruff_cache node_modules $(VENDOR)

# The disk images (make image, twin, image-test, flash-card): image/README.md
include image/image.mk
