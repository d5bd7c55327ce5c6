"""labgrid resources, drivers and the strategy of the rigs (imported by rigs/virtual.yaml and
rigs/lab.yaml).

- ``ApplianceStrategy``: walks a rig ``off → booted → ready`` (labgrid's Strategy): off is the
  power off; booted is powered on with SSH answering (the virtual rig's radio started first, QEMU
  connects to it); ready is supervisor running the app and nginx, and /health answering through
  nginx. Both rigs use it; what differs is in their YAML (the power driver, the radio, the URL).

- ``TwinMachine`` + ``TwinMachineDriver``: the twin image (`make twin`) booted in QEMU (TCG), with
  only loopback ports forwarded (SSH, HTTP to nginx; QEMU picks free ones at the first boot of a
  run and the later boots keep them: the driver writes the SSH port into the NetworkService that
  SSHDriver uses) and its second serial port, where the guest's
  ``btattach -B /dev/ttyS1 -P h4`` attaches its controller, on the radio's unix socket. The driver
  is the rig's PowerProtocol: ``off()`` kills QEMU (a power cut), ``on()`` boots again from the same
  disk, ``cycle()`` does both. The first ``on()`` of a run starts from a fresh copy of the image
  with a first-boot file (the admin account and this run's SSH key), as a user's card would.
- ``VirtualRadio`` + ``VirtualRadioDriver``: ``python -m tests.hil.radio`` as a host process, the
  guest's Bluetooth controller and the beacons (the host-built sketch: each one's USB serial is a pty).

The lab rig needs only the strategy: labgrid's own NetworkService, SSHDriver, USBSerialPort and
power drivers describe a real Pi and Nano (rigs/lab.yaml).
"""

from __future__ import annotations

import enum
import json
import os
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import attr
import httpx
from helpers import free_port, wait_for_blocking
from labgrid.driver.common import Driver
from labgrid.factory import target_factory
from labgrid.protocol import PowerProtocol
from labgrid.resource.common import Resource
from labgrid.step import step
from labgrid.strategy.common import Strategy, StrategyError, never_retry

# The image's tools, a package at the repository root (make hil-test runs `python -m pytest` there).
from image import qemuboot

ROOT: Final = Path(__file__).resolve().parents[2]

# A TCG boot takes about a minute; a busy 2-core CI machine may need several.
LOGIN_TIMEOUT_S: Final = 420.0
RADIO_READY_S: Final = 60.0
DISK_SIZE: Final = 4 << 30
# After SSH answers: first boot (admin, SSH key), then supervisor starts nginx and the app.
READY_S: Final = 300.0
# Between two looks at a rig that is not ready yet: each look is an SSH command and an HTTP GET.
READY_POLL_S: Final = 1.0
# After a reboot from inside: the guest's old sshd may still answer for a moment.
REBOOT_S: Final = 600.0
# Where the twin finds a stand-in printer on the host: an address inside QEMU's user network
# (its guestfwd rules), at the A1's own ports. Nothing leaves the host.
PRINTER_GUEST_ADDRESS: Final = "10.0.2.100"
PRINTER_MQTT_PORT: Final = 8883
PRINTER_CAMERA_PORT: Final = 6000
# Where it finds the makerspace's own MQTT broker (scenario 10's mosquitto on the host), the way
# it would find one on the LAN: another address of that network, the plain MQTT port.
BROKER_GUEST_ADDRESS: Final = "10.0.2.101"
BROKER_GUEST_PORT: Final = 1883


def _path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else ROOT / path


def first_boot_file(dest: Path, admin_user: str, admin_password: str, public_key: str) -> Path:
    """The appliance.toml a user puts on the card's boot partition: here only the admin and SSH."""
    dest.write_text(
        "# Written by the HIL suite's virtual rig (tests/hil/labgrid_rigs.py).\n"
        f"admin_user = {json.dumps(admin_user)}\n"
        f"admin_password = {json.dumps(admin_password)}\n"
        f"ssh_authorized_key = {json.dumps(public_key.strip())}\n"
    )
    return dest


def ensure_ssh_key(private: Path) -> Path:
    """An ed25519 key pair for this rig (made once; the first-boot file carries the public half)."""
    if not private.exists():
        private.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hil-virtual-rig",
                        "-f", str(private)], check=True)
    return private


