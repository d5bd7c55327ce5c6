"""Boot an appliance disk image in QEMU (TCG) and wait for its login prompt.

Used by `make image-test` (the arm64 Pi image on `-M virt`), by `image/boot-twin.sh` (the amd64
twin for the hardware-in-the-loop suite) and importable (`from image.qemuboot import QemuMachine`;
from the command line `python3 -m image.qemuboot` in the repository root).

The image itself is never written: the machine runs on a sparse working copy in a state
directory, which survives a reboot or a power cut of the guest (pass the same `--state` again)
until `--fresh` starts over. The guest's kernel is booted directly (`-kernel/-initrd/-append`):
for the twin from files beside the image, for the Pi image from its own boot partition.

Standard library only: it runs with the host's python3 before any virtualenv exists.
"""

# A command-line tool that runs QEMU and mtools with arguments it builds itself, and prints progress.
# ruff: noqa: S603, S607, T201
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .disk import Partition, boot_partition

# getty's prompt: "<hostname> login: " on the serial console.
LOGIN_PROMPT: Final = re.compile(rb"^\S+ login: ", re.MULTILINE)
# How often the console log is read while waiting: a boot takes a minute or more, so 0.2 s costs
# nothing and keeps the measured boot time within a fifth of a second.
POLL_S: Final = 0.2
# Lines of the console shown when a wait fails, enough to see the last boot messages.
TAIL_LINES: Final = 40
# QEMU's QMP socket appears a moment after it starts; a loaded host may take a few seconds.
QMP_READY_S: Final = 30.0

ARCHES: Final = {
    # A Pi 4's core. -cpu max would emulate pointer authentication (trixie signs every return
    # address) with the QARMA cipher, which makes TCG several times slower.
    "arm64": {
        "qemu": "qemu-system-aarch64",
        "machine": ["-M", "virt"],
        "cpu": "cortex-a72",
        "console": "ttyAMA0,115200",
    },
    "amd64": {
        "qemu": "qemu-system-x86_64",
        "machine": ["-M", "q35"],
        "cpu": "max",
        "console": "ttyS0,115200n8",
        # The kernel's IO-APIC timer check counts PIT ticks against a delay loop; on a loaded
        # host TCG misses it and the kernel panics ("IO-APIC + timer doesn't work!": a power
        # cut's reboot in the HIL suite at load 9). Debian's own cloud images boot with it off.
        "append": "no_timer_check",
    },
}
DEFAULT_APPEND: Final = "root=LABEL=RASPIROOT ro rootwait net.ifnames=0 fsck.repair=yes"


class BootError(RuntimeError):
    """QEMU exited, or the guest did not reach the expected state in time."""


def _mtools(image: Path, partition: Partition, *args: str) -> subprocess.CompletedProcess[bytes]:
    # mtools addresses a partition inside an image file as FILE@@OFFSET.
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    return subprocess.run(
        [args[0], "-i", f"{image}@@{partition.start}", *args[1:]],
        check=True,
        capture_output=True,
        env=env,
    )


def boot_files(image: Path) -> list[str]:
    """Names in the root directory of the image's boot partition."""
    listing = _mtools(image, boot_partition(image), "mdir", "-b", "::/").stdout.decode()
    return [line.strip().removeprefix("::/").rstrip("/") for line in listing.splitlines() if line.strip()]


def read_boot_file(image: Path, name: str, dest: Path) -> Path:
    _mtools(image, boot_partition(image), "mcopy", "-o", f"::/{name}", str(dest))
    return dest


def write_boot_file(image: Path, src: Path, name: str) -> None:
    """Copy a file into the image's boot partition (e.g. the first-boot config)."""
    _mtools(image, boot_partition(image), "mcopy", "-o", str(src), f"::/{name}")


def kernel_from_boot_partition(image: Path, dest_dir: Path) -> tuple[Path, Path, str]:
    """Extract the newest vmlinuz/initrd.img and cmdline.txt that raspi-firmware put on the card."""
    names = boot_files(image)

    def newest(prefix: str) -> str:
        found = sorted((n for n in names if n.startswith(prefix)), key=_version_key)
        if not found:
            msg = f"no {prefix}* on the boot partition of {image}"
            raise BootError(msg)
        return found[-1]

    kernel = read_boot_file(image, newest("vmlinuz-"), dest_dir / "vmlinuz")
    initrd = read_boot_file(image, newest("initrd.img-"), dest_dir / "initrd.img")
    cmdline = ""
    if "cmdline.txt" in names:
        cmdline = read_boot_file(image, "cmdline.txt", dest_dir / "cmdline.txt").read_text().strip()
    return kernel, initrd, cmdline


