# The appliance's disk images; included by the top-level Makefile (see image/README.md).
# Every setting is VAR ?= default: `make image IMAGE_XZ_OPT=-9`, `make image-flash DEVICE=/dev/sdX`.
#
# The images are files made from files, so make rebuilds only what changed:
#   image/packages, hooks, files ─▶ build/image/pi/base.tar      (mmdebstrap, ~20 min emulated; cached)
#   base.tar + wheel + ansible/ + rootfs/ ─▶ build/image/pi/rootfs.tar   (the playbook stage)
#   rootfs.tar ─▶ build/appliance-V-arm64.img ─▶ .img.xz ─▶ .img.xz.sha256
#                                              └▶ .img.bmap           build/os-list.json
# An app-only change rebuilds the wheel, then only the playbook stage and what follows it.
# The build needs root (mmdebstrap, chroot, mounts); `image/README.md` lists the host packages.

IMAGE_NAME ?= appliance
# git describe, once per make run (the file names and the build id use it).
IMAGE_GIT_DESCRIBE := $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
IMAGE_VERSION ?= $(IMAGE_GIT_DESCRIBE)
IMAGE_BUILD_DATE := $(shell date -u +%Y%m%dT%H%M%SZ)
# Stamped into /etc/appliance-release.
IMAGE_BUILD_ID ?= $(IMAGE_VERSION)-$(IMAGE_BUILD_DATE)
IMAGE_BUILD ?= build
IMAGE_WORK ?= $(IMAGE_BUILD)/image
IMAGE_SUITE ?= trixie
IMAGE_MIRROR ?= http://deb.debian.org/debian
# Added to image/packages/*.list when the base is built (space-separated).
IMAGE_EXTRA_PACKAGES ?=
# Customise this existing image (e.g. raspios-trixie-arm64-lite.img.xz) instead of building Debian.
BASE_IMAGE ?=
# -T0: all cores; -6: xz's default level (-9 saves a few MB for twice the time and memory).
IMAGE_XZ_OPT ?= -T0 -6
# Where the images will be downloaded from, for build/os-list.json (default: this directory).
IMAGE_BASE_URL ?=
# Raspberry Pi Imager device tags the image is offered for.
IMAGE_DEVICES ?= pi3-64bit pi4-64bit
# Loopback ports for the boot tests (0: pick a free one).
IMAGE_TEST_HTTP_PORT ?= 0
IMAGE_TEST_SSH_PORT ?= 0
IMAGE_PLAYBOOK ?= ansible/site.yml
IMAGE_VENV ?= $(or $(VENV),.venv)
IMAGE_PYTHON ?= $(if $(wildcard $(IMAGE_VENV)/bin/python),$(IMAGE_VENV)/bin/python,python3)
# ansible from `make setup` when it is there, else a virtualenv of its own under build/.
IMAGE_ANSIBLE_VENV ?= $(IMAGE_WORK)/ansible-venv
IMAGE_ANSIBLE_PLAYBOOK ?= $(if $(wildcard $(IMAGE_VENV)/bin/ansible-playbook),$(IMAGE_VENV)/bin/ansible-playbook,$(IMAGE_ANSIBLE_VENV)/bin/ansible-playbook)
IMAGE_WHEEL_DIR ?= $(IMAGE_WORK)/dist
# The twin: disk image, kernel and initrd for QEMU's direct boot.
TWIN_DIR ?= $(IMAGE_BUILD)/twin
# make image-flash DEVICE=/dev/sdX; FLASH_FORCE=1 allows a disk that is not removable/USB/SD (never a
# mounted or system disk); FLASH_YES=1 skips the question.
DEVICE ?=
FLASH_FORCE ?=
FLASH_YES ?=

IMAGE_FLAVOUR := $(if $(BASE_IMAGE),-custom)
IMAGE_IMG := $(IMAGE_BUILD)/$(IMAGE_NAME)-$(IMAGE_VERSION)$(IMAGE_FLAVOUR)-arm64.img
IMAGE_XZ := $(IMAGE_IMG).xz
IMAGE_SHA256 := $(IMAGE_XZ).sha256
IMAGE_BMAP := $(IMAGE_IMG).bmap
IMAGE_OS_LIST := $(IMAGE_BUILD)/os-list.json
TWIN_IMG := $(TWIN_DIR)/disk.img