@target_factory.reg_resource
@attr.s(eq=False)
class TwinMachine(Resource):
    """The twin image and how its QEMU guest is wired to the host."""

    image_dir = attr.ib(validator=attr.validators.instance_of(str))
    state_dir = attr.ib(validator=attr.validators.instance_of(str))
    bt_socket = attr.ib(validator=attr.validators.instance_of(str))
    ssh_key = attr.ib(validator=attr.validators.instance_of(str))
    admin_user = attr.ib(validator=attr.validators.instance_of(str))
    admin_password = attr.ib(validator=attr.validators.instance_of(str))
    memory_mb = attr.ib(default=1024, validator=attr.validators.instance_of(int))
    # Loopback ports forwarded to the guest's SSH and HTTP; 0: QEMU picks free ones.
    ssh_port = attr.ib(default=0, validator=attr.validators.instance_of(int))
    http_port = attr.ib(default=0, validator=attr.validators.instance_of(int))


@target_factory.reg_driver
@attr.s(eq=False)
class TwinMachineDriver(Driver, PowerProtocol):
    """Power for the twin: on = boot to the login prompt, off = pull the plug (kill QEMU).

    The first boot of a run forwards the ports the TwinMachine names (0: QEMU picks free ones);
    every later boot forwards the same ones, so SSHDriver's NetworkService (bound here, its port
    set after the first boot) and the rig's HTTP URL stay right across power cuts and reboots.
    """

    bindings = {"twin": "TwinMachine", "network": "NetworkService"}  # noqa: RUF012 - labgrid's style
    machine: qemuboot.QemuMachine | None = None
    fresh_done: bool = False
    boots: list[float] = attr.ib(factory=list, init=False)  # seconds to the login prompt, per boot
    ports: dict[str, int] = attr.ib(factory=dict, init=False)  # ssh, http: as forwarded
    # Loopback ports on the host where a stand-in printer may listen; the twin reaches them as
    # PRINTER_GUEST_ADDRESS:8883 (MQTT) and :6000 (camera), the A1's own ports. Chosen once.
    printer_ports: dict[str, int] = attr.ib(factory=dict, init=False)
    # The address the twin uses for them (the scenarios read it here: importing this module
    # again would register its labgrid classes twice).
    printer_address: str = PRINTER_GUEST_ADDRESS
    # The loopback port where a broker on the host listens for BROKER_GUEST_ADDRESS:1883.
    broker_port: int = attr.ib(default=0, init=False)
    broker_address: str = BROKER_GUEST_ADDRESS

    @property
    def http_url(self) -> str:
        if "http" not in self.ports:
            msg = "the twin has not booted yet: its HTTP port is chosen at the first boot"
            raise RuntimeError(msg)
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def work_dir(self) -> Path:
        return _path(self.twin.state_dir)

    def _new_machine(self) -> qemuboot.QemuMachine:
        twin = self.twin
        image_dir = _path(twin.image_dir)
        for name in ("disk.img", "vmlinuz", "initrd.img"):
            if not (image_dir / name).is_file():
                msg = f"{image_dir / name} is missing: build the twin first (sudo make twin)"
                raise FileNotFoundError(msg)
        key = ensure_ssh_key(_path(twin.ssh_key))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        toml = first_boot_file(self.work_dir / "appliance.toml", twin.admin_user, twin.admin_password,
                               key.with_suffix(".pub").read_text())
        # Every run starts from the image as flashed; HIL_REUSE_DISK=1 (when working on the suite)
        # boots the disk the last run left instead, skipping first boot.
        fresh = not self.fresh_done and os.environ.get("HIL_REUSE_DISK") != "1"
        self.fresh_done = True
        return qemuboot.machine_for_image(
            "amd64", image_dir / "disk.img", self.work_dir, fresh=fresh, disk_size=DISK_SIZE,
            boot_extra=[(toml, "appliance.toml")], kernel=image_dir / "vmlinuz",
            initrd=image_dir / "initrd.img", cpu="max", ssh_port=self.ports.get("ssh", twin.ssh_port),
            http_port=self.ports.get("http", twin.http_port), bt_socket=_path(twin.bt_socket),
            memory_mb=twin.memory_mb, guest_forwards=self._guest_forwards(),
        )

    def _guest_forwards(self) -> tuple[tuple[str, int, int], ...]:
        if not self.printer_ports:
            self.printer_ports = {"mqtt": free_port(), "camera": free_port()}
            self.broker_port = free_port()
        return ((PRINTER_GUEST_ADDRESS, PRINTER_MQTT_PORT, self.printer_ports["mqtt"]),
                (PRINTER_GUEST_ADDRESS, PRINTER_CAMERA_PORT, self.printer_ports["camera"]),
                (BROKER_GUEST_ADDRESS, BROKER_GUEST_PORT, self.broker_port))

    @property
    def running(self) -> bool:
        return self.machine is not None and self.machine.process is not None \
            and self.machine.process.poll() is None

    @Driver.check_active
    @step()
    def on(self) -> None:
        if self.running:
            return
        self.machine = self._new_machine()
        self.machine.start()
        assert self.machine.ssh_port and self.machine.http_port  # start() learnt the ports QEMU bound
        self.ports = {"ssh": self.machine.ssh_port, "http": self.machine.http_port}
        self.network.port = self.machine.ssh_port
        seconds = self.machine.wait_for_login(LOGIN_TIMEOUT_S)
        self.boots.append(seconds)
        self.logger.info("twin: login prompt %.1f s after QEMU started", seconds)

    @Driver.check_active
    @step()
    def off(self) -> None:
        if self.machine is not None:
            self.machine.kill()

    @Driver.check_active
    @step()
    def cycle(self) -> None:
        self.off()
        self.on()

    def console_offset(self) -> int:
        assert self.machine is not None
        return self.machine.console_log.stat().st_size

    @Driver.check_active
    def wait_for_login(self, *, since: int) -> float:
        """After a reboot from inside: the next login prompt on the console after byte `since`."""
        assert self.machine is not None
        start = time.monotonic()
        self.machine.wait_for(qemuboot.LOGIN_PROMPT, LOGIN_TIMEOUT_S, start=since)
        seconds = time.monotonic() - start
        self.boots.append(seconds)
        return seconds

    def console_tail(self) -> str:
        return self.machine.console_tail() if self.machine is not None else "(not booted)"

    def on_deactivate(self) -> None:
        if self.machine is not None:
            self.machine.stop(timeout=60)


