#!/usr/bin/env bash
# Boot the amd64 twin (make twin) in QEMU and wait for its login prompt; for the hardware-in-the-loop
# suite and for a look around by hand.
#
#   image/boot-twin.sh --state build/twin/run --ssh-port 2222 --http-port 8080 \
#       --bt-socket /tmp/bumble-controller.sock [--fresh] [--detach] [--timeout 180]
#
# --state DIR   the guest's writable disk (a sparse copy of build/twin/disk.img, kept across boots
#               until --fresh), console.log, qemu.pid, qmp.sock (system_powerdown, system_reset)
# --console     file (default), pty, or socket:PATH; the console is always logged to DIR/console.log
# --bt-socket   the guest's ttyS1 (where btattach -P h4 attaches its controller) as a unix socket;
#               QEMU connects to a listening peer (a bumble controller), or listens with --bt-listen
# --boot-file SRC[:NAME]  put a file on the boot partition of a fresh copy (e.g. appliance.toml)
# --detach      return once the login prompt is there and leave QEMU running (kill $(cat DIR/qemu.pid))
# Prints "login prompt after N s"; exits 1 with the console's last lines if the deadline passes.
# Every other option: python3 -m image.qemuboot --help.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
twin="${TWIN_DIR:-${here}/../build/twin}"
for f in disk.img vmlinuz initrd.img; do
    [ -f "${twin}/${f}" ] || { echo "error: ${twin}/${f} is missing: make twin" >&2; exit 1; }
done
# image/ is a package of tools run from the repository root (python3 -m image.qemuboot).
PYTHONPATH="${here}/..${PYTHONPATH:+:${PYTHONPATH}}" exec python3 -m image.qemuboot --arch amd64 --image "${twin}/disk.img" \
    --kernel "${twin}/vmlinuz" --initrd "${twin}/initrd.img" --cpu max "$@"
