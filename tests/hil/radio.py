"""The virtual rig's radio: the QEMU guest's Bluetooth controller and the beacons around it, in one process.

    python -m tests.hil.radio --hci-socket PATH --control PATH [--beacons 3] [--kind python|sketch]

(from the repository root, with the project's venv). It listens on two unix sockets:

- ``--hci-socket``: H4 HCI for the guest. QEMU connects to it as a client, e.g.
  ``-chardev socket,id=bt,path=PATH,reconnect-ms=1000 -serial mon:stdio -serial chardev:bt``
  (QEMU before 9.2: ``reconnect=1``), and the guest runs ``btattach -B /dev/ttyS1 -P h4``, as a Pi
  attaches its UART Bluetooth chip. Behind it is a bumble controller (GuestController) on the
  beacons' virtual link. One host at a time: when it goes away (power cut) or sends HCI Reset
  (reboot) the controller resets, and a new connection replaces an old one (a restarted VM).
- ``--control``: JSON lines to add or remove beacons, move them (RSSI, distance), drop a
  fraction of their advertisements and find sketch beacons' serial ports (radio_client.py).

The beacons are ids 1..N, ``python`` (bumble, VirtualBeacon) or ``sketch`` (the firmware built for
the host by ``make -C firmware sim``; each one's Serial is a pty, where the HIL tests type
``adv off``/``adv on``/``version`` as on the lab rig). Once both sockets listen, one JSON line
``{"event": "ready", ...}`` goes to stdout with the sockets and the beacons; logs go to stderr.
SIGTERM or SIGINT stops it cleanly (sketch processes end, sockets and their ``.lock`` files are
removed); exit status 0, 1 when it could not start (the message says why), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Final

from bumble import hci

from appliance.errors import RadioError
from appliance_sim import air as sim_air
from appliance_sim.air import RSSI_DEFAULT_DBM, BeaconAir, BeaconFactory
from appliance_sim.python_beacon import PythonBeacons
from appliance_sim.sketch_beacon import SIM_BINARY, SketchBeaconFactory

from .control import ControlServer
from .guest_controller import GUEST_PUBLIC_ADDRESS, GuestController
from .hci_socket import HciSocketServer

_LOGGER = logging.getLogger(__name__)

DEFAULT_BEACONS: Final = 3  # as `make run`: enough to tell beacons apart, cheap on 2 cores


class StartError(Exception):
    """The radio cannot start; the message says what to do."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.hil.radio",
        description="The virtual rig's Bluetooth controller (H4 on a unix socket) and its beacons.",
    )
    parser.add_argument("--hci-socket", type=Path, required=True, help="unix socket for the guest's H4 HCI")
    parser.add_argument("--control", type=Path, required=True, help="unix socket for JSON-lines control")
    parser.add_argument("--beacons", type=int, default=DEFAULT_BEACONS, help="beacons 1..N at start")
    parser.add_argument("--kind", choices=["python", "sketch"], default="python",
                        help="beacon kind at start and for `add` without one")
    parser.add_argument("--sim", type=Path, default=SIM_BINARY,
                        help="beacon-sim for sketch beacons (build: make -C firmware sim)")
    parser.add_argument("--rssi", type=float, default=RSSI_DEFAULT_DBM, help="beacons' mean RSSI")
    parser.add_argument("--seed", type=int, default=None, help="RSSI jitter and loss seed")
    parser.add_argument("--adv-interval-ms", type=float, default=sim_air.ADV_INTERVAL_MS,
                        help="beacons' advertising interval (20..10240; ArduinoBLE's is 100)")
    parser.add_argument("--address", default=GUEST_PUBLIC_ADDRESS, help="the controller's public address")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if args.beacons < 0:
        parser.error("--beacons must be 0 or more")
    if not 20.0 <= args.adv_interval_ms <= 10240.0:  # the legal legacy advertising interval range
        parser.error("--adv-interval-ms must be within 20..10240")
    try:
        address = hci.Address(args.address, hci.Address.PUBLIC_DEVICE_ADDRESS)
    except (ValueError, TypeError) as exc:
        parser.error(f"--address {args.address!r} is not a Bluetooth address ({exc})")
    if address == hci.Address.ANY:
        parser.error("--address must not be 00:00:00:00:00:00: BlueZ would not configure the controller")
    return args


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _claim(path: Path, held: list[int]) -> None:
    """Make ``path`` this radio's: refuse one a live radio holds, remove one a killed radio left.

    The claim is a lock next to the socket, held for the radio's life; probing the socket by
    connecting would look like a new guest to a live radio and reset its controller.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_path(path), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        msg = f"{path} is in use (another radio?); stop it or pick another path"
        raise StartError(msg) from None
    held.append(fd)
    if path.is_socket():
        path.unlink()  # left behind by a radio that was killed
    elif path.exists() or path.is_symlink():
        msg = f"{path} exists and is not a socket; pick another path"
        raise StartError(msg)


def _release(paths: list[Path], held: list[int]) -> None:
    for path in paths:
        _lock_path(path).unlink(missing_ok=True)
    for fd in held:
        os.close(fd)


def _announce(hci_server: HciSocketServer, control: ControlServer, air: BeaconAir) -> None:
    ready = {
        "event": "ready", "hci_socket": str(hci_server.path), "control": str(control.path),
        "beacons": [
            {"address": state.address, "beacon_id": state.beacon_id, "kind": state.kind,
             "serial": air.serial_path(state.address)}
            for state in air.beacons.values()
        ],
    }
    # stdout carries this one line for whoever started the radio; logs go to stderr.
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> int:
    # Read by every beacon as it starts (VirtualBeacon, SketchBeacon): one interval for the rig,
    # set as the unit tests set it (monkeypatch), before any beacon exists.
    sim_air.ADV_INTERVAL_MS = args.adv_interval_ms  # type: ignore[misc]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    factories: dict[str, BeaconFactory] = {
        "python": PythonBeacons(), "sketch": SketchBeaconFactory(args.sim),
    }
    air = BeaconAir(factories, args.kind, seed=args.seed)
    controller = GuestController(air.link, air.reception, args.address)
    hci_server = HciSocketServer(controller, args.hci_socket)
    control = ControlServer(air, controller, args.control)
    try:
        await air.start()
        for beacon_id in range(1, args.beacons + 1):
            await air.add(beacon_id, rssi=args.rssi)
        await hci_server.start()
        await control.start()
        _announce(hci_server, control, air)
        _LOGGER.info("Radio ready: controller %s, %s beacon(s)", args.address, len(air.beacons))
        await stop.wait()
        _LOGGER.info("Stopping")
    except (RadioError, OSError) as exc:
        _LOGGER.error("The radio cannot start: %s", exc)
        return 1
    finally:
        with contextlib.suppress(TimeoutError):
            await control.close()
        with contextlib.suppress(TimeoutError):
            await hci_server.close()
        controller.host_lost()
        await air.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    paths: list[Path] = [args.hci_socket, args.control]
    held: list[int] = []
    try:
        for path in paths:
            _claim(path, held)
    except (StartError, OSError) as exc:
        _LOGGER.error("The radio cannot start: %s", exc)
        for fd in held:
            os.close(fd)
        return 1
    try:
        return asyncio.run(run(args))
    finally:
        _release(paths, held)


if __name__ == "__main__":
    sys.exit(main())