@target_factory.reg_resource
@attr.s(eq=False)
class VirtualRadio(Resource):
    """The radio process's sockets and beacons."""

    hci_socket = attr.ib(validator=attr.validators.instance_of(str))
    control_socket = attr.ib(validator=attr.validators.instance_of(str))
    log = attr.ib(validator=attr.validators.instance_of(str))
    beacons = attr.ib(default=2, validator=attr.validators.instance_of(int))
    kind = attr.ib(default="sketch", validator=attr.validators.in_(["sketch", "python"]))


@target_factory.reg_driver
@attr.s(eq=False)
class VirtualRadioDriver(Driver):
    """Starts the radio on activation (before the guest boots: QEMU connects to it) and stops it."""

    bindings = {"radio": "VirtualRadio"}  # noqa: RUF012 - labgrid's declaration style
    process: subprocess.Popen[bytes] | None = None
    ready: dict[str, Any] = attr.ib(factory=dict, init=False)

    def on_activate(self) -> None:
        radio = self.radio
        log = _path(radio.log)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.hil.radio", "--hci-socket", str(_path(radio.hci_socket)),
                 "--control", str(_path(radio.control_socket)), "--beacons", str(radio.beacons),
                 "--kind", radio.kind],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        assert self.process.stdout is not None
        deadline = time.monotonic() + RADIO_READY_S
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if self.process.poll() is not None or remaining <= 0:
                self.on_deactivate()
                msg = f"the radio did not get ready within {RADIO_READY_S:.0f} s; its log: {log}"
                raise RuntimeError(msg)
            readable, _, _ = select.select([self.process.stdout], [], [], min(remaining, 1.0))
            if readable:
                line += os.read(self.process.stdout.fileno(), 4096)
        self.ready = json.loads(line)
        self.logger.info("radio ready: %s", self.ready)

    def on_deactivate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @property
    def control_path(self) -> Path:
        return _path(self.radio.control_socket)

    def serial_ports(self) -> list[str]:
        """The sketch beacons' USB serial ports (ptys), by beacon id."""
        beacons = sorted(self.ready.get("beacons", []), key=lambda b: b["beacon_id"])
        return [b["serial"] for b in beacons if b["serial"]]


class Status(enum.Enum):
    unknown = 0
    off = 1
    booted = 2  # powered on, SSH answers
    ready = 3  # supervisor runs the app and nginx, /health answers through nginx


class NotReady(StrategyError):
    """The appliance did not get ready in time; the message says what was seen last."""


