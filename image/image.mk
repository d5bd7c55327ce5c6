# The appliance's disk images; included by the top-level Makefile (see image/README.md).
# Every setting is VAR ?= default: `make image IMAGE_XZ_OPT=-9`, `make flash-card DEVICE=/dev/sdX`.
#
# The images are files made from files, so make rebuilds only what changed:
#   image/packages, hooks, files ─▶ build/image/pi/base.tar      (mmdebstrap, emulated; cached)
#   base.tar + ansible/ ─▶ build/image/pi/rootfs.tar   (the playbook stage, emulated; no app in it)
#   rootfs.tar + wheel (make wheel) ─▶ build/appliance-V-arm64.img (+ .img.release, the stamp)
#     (the host's pip installs the app)  ─▶ .img.xz ─▶ .img.xz.sha256
#                                        └▶ .img.bmap           build/os-list.json
# An app-only change rebuilds the wheel, then the image from the cached playbook stage. (The twin's
# playbook stage installs the wheel itself: it is not emulated.)
#
# Nothing here runs a command while make reads this file (make test and make help pay nothing):
# the version (git describe) is computed the first time a rule needs it, the source lists (find)
# only for the rule being considered ($$ prerequisites: .SECONDEXPANSION), the build date when
# the image is assembled.
# The build needs root (mmdebstrap, chroot, mounts); `image/README.md` lists the host packages.

IMAGE_NAME ?= appliance
# The version in the file names and the stamp: git describe, run once, on first use (the eval
# replaces this definition with its value).
IMAGE_VERSION ?= $(eval IMAGE_VERSION := $$(shell git describe --tags --always --dirty 2>/dev/null || echo unknown))$(IMAGE_VERSION)
# Stamped into /etc/appliance-release (default: VERSION-YYYYMMDDTHHMMSSZ when the image is made).
IMAGE_BUILD_ID ?=
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
# The twin: disk image, kernel and initrd for QEMU's direct boot.
TWIN_DIR ?= $(IMAGE_BUILD)/twin
# make flash-card DEVICE=/dev/sdX; FLASH_FORCE=1 allows a disk that is not removable/USB/SD (never a
# mounted or system disk); FLASH_YES=1 skips the question.
# The stand-in of Raspberry Pi OS Lite's layout (pios-standin.sh), a test input for BASE_IMAGE=...;
# compressed quickly: it is only ever unpacked here.
PIOS_STANDIN_IMG ?= $(IMAGE_BUILD)/raspios-STANDIN-trixie-arm64-lite.img
PIOS_STANDIN_XZ_OPT ?= -T0 -1
DEVICE ?=
FLASH_FORCE ?=
FLASH_YES ?=

IMAGE_FLAVOUR := $(if $(BASE_IMAGE),-custom)
# Recursive (=): the version is only asked for where a name is used, in a recipe or a $$ prerequisite.
IMAGE_IMG = $(IMAGE_BUILD)/$(IMAGE_NAME)-$(IMAGE_VERSION)$(IMAGE_FLAVOUR)-arm64.img
IMAGE_XZ = $(IMAGE_IMG).xz
IMAGE_SHA256 = $(IMAGE_XZ).sha256
IMAGE_BMAP = $(IMAGE_IMG).bmap
IMAGE_OS_LIST := $(IMAGE_BUILD)/os-list.json
TWIN_IMG := $(TWIN_DIR)/disk.img

