#!/usr/bin/env bash
# Boot the arm64 Pi image in qemu-system-aarch64 -M virt (TCG: a couple of minutes to a login), with
# the kernel, initrd and command line taken from the image's own boot partition.
#   image/boot-pi.sh build/appliance-V-arm64.img --state build/image/run-pi --http-port 8080 [--fresh]
# Options as for image/boot-twin.sh (python3 -m image.qemuboot --help).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ "$#" -ge 1 ] && [ -f "$1" ] || { echo "usage: $0 IMAGE.img [qemuboot options]" >&2; exit 2; }
image="$1"
shift
# image/ is a package of tools run from the repository root (python3 -m image.qemuboot).
PYTHONPATH="${here}/..${PYTHONPATH:+:${PYTHONPATH}}" exec python3 -m image.qemuboot --arch arm64 --image "${image}" "$@"