class _NotYet(Exception):
    """A look at the appliance that found it not ready yet, saying what it saw."""


# What a look at an appliance that is not ready yet may meet.
_NOT_YET: Final = (_NotYet, OSError, httpx.HTTPError, subprocess.SubprocessError)


@target_factory.reg_driver
@attr.s(eq=False)
class ApplianceStrategy(Strategy):
    """off → booted → ready, on either rig.

    ``nginx_url`` is the appliance's nginx as the test host reaches it (the lab rig's YAML); left
    empty, the twin's forwarded HTTP port. Commands go through SSHDriver.run.
    """

    bindings = {  # noqa: RUF012 - labgrid's declaration style
        "power": "PowerProtocol",
        "ssh": "SSHDriver",
        # The virtual rig's radio, started before the twin: QEMU connects to its socket.
        "radio": {"VirtualRadioDriver", None},
    }
    nginx_url = attr.ib(default="", validator=attr.validators.instance_of(str))
    status = attr.ib(default=Status.unknown)

    @property
    def http_url(self) -> str:
        return self.nginx_url or str(self.power.http_url)

    @never_retry
    @step(args=["status"])
    def transition(self, status: Status | str, *, step: Any) -> None:  # step: passed by @step
        if not isinstance(status, Status):
            status = Status[status]
        if status == Status.unknown:
            msg = f"can not transition to {status}"
            raise StrategyError(msg)
        if status == self.status:
            return
        if status == Status.off:
            self.target.deactivate(self.ssh)
            self.target.activate(self.power)
            self.power.off()
        elif status == Status.booted:
            self.transition(Status.off)
            if self.radio is not None:
                self.target.activate(self.radio)
            self.power.on()
            self.target.activate(self.ssh)  # waits (connection_timeout) for sshd after first boot
        elif status == Status.ready:
            if self.status != Status.booted:
                self.transition(Status.booted)
            self.wait_ready(READY_S)
        self.status = status

    def sh(self, command: str, *, sudo: bool = False, timeout: float = 120.0) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) of a shell command on the appliance, through SSHDriver.run.

        The admin's account has no password (SSH keys only); first boot lets it sudo without one.
        """
        remote = f"sudo -n sh -c {shlex.quote(command)}" if sudo else command
        stdout, stderr, code = self.ssh.run(remote, timeout=timeout)
        return code, "".join(line + "\n" for line in stdout), "\n".join(stderr)

    def supervisor_status(self) -> dict[str, str]:
        _, out, _ = self.sh("supervisorctl status", sudo=True)
        return {line.split()[0]: line.split()[1] for line in out.splitlines() if len(line.split()) > 1}

    def wait_ready(self, within: float) -> dict[str, str]:
        """supervisor runs the app and nginx, and /health answers through nginx: the programs."""
        def ready() -> dict[str, str]:
            programs = self.supervisor_status()
            if programs.get("appliance") != "RUNNING" or programs.get("nginx") != "RUNNING":
                raise _NotYet(programs)
            response = httpx.get(f"{self.http_url}/health", timeout=10)
            if response.status_code != 200:
                raise _NotYet(f"/health: {response.status_code}")
            return programs

        try:
            return wait_for_blocking(ready, within=within, interval=READY_POLL_S, retry_on=_NOT_YET,
                                     what="supervisor's appliance and nginx RUNNING, /health through nginx")
        except AssertionError as exc:
            raise NotReady(str(exc)) from None

    def boot_id(self) -> str:
        return self.sh("cat /proc/sys/kernel/random/boot_id")[1].strip()

    @never_retry
    @step()
    def rebooted(self, old_boot_id: str) -> float:
        """After a reboot the appliance did itself: SSH back into the new boot, then ready.

        Seconds it took. The SSH master connection of the old boot is gone; a new one is made until
        it reaches a system whose boot id is not `old_boot_id`.
        """
        start = time.monotonic()
        self.status = Status.unknown

        def new_boot() -> bool:
            self.target.deactivate(self.ssh)
            self.target.activate(self.ssh)
            return self.boot_id() != old_boot_id

        try:  # labgrid raises a plain Exception on an SSH timeout
            wait_for_blocking(new_boot, within=REBOOT_S, interval=READY_POLL_S, retry_on=(Exception,),
                              what="the appliance back over SSH in a new boot")
        except AssertionError as exc:
            raise NotReady(str(exc)) from None
        self.status = Status.booted
        self.transition(Status.ready)
        return time.monotonic() - start