# Listed (find) only when a rule that needs them is considered.
IMAGE_BASE_DEPS = image/build-base.sh image/lib.sh $(wildcard image/hooks/*.sh image/packages/*.list) \
  $(shell find image/files -type f)
IMAGE_PLAYBOOK_DEPS = image/provision.sh image/lib.sh image/provision-lib.sh constraints.txt \
  $(shell find ansible -type f)
# The settings the scripts read, passed explicitly to each (nothing exported to other recipes).
IMAGE_ENV = IMAGE_SUITE='$(IMAGE_SUITE)' IMAGE_MIRROR='$(IMAGE_MIRROR)' \
  IMAGE_EXTRA_PACKAGES='$(IMAGE_EXTRA_PACKAGES)' IMAGE_PLAYBOOK='$(IMAGE_PLAYBOOK)' \
  IMAGE_ANSIBLE_PLAYBOOK='$(IMAGE_ANSIBLE_PLAYBOOK)' IMAGE_CONSTRAINTS=constraints.txt \
  IMAGE_WHEEL="$$(ls $(WHEEL_DIR)/*.whl)" ANSIBLE_CONFIG=ansible/ansible.cfg

.PHONY: release pios-standin pios-test pios-boot-test pios-test-files image image-files image-base image-test image-tools-test image-test-files twin twin-base twin-test flash-card os-list image-clean image-FORCE

.SECONDEXPANSION:

# Kept although only pattern rules name them: the cache that makes rebuilds quick, and the images
# that `make os-list` alone would otherwise delete as intermediate files.
.PRECIOUS: $(PIOS_STANDIN_IMG) $(IMAGE_WORK)/%/base.tar $(IMAGE_WORK)/%/rootfs.tar $(IMAGE_BUILD)/$(IMAGE_NAME)-%-arm64.img %.img.xz

image: ## the Pi image: build/appliance-V-arm64.img.xz, .bmap, .sha256 (BASE_IMAGE=... customises one)
	@start=$$(date +%s); $(MAKE) --no-print-directory IMAGE_VERSION='$(IMAGE_VERSION)' image-files; \
	  took=$$(($$(date +%s) - start)); echo "make image took $$((took / 60)) min $$((took % 60)) s"

image-base: $(IMAGE_WORK)/pi/base.tar ## only the cached Debian arm64 base root file system (mmdebstrap)

twin: $(TWIN_IMG) ## the amd64 twin for QEMU: build/twin/disk.img, vmlinuz, initrd.img
	@echo "Built $(TWIN_DIR): disk.img, vmlinuz, initrd.img; boot it with image/boot-twin.sh"

twin-base: $(IMAGE_WORK)/twin/base.tar

pios-standin: $(PIOS_STANDIN_IMG).xz ## a STAND-IN of Raspberry Pi OS Lite's layout from Debian packages, for BASE_IMAGE=...
	@echo "Built $(PIOS_STANDIN_IMG).xz (a stand-in, not Raspberry Pi OS): make image BASE_IMAGE=$(PIOS_STANDIN_IMG).xz"

# BASE_IMAGE for the Raspberry Pi OS tests: the one given, else the stand-in (built first).
PIOS_BASE = $(or $(BASE_IMAGE),$(PIOS_STANDIN_IMG).xz)
PIOS_TEST = @$(if $(BASE_IMAGE),,$(MAKE) --no-print-directory pios-standin &&) \
  $(MAKE) --no-print-directory IMAGE_VERSION='$(IMAGE_VERSION)' BASE_IMAGE='$(PIOS_BASE)'

pios-test: ## customise Raspberry Pi OS Lite (BASE_IMAGE=..., default the stand-in), check inside it against its base
	$(PIOS_TEST) PIOS_TEST_MARKS=pios pios-test-files

pios-boot-test: ## pios-test, then boot it in QEMU with Imager's user-data and the first-boot file
	$(PIOS_TEST) PIOS_TEST_MARKS='pios or pios_boot' pios-test-files

os-list: $(IMAGE_OS_LIST) ## the Raspberry Pi Imager repository file (IMAGE_BASE_URL=https://... where the .xz is served)

image-test: ## image tool tests, then boot the Pi image in QEMU -M virt: login, supervisor's programs, /health via nginx
	@$(MAKE) --no-print-directory IMAGE_VERSION='$(IMAGE_VERSION)' image-test-files

release: ## on a builder, before a release: the arm64 image from nothing, booted in QEMU (not in .ci/run, which it does not fit), then the Raspberry Pi OS path
	$(MAKE) --no-print-directory image image-test
	$(MAKE) --no-print-directory pios-boot-test

image-tools-test: ## the image tools' tests that need no built image (disk layout, flashing, os-list, base package lists): seconds
	$(IMAGE_PYTHON) -m pytest -p no:cacheprovider tests/image -m tools -v

twin-test: $(TWIN_IMG) ## boot the twin in qemu-system-x86_64: login, supervisor's programs, /health via nginx
	APPLIANCE_TWIN_DIR='$(TWIN_DIR)' APPLIANCE_IMAGE_HTTP_PORT='$(IMAGE_TEST_HTTP_PORT)' \
	  APPLIANCE_IMAGE_SSH_PORT='$(IMAGE_TEST_SSH_PORT)' \
	  $(IMAGE_PYTHON) -m pytest -p no:cacheprovider tests/image -m twin -v -s

flash-card: ## write the image to a card: make flash-card DEVICE=/dev/sdX (refuses mounted and system disks)
	@test -n '$(DEVICE)' || { echo "Say which card: make flash-card DEVICE=/dev/sdX (lsblk lists them)"; exit 2; }
	@test -f '$(IMAGE_XZ)' -a -f '$(IMAGE_BMAP)' || { echo "No $(IMAGE_XZ) with its .bmap: make image first"; exit 2; }
	FLASH_FORCE='$(FLASH_FORCE)' FLASH_YES='$(FLASH_YES)' image/flash.sh '$(IMAGE_XZ)' '$(DEVICE)'

image-clean: ## remove image build output, keeping the cached base root file systems
	rm -rf $(TWIN_DIR) $(IMAGE_WORK)/*/rootfs.tar $(IMAGE_WORK)/*/rootfs.d $(WHEEL_DIR)
	rm -f $(IMAGE_BUILD)/$(IMAGE_NAME)-*-arm64.img* $(IMAGE_OS_LIST)

# `make image` and `make image-test` ask git for the version in their recipes and hand it to a
# make that works on the files named after it: with IMAGE_VERSION on its command line, these
# rules name the files without running anything while make reads this file.
ifeq ($(origin IMAGE_VERSION),command line)
image-files: $(IMAGE_XZ) $(IMAGE_SHA256) $(IMAGE_BMAP) $(IMAGE_OS_LIST)
	@echo "Built $(IMAGE_XZ) ($$(du -h $(IMAGE_XZ) | cut -f1)), $(IMAGE_BMAP), $(IMAGE_SHA256), $(IMAGE_OS_LIST)"

image-test-files: $(IMAGE_IMG)
	APPLIANCE_IMAGE='$(IMAGE_IMG)' APPLIANCE_IMAGE_HTTP_PORT='$(IMAGE_TEST_HTTP_PORT)' \
	  APPLIANCE_IMAGE_SSH_PORT='$(IMAGE_TEST_SSH_PORT)' \
	  $(IMAGE_PYTHON) -m pytest -p no:cacheprovider tests/image -m 'tools or pi' -v -s

# The stand-in's uncompressed image when it lies beside its .xz: nothing to unpack.
pios-test-files: $(IMAGE_IMG)
	APPLIANCE_IMAGE='$(IMAGE_IMG)' APPLIANCE_PIOS_BASE='$(or $(wildcard $(BASE_IMAGE:.xz=)),$(BASE_IMAGE))' \
	  APPLIANCE_IMAGE_HTTP_PORT='$(IMAGE_TEST_HTTP_PORT)' APPLIANCE_IMAGE_SSH_PORT='$(IMAGE_TEST_SSH_PORT)' \
	  $(IMAGE_PYTHON) -m pytest -p no:cacheprovider tests/image/test_pios.py -m '$(PIOS_TEST_MARKS)' -v -s
endif

# --- the chain ---

$(IMAGE_WORK)/%/base.tar: $$(IMAGE_BASE_DEPS)
	@mkdir -p $(@D)
	$(IMAGE_ENV) image/build-base.sh $* $@

$(IMAGE_ANSIBLE_VENV)/bin/ansible-playbook: constraints.txt
	python3 -m venv $(IMAGE_ANSIBLE_VENV)
	$(IMAGE_ANSIBLE_VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints.txt ansible ansible-core
	@touch $@

# The Pi's playbook stage leaves the app out (IMAGE_WHEEL empty): mkimage.sh installs it.
$(IMAGE_WORK)/%/rootfs.tar: $(IMAGE_WORK)/%/base.tar $$(IMAGE_PLAYBOOK_DEPS) $$(if $$(filter twin,$$*),$(WHEEL_STAMP)) \
    | $(IMAGE_ANSIBLE_PLAYBOOK)
	$(IMAGE_ENV) $(if $(filter pi,$*),IMAGE_WHEEL=) image/provision.sh $* $< $@

# The settings of the release stamp, which mkimage.sh and customize-image.sh write.
IMAGE_RELEASE_ENV = IMAGE_VERSION='$(IMAGE_VERSION)' IMAGE_BUILD_ID='$(IMAGE_BUILD_ID)'

# The app goes in here, installed by the host's pip (install_app in provision-lib.sh).
$(IMAGE_BUILD)/$(IMAGE_NAME)-%-arm64.img: $(IMAGE_WORK)/pi/rootfs.tar image/mkimage.sh image/provision-lib.sh \
    image/lib.sh constraints.txt $(WHEEL_STAMP)
	$(IMAGE_RELEASE_ENV) IMAGE_TARGET=pi IMAGE_BASE_NAME='debian-$(IMAGE_SUITE)' \
	  IMAGE_APP_WHEEL="$$(ls $(WHEEL_DIR)/*.whl)" IMAGE_CONSTRAINTS=constraints.txt IMAGE_PIP_PYTHON='$(WHEEL_PYTHON)' \
	  image/mkimage.sh $< $@

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
    image/customize-image.sh $$(IMAGE_PLAYBOOK_DEPS) $(WHEEL_STAMP) | $(IMAGE_ANSIBLE_PLAYBOOK)
	$(IMAGE_ENV) $(IMAGE_RELEASE_ENV) IMAGE_WHEEL= IMAGE_APP_WHEEL="$$(ls $(WHEEL_DIR)/*.whl)" \
	  IMAGE_PIP_PYTHON='$(WHEEL_PYTHON)' image/customize-image.sh '$(BASE_IMAGE)' $@
endif

$(PIOS_STANDIN_IMG): $(IMAGE_WORK)/pi/base.tar image/pios-standin.sh image/mkimage.sh image/provision-lib.sh
	image/pios-standin.sh $< $@

$(PIOS_STANDIN_IMG).xz: IMAGE_XZ_OPT = $(PIOS_STANDIN_XZ_OPT)

$(TWIN_IMG): $(IMAGE_WORK)/twin/rootfs.tar image/mkimage.sh image/provision-lib.sh
	$(IMAGE_RELEASE_ENV) IMAGE_TARGET=twin IMAGE_BASE_NAME='debian-$(IMAGE_SUITE)' image/mkimage.sh $< $@ $(TWIN_DIR)

%.img.xz: %.img image/compress.sh
	image/compress.sh $< $@ $(IMAGE_XZ_OPT)

%.img.xz.sha256: %.img.xz
	cd $(@D) && sha256sum $(<F) > $(@F).tmp && mv $(@F).tmp $(@F)

%.img.bmap: %.img
	bmaptool create --output $@.tmp $<
	mv $@.tmp $@

# The build id from the image's own stamp (IMAGE.img.release), so the list names the image it lists.
# A pattern rule (for os-list.json): its $$ prerequisites, which ask for the version, are expanded
# only when it is used.
$(IMAGE_BUILD)/os-%.json: $$(IMAGE_XZ) $$(IMAGE_IMG) image/os-list.py
	$(IMAGE_PYTHON) image/os-list.py --image $(IMAGE_IMG) --xz $(IMAGE_XZ) --base-url '$(IMAGE_BASE_URL)' \
	  --devices '$(IMAGE_DEVICES)' --output $@ \
	  --release "$$(sed -n 's/^BUILD_ID="\(.*\)"$$/\1/p' $(IMAGE_IMG).release)"