def _version_key(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


# systemd waits 90 s for a device (the boot partition by label) before it gives up and drops to the
# emergency shell. Under TCG on a shared 2-core host udev alone took longer than that (the arm64
# image, with xz running beside it), so the guest waits as long as the tests do for its login.
TCG_DEVICE_TIMEOUT: Final = "systemd.default_device_timeout_sec=600"


def qemu_append(cmdline: str, console: str, extra: str = "") -> str:
    """The image's kernel command line with its consoles replaced by the emulated serial port,
    and ``extra`` (the architecture's own words, ARCHES) added."""
    words = [w for w in cmdline.split() if not w.startswith("console=")] or DEFAULT_APPEND.split()
    return " ".join([*words, *extra.split(), TCG_DEVICE_TIMEOUT, f"console={console}"])


def forwarded_ports(usernet: str) -> dict[int, int]:
    """{guest port: host port} of the TCP forwards in QEMU's `info usernet` table."""
    ports = {}
    for line in usernet.splitlines():
        words = line.split()
        # TCP[HOST_FORWARD]  FD  SRC-ADDRESS SRC-PORT  DEST-ADDRESS DEST-PORT  RECVQ SENDQ
        if len(words) >= 6 and words[0] == "TCP[HOST_FORWARD]":
            ports[int(words[5])] = int(words[3])
    return ports


def prepare_disk(image: Path, dest: Path, *, size: int | None = None,
                 boot_extra: Sequence[tuple[Path, str]] = ()) -> Path:
    """A sparse working copy of the image, optionally larger (first boot grows into it)."""
    tmp = dest.with_name(dest.name + ".tmp")
    subprocess.run(["cp", "--sparse=always", str(image), str(tmp)], check=True)
    for src, name in boot_extra:
        write_boot_file(tmp, src, name)
    if size is not None and size > tmp.stat().st_size:
        os.truncate(tmp, size)
    tmp.replace(dest)
    return dest


def parse_size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    match = re.fullmatch(r"(\d+)([KMG]?)i?B?", text.strip().upper())
    if not match:
        msg = f"bad size {text!r}: use e.g. 4G or 512M"
        raise argparse.ArgumentTypeError(msg)
    return int(match[1]) * units[match[2]]


@dataclass
class QemuMachine:
    """One QEMU guest: build the command line, start it, wait on its console, stop it."""

    arch: str
    disk: Path
    kernel: Path
    initrd: Path
    append: str
    state: Path
    console: str = "file"  # file | pty | socket:PATH
    # Loopback ports forwarded to the guest's 22 and 80: None for none, 0 for one QEMU picks
    # (free at that moment, no race); start() then sets the port it got.
    ssh_port: int | None = None
    http_port: int | None = None
    bt_socket: Path | None = None
    bt_listen: bool = False
    # (guest address, guest port, loopback port): the guest's connections to the address reach
    # the host's loopback port (one socat per connection), e.g. a stand-in printer on the host.
    # QEMU-internal addresses in its user network: nothing leaves the host.
    guest_forwards: tuple[tuple[str, int, int], ...] = ()
    memory_mb: int = 1024
    smp: int = 2
    cpu: str | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    pty: str | None = None

    @property
    def console_log(self) -> Path:
        return self.state / "console.log"

    @property
    def qmp_socket(self) -> Path:
        return self.state / "qmp.sock"

    def command(self) -> list[str]:
        spec = ARCHES[self.arch]
        log = f"logfile={self.console_log},logappend=on"
        if self.console == "file":
            chardev = f"file,id=con,path={self.console_log},append=on"
        elif self.console == "pty":
            chardev = f"pty,id=con,{log}"
        elif self.console.startswith("socket:"):
            chardev = f"socket,id=con,path={self.console.removeprefix('socket:')},server=on,wait=off,{log}"
        else:
            msg = f"console {self.console!r}: use file, pty or socket:PATH"
            raise BootError(msg)
        forwards = "".join(
            f",hostfwd=tcp:127.0.0.1:{port}-:{guest}"
            for port, guest in ((self.ssh_port, 22), (self.http_port, 80))
            if port is not None
        ) + "".join(
            f",guestfwd=tcp:{address}:{guest}-cmd:socat - TCP:127.0.0.1:{port}"
            for address, guest, port in self.guest_forwards
        )
        cmd = [
            str(spec["qemu"]), *spec["machine"],
            "-accel", "tcg,thread=multi", "-cpu", self.cpu or str(spec["cpu"]),
            "-smp", str(self.smp), "-m", str(self.memory_mb),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", self.append,
            "-drive", f"if=none,id=disk,format=raw,file={self.disk},discard=unmap",
            "-device", "virtio-blk-pci,drive=disk",
            # restrict=on: the guest reaches nothing but its forwarded loopback ports (and the
            # guest_forwards, which restrict does not affect).
            "-netdev", f"user,id=net,restrict=on{forwards}", "-device", "virtio-net-pci,netdev=net",
            "-device", "virtio-rng-pci",
            "-chardev", chardev, "-serial", "chardev:con",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
        ]  # fmt: skip
        if self.bt_socket is not None:
            # The guest's second serial port (ttyS1), where btattach finds its "UART" controller.
            role = "server=on,wait=off" if self.bt_listen else "server=off,reconnect=1"
            cmd += ["-chardev", f"socket,id=bt,path={self.bt_socket},{role}", "-serial", "chardev:bt"]
        return [*cmd, *self.extra_args]

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.console_log.write_bytes(b"")
        self.qmp_socket.unlink(missing_ok=True)
        cmd = self.command()
        (self.state / "qemu.cmd").write_text(" ".join(cmd) + "\n")
        self.started_at = time.monotonic()
        # stderr goes to a file: QEMU names the pty there, and its errors explain a failed start.
        with (self.state / "qemu.err").open("wb") as err:
            # A session of its own: a Ctrl-C meant for the caller does not pull the guest's plug, and
            # with --detach the guest outlives the caller.
            self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                            start_new_session=True)
        if self.console == "pty":
            self.pty = self._wait_for_pty()
        if 0 in (self.ssh_port, self.http_port):
            self._learn_forwarded_ports()

    def _learn_forwarded_ports(self) -> None:
        """The host ports QEMU bound for the forwards asked for as port 0 (`info usernet`)."""
        deadline = time.monotonic() + QMP_READY_S
        while True:
            try:
                table = self.qmp("human-monitor-command", {"command-line": "info usernet"})
                break
            except OSError:
                self._check_running()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(POLL_S)
        found = forwarded_ports(str(table))
        for guest, attribute in ((22, "ssh_port"), (80, "http_port")):
            if getattr(self, attribute) == 0:
                if guest not in found:
                    msg = f"QEMU forwards no host port to the guest's port {guest}: {table!r}"
                    raise BootError(msg)
                setattr(self, attribute, found[guest])

    def _wait_for_pty(self) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = re.search(r"char device redirected to (/dev/pts/\d+) \(label con\)",
                              (self.state / "qemu.err").read_text(errors="replace"))
            if found:
                return found[1]
            self._check_running()
            time.sleep(POLL_S)
        msg = "QEMU did not say which pty the console is on"
        raise BootError(msg)

    def _check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            err = (self.state / "qemu.err").read_text(errors="replace").strip()
            msg = f"QEMU exited with status {self.process.returncode}: {err}\n{self.console_tail()}"
            raise BootError(msg)

    def console_tail(self, lines: int = TAIL_LINES) -> str:
        try:
            text = self.console_log.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return "(no console output)"
        return "--- console (last lines) ---\n" + "\n".join(text.splitlines()[-lines:])

    def wait_for(self, pattern: re.Pattern[bytes], timeout: float, *, start: int = 0) -> re.Match[bytes]:
        """Wait until the console log (from byte `start`) matches, or fail with its last lines."""
        deadline = time.monotonic() + timeout
        while True:
            found = pattern.search(self.console_log.read_bytes(), start)
            if found:
                return found
            self._check_running()
            if time.monotonic() >= deadline:
                msg = f"no {pattern.pattern!r} on the console within {timeout:.0f} s\n{self.console_tail()}"
                raise BootError(msg)
            time.sleep(POLL_S)

    def wait_for_login(self, timeout: float) -> float:
        """Seconds from QEMU's start to the login prompt."""
        self.wait_for(LOGIN_PROMPT, timeout)
        return time.monotonic() - self.started_at

    def qmp(self, command: str, arguments: dict[str, object] | None = None) -> object:
        """Send one QMP command (e.g. system_powerdown, system_reset); its return value."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self.qmp_socket))
            stream = sock.makefile("rwb")
            stream.readline()  # greeting
            result: object = None
            for execute, args in (("qmp_capabilities", None), (command, arguments)):
                request = {"execute": execute, **({"arguments": args} if args else {})}
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
                while b'"return"' not in (reply := stream.readline()):
                    if b'"error"' in reply or not reply:
                        msg = f"QMP {execute}: {reply.decode(errors='replace')}"
                        raise BootError(msg)
                result = json.loads(reply)["return"]
            return result

    def stop(self, timeout: float = 60) -> None:
        """Shut the guest down cleanly (ACPI/PSCI power button), or kill QEMU after `timeout`."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(OSError, BootError):
            self.qmp("system_powerdown")
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Pull the plug: QEMU ends at once, as a power cut would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> QemuMachine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def machine_for_image(arch: str, image: Path, state: Path, *, fresh: bool = False,
                      disk_size: int | None = None, boot_extra: Sequence[tuple[Path, str]] = (),
                      kernel: Path | None = None, initrd: Path | None = None,
                      append: str | None = None, **options: object) -> QemuMachine:
    """A machine on a working copy of `image` kept in `state` (made when missing or `fresh`)."""
    state.mkdir(parents=True, exist_ok=True)
    disk = state / "disk.img"
    if fresh or not disk.exists():
        prepare_disk(image, disk, size=disk_size, boot_extra=boot_extra)
    console, extra = str(ARCHES[arch]["console"]), str(ARCHES[arch].get("append", ""))
    if kernel is None or initrd is None:
        kernel, initrd, cmdline = kernel_from_boot_partition(disk, state)
        append = append or qemu_append(cmdline, console, extra)
    append = append or qemu_append(DEFAULT_APPEND, console, extra)
    return QemuMachine(arch=arch, disk=disk, kernel=kernel, initrd=initrd, append=append,
                       state=state, **options)  # type: ignore[arg-type]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHES), required=True)
    parser.add_argument("--image", type=Path, required=True, help="the disk image (never modified)")
    parser.add_argument("--kernel", type=Path, help="kernel to boot (default: from the boot partition)")
    parser.add_argument("--initrd", type=Path, help="initrd (default: from the boot partition)")
    parser.add_argument("--append", help="kernel command line (default: the image's, serial console)")
    parser.add_argument("--state", type=Path, required=True,
                        help="directory for the working disk copy, console log, QMP socket, pid")
    parser.add_argument("--fresh", action="store_true", help="start from a fresh copy of the image")
    parser.add_argument("--disk-size", type=parse_size, help="grow the fresh copy to this size (e.g. 4G)")
    parser.add_argument("--boot-file", action="append", default=[], metavar="SRC[:NAME]",
                        help="copy SRC into the boot partition of a fresh copy")
    parser.add_argument("--console", default="file", help="file, pty or socket:PATH (always logged)")
    parser.add_argument("--ssh-port", type=int,
                        help="loopback port forwarded to the guest's port 22 (0: any free one)")
    parser.add_argument("--http-port", type=int,
                        help="loopback port forwarded to the guest's port 80 (0: any free one)")
    parser.add_argument("--bt-socket", type=Path, help="second serial port (ttyS1) as this unix socket")
    parser.add_argument("--bt-listen", action="store_true",
                        help="QEMU listens on --bt-socket (default: it connects to a listening peer)")
    parser.add_argument("--memory", type=int, default=1024, help="MiB of guest memory")
    parser.add_argument("--smp", type=int, default=2)
    parser.add_argument("--cpu", help="QEMU -cpu model (default: max)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the login prompt")
    parser.add_argument("--detach", action="store_true",
                        help="return after the login prompt and leave QEMU running (pid in STATE/qemu.pid)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    boot_extra = []
    for spec in args.boot_file:
        src, _, name = spec.partition(":")
        boot_extra.append((Path(src), name or Path(src).name))
    if args.boot_file and not args.fresh and (args.state / "disk.img").exists():
        print("note: --boot-file applies to a fresh copy only: add --fresh", file=sys.stderr)
    machine = machine_for_image(
        args.arch, args.image, args.state, fresh=args.fresh, disk_size=args.disk_size,
        boot_extra=boot_extra, kernel=args.kernel, initrd=args.initrd, append=args.append,
        console=args.console, ssh_port=args.ssh_port, http_port=args.http_port,
        bt_socket=args.bt_socket, bt_listen=args.bt_listen, memory_mb=args.memory, smp=args.smp,
        cpu=args.cpu,
    )
    machine.start()
    assert machine.process is not None  # noqa: S101 - start() set it
    (args.state / "qemu.pid").write_text(f"{machine.process.pid}\n")
    print(f"qemu pid {machine.process.pid}, console log {machine.console_log}"
          + (f", console pty {machine.pty}" if machine.pty else "")
          + (f", ssh 127.0.0.1:{machine.ssh_port}" if machine.ssh_port else "")
          + (f", http 127.0.0.1:{machine.http_port}" if machine.http_port else ""), flush=True)
    try:
        seconds = machine.wait_for_login(args.timeout)
    except BootError as exc:
        machine.kill()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"login prompt after {seconds:.1f} s", flush=True)
    if args.detach:
        return 0
    # Foreground: stay until QEMU ends; SIGTERM/SIGINT shut the guest down cleanly first.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: machine.stop())
    return machine.process.wait()


if __name__ == "__main__":
    sys.exit(main())