IMAGE_BASE_DEPS := image/build-base.sh image/lib.sh $(wildcard image/hooks/*.sh image/packages/*.list) \
  $(shell find image/files -type f 2>/dev/null)
IMAGE_APP_SOURCES := pyproject.toml \
  $(shell find appliance -type f -not -path '*/__pycache__/*' -not -name '*.pyc' 2>/dev/null)
IMAGE_WHEEL_STAMP := $(IMAGE_WORK)/dist.stamp
IMAGE_PLAYBOOK_DEPS := image/provision.sh image/lib.sh image/provision-lib.sh constraints.txt $(IMAGE_WHEEL_STAMP) \
  $(shell find ansible rootfs -type f 2>/dev/null)
# The settings the scripts read, passed explicitly to each (nothing exported to other recipes).
IMAGE_ENV = IMAGE_SUITE='$(IMAGE_SUITE)' IMAGE_MIRROR='$(IMAGE_MIRROR)' \
  IMAGE_EXTRA_PACKAGES='$(IMAGE_EXTRA_PACKAGES)' IMAGE_VERSION='$(IMAGE_VERSION)' \
  IMAGE_BUILD_ID='$(IMAGE_BUILD_ID)' IMAGE_PLAYBOOK='$(IMAGE_PLAYBOOK)' \
  IMAGE_ANSIBLE_PLAYBOOK='$(IMAGE_ANSIBLE_PLAYBOOK)' IMAGE_CONSTRAINTS=constraints.txt \
  IMAGE_WHEEL="$$(ls $(IMAGE_WHEEL_DIR)/*.whl)" ANSIBLE_CONFIG=ansible/ansible.cfg

.PHONY: image image-base image-test twin twin-base twin-test image-flash os-list image-clean image-FORCE

# Kept although only pattern rules name them: they are the cache that makes rebuilds quick.
.PRECIOUS: $(IMAGE_WORK)/%/base.tar $(IMAGE_WORK)/%/rootfs.tar

image: $(IMAGE_XZ) $(IMAGE_SHA256) $(IMAGE_BMAP) $(IMAGE_OS_LIST) ## the Pi image: build/appliance-V-arm64.img.xz, .bmap, .sha256 (BASE_IMAGE=... customises one)
	@echo "Built $(IMAGE_XZ) ($$(du -h $(IMAGE_XZ) | cut -f1)), $(IMAGE_BMAP), $(IMAGE_SHA256), $(IMAGE_OS_LIST)"

image-base: $(IMAGE_WORK)/pi/base.tar ## only the cached Debian arm64 base root file system (mmdebstrap)

twin: $(TWIN_IMG) ## the amd64 twin for QEMU: build/twin/disk.img, vmlinuz, initrd.img
	@echo "Built $(TWIN_DIR): disk.img, vmlinuz, initrd.img; boot it with image/boot-twin.sh"

twin-base: $(IMAGE_WORK)/twin/base.tar

os-list: $(IMAGE_OS_LIST) ## the Raspberry Pi Imager repository file (IMAGE_BASE_URL=https://... where the .xz is served)

image-test: $(IMAGE_IMG) ## image tool tests, then boot the Pi image in QEMU -M virt: login, supervisor's programs, /health via nginx
	APPLIANCE_IMAGE='$(IMAGE_IMG)' APPLIANCE_IMAGE_HTTP_PORT='$(IMAGE_TEST_HTTP_PORT)' \
	  APPLIANCE_IMAGE_SSH_PORT='$(IMAGE_TEST_SSH_PORT)' \
	  $(IMAGE_PYTHON) -m pytest -p no:cacheprovider tests/image -m 'tools or pi' -v -s

twin-test: $(TWIN_IMG) ## boot the twin in qemu-system-x86_64: login, supervisor's programs, /health via nginx
	APPLIANCE_TWIN_DIR='$(TWIN_DIR)' APPLIANCE_IMAGE_HTTP_PORT='$(IMAGE_TEST_HTTP_PORT)' \
	  APPLIANCE_IMAGE_SSH_PORT='$(IMAGE_TEST_SSH_PORT)' \
	  $(IMAGE_PYTHON) -m pytest -p no:cacheprovider tests/image -m twin -v -s

image-flash: ## write the image to a card: make image-flash DEVICE=/dev/sdX (refuses mounted and system disks)
	@test -n '$(DEVICE)' || { echo "Say which card: make image-flash DEVICE=/dev/sdX (lsblk lists them)"; exit 2; }
	@test -f '$(IMAGE_XZ)' -a -f '$(IMAGE_BMAP)' || { echo "No $(IMAGE_XZ) with its .bmap: make image first"; exit 2; }
	FLASH_FORCE='$(FLASH_FORCE)' FLASH_YES='$(FLASH_YES)' image/flash.sh '$(IMAGE_XZ)' '$(DEVICE)'

image-clean: ## remove image build output, keeping the cached base root file systems
	rm -rf $(TWIN_DIR) $(IMAGE_WORK)/*/rootfs.tar $(IMAGE_WORK)/*/rootfs.d $(IMAGE_WORK)/dist $(IMAGE_WHEEL_STAMP)
	rm -f $(IMAGE_BUILD)/$(IMAGE_NAME)-*-arm64.img* $(IMAGE_OS_LIST)

# --- the chain ---

$(IMAGE_WORK)/%/base.tar: $(IMAGE_BASE_DEPS)
	@mkdir -p $(@D)
	$(IMAGE_ENV) image/build-base.sh $* $@

# The app as a wheel (build isolation fetches the pinned setuptools); the browser libraries it
# serves must be in place first.
$(IMAGE_WHEEL_STAMP): $(IMAGE_APP_SOURCES) $(VENDOR_JS)
	rm -rf $(IMAGE_WHEEL_DIR)
	$(IMAGE_PYTHON) -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir $(IMAGE_WHEEL_DIR) .
	@ls $(IMAGE_WHEEL_DIR)/*.whl
	@touch $@

$(IMAGE_ANSIBLE_VENV)/bin/ansible-playbook: constraints.txt
	python3 -m venv $(IMAGE_ANSIBLE_VENV)
	$(IMAGE_ANSIBLE_VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints.txt ansible ansible-core
	@touch $@

$(IMAGE_WORK)/%/rootfs.tar: $(IMAGE_WORK)/%/base.tar $(IMAGE_PLAYBOOK_DEPS) | $(IMAGE_ANSIBLE_PLAYBOOK)
	$(IMAGE_ENV) image/provision.sh $* $< $@

$(IMAGE_BUILD)/$(IMAGE_NAME)-%-arm64.img: $(IMAGE_WORK)/pi/rootfs.tar image/mkimage.sh
	IMAGE_VERSION='$(IMAGE_VERSION)' IMAGE_BUILD_ID='$(IMAGE_BUILD_ID)' image/mkimage.sh $< $@

ifneq ($(BASE_IMAGE),)
# Records which base image was used, rewritten only when it changes, so that pointing BASE_IMAGE at
# another file rebuilds even when that file is older than the output. The base image itself is no
# prerequisite: an image of this build (build/appliance-V-arm64.img.xz) matches the rules above,
# and make would rebuild it from the current root file system before using it as the base.
$(IMAGE_WORK)/base-image.id: image-FORCE
	@test -f '$(BASE_IMAGE)' || { echo "BASE_IMAGE=$(BASE_IMAGE) is not a file"; exit 2; }
	@mkdir -p $(@D)
	@id="$$(realpath '$(BASE_IMAGE)') $$(stat -c '%s %Y' '$(BASE_IMAGE)')"; \
	  [ "$$(cat $@ 2>/dev/null)" = "$$id" ] || echo "$$id" > $@

# The shorter stem wins over the rule above for these names.
$(IMAGE_BUILD)/$(IMAGE_NAME)-%-custom-arm64.img: $(IMAGE_WORK)/base-image.id \
    image/customize-image.sh $(IMAGE_PLAYBOOK_DEPS) | $(IMAGE_ANSIBLE_PLAYBOOK)
	$(IMAGE_ENV) image/customize-image.sh '$(BASE_IMAGE)' $@
endif

$(TWIN_IMG): $(IMAGE_WORK)/twin/rootfs.tar image/mkimage.sh
	IMAGE_VERSION='$(IMAGE_VERSION)' IMAGE_BUILD_ID='$(IMAGE_BUILD_ID)' image/mkimage.sh $< $@ $(TWIN_DIR)

%.img.xz: %.img image/compress.sh
	image/compress.sh $< $@ $(IMAGE_XZ_OPT)

%.img.xz.sha256: %.img.xz
	cd $(@D) && sha256sum $(<F) > $(@F).tmp && mv $(@F).tmp $(@F)

%.img.bmap: %.img
	bmaptool create --output $@.tmp $<
	mv $@.tmp $@

$(IMAGE_OS_LIST): $(IMAGE_XZ) $(IMAGE_IMG) image/os-list.py
	$(IMAGE_PYTHON) image/os-list.py --image $(IMAGE_IMG) --xz $(IMAGE_XZ) --base-url '$(IMAGE_BASE_URL)' \
	  --devices '$(IMAGE_DEVICES)' --release '$(IMAGE_BUILD_ID)' --output $@
