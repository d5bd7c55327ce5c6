"""`python -m appliance_sim.rooms`: simulated rooms with satellite scanners, for `make run SCANNERS=N`.

Each room has a scanner: the appliance's own Scanner (appliance/mqtt/scanner.py) on a
VirtualRadio of its own, logging in with credentials issued as `appliance scanner add` issues
them, through the broker the appliance would run (Debian's mosquitto, with the password file
and ACL the appliance writes). The beacons walk from room to room; every second each room's air
is told the RSSI its scanner hears each beacon with, from the beacon's distance and the room's
own model (antenna, walls), so the rooms disagree the way real ones do.

The appliance is started after this has written ``ready`` in its directory (make run waits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from appliance.auth import scanners as scanner_auth
from appliance.clock import SystemClock
from appliance.mqtt import broker
from appliance.mqtt.client import Broker
from appliance.mqtt.scanner import Scanner
from appliance.settings import Settings
from appliance.store.db import Database
from appliance_sim.printer.broker import StandinBroker
from appliance_sim.radio import VirtualRadio

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Room:
    name: str
    x_m: float  # where its scanner stands, along the corridor the rooms line
    rssi_at_1m: float  # the scanner's antenna and the beacon's power, as that scanner hears them
    path_loss: float  # 2: line of sight; more with shelves and walls


ROOMS: Final = (
    Room("workshop", 0.0, -59.0, 2.0),  # open space, a Pi 4's antenna
    Room("office", 12.0, -63.0, 2.6),  # a desk, a monitor, a cheaper USB dongle
    Room("storage", 24.0, -56.0, 3.1),  # shelves everywhere, an external antenna
    Room("kitchen", 36.0, -60.0, 2.4),
    Room("hall", 48.0, -61.0, 2.2),
)
# A beacon stays in a room this long, then walks to the next at WALK_M_S.
DWELL_S: Final = 40.0
WALK_M_S: Final = 1.2
UPDATE_S: Final = 1.0
# Beyond this a scanner hears nothing (the model's floor, below a Pi's sensitivity).
HEARD_UNTIL_DBM: Final = -100.0


def rssi(room: Room, meters: float) -> float:
    return room.rssi_at_1m - 10 * room.path_loss * math.log10(max(0.5, meters))


def position(rooms: tuple[Room, ...], beacon_id: int, t: float) -> float:
    """Where beacon ``beacon_id`` is at ``t`` s: dwelling in a room, or walking to the next,
    back and forth along the rooms; each beacon starts at another stop."""
    stops = [r.x_m for r in rooms] + [r.x_m for r in reversed(rooms[1:-1])]
    legs = [(stops[i], stops[(i + 1) % len(stops)]) for i in range(len(stops))]
    durations = [DWELL_S + abs(b - a) / WALK_M_S for a, b in legs]
    t = (t + sum(durations[:(beacon_id - 1) % len(legs)])) % sum(durations)
    for (start, end), duration in zip(legs, durations, strict=True):
        if t < duration:
            walked = max(0.0, t - DWELL_S) * WALK_M_S
            return start + math.copysign(min(walked, abs(end - start)), end - start)
        t -= duration
    return stops[0]  # pragma: no cover - t < the sum of the durations


async def _credentials(settings: Settings, rooms: tuple[Room, ...], where: Path) -> None:
    """A scanner per room in the database, its password in ``where`` (0600); broker files."""
    db = await Database.open(settings.db_path)
    try:
        known = {r.id for r in await scanner_auth.all_scanners(db)}
        for room in rooms:
            password_file = where / f"{room.name}.password"
            if room.name in known and password_file.exists():
                continue
            if room.name in known:
                await scanner_auth.revoke_scanner(db, room.name)
            password = await scanner_auth.add_scanner(db, room.name, area=None,
                                                      now=datetime.now(UTC))
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
        broker.write_files(settings, await scanner_auth.all_scanners(db))
    finally:
        await db.close()


def _prepare(args: argparse.Namespace) -> tuple[Settings, Path]:
    settings = dataclasses.replace(Settings(), data_dir=Path(args.data_dir).resolve(),
                                   mqtt_embedded=True, mqtt_embedded_port=args.port, site=args.site)
    where = settings.data_dir / "sim-rooms"
    where.mkdir(parents=True, exist_ok=True)
    (where / "ready").unlink(missing_ok=True)
    return settings, where


async def _main(args: argparse.Namespace, settings: Settings, where: Path) -> int:
    rooms = ROOMS[:args.scanners]
    await _credentials(settings, rooms, where)
    mqtt = broker.directory(settings)
    mosquitto = StandinBroker(
        where, None, {}, args.port, password_file=mqtt / broker.PASSWORD_FILE,
        extra=f"acl_file {mqtt / broker.ACL_FILE}\npid_file {mqtt / broker.MOSQUITTO_PID}\n")
    await mosquitto.start()
    radios = [VirtualRadio(args.beacons, seed=i) for i in range(len(rooms))]
    clock = SystemClock()
    scanners = [
        Scanner(dataclasses.replace(settings, role="scanner", scanner_id=room.name),
                Broker("127.0.0.1", args.port, False, room.name, where / f"{room.name}.password"),
                radio, clock)
        for room, radio in zip(rooms, radios, strict=True)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def walk() -> None:
        start = loop.time()
        while True:
            now = loop.time() - start
            for beacon_id in range(1, args.beacons + 1):
                x = position(rooms, beacon_id, now)
                for room, radio in zip(rooms, radios, strict=True):
                    heard = rssi(room, abs(x - room.x_m))
                    radio.air.drop_fraction(beacon_id, 0.0 if heard > HEARD_UNTIL_DBM else 1.0)
                    radio.air.set_rssi(beacon_id, max(heard, HEARD_UNTIL_DBM))
            await asyncio.sleep(UPDATE_S)

    tasks = [asyncio.create_task(scanner.run(stop)) for scanner in scanners]
    tasks.append(asyncio.create_task(walk()))
    (where / "ready").write_text("")
    sys.stdout.write(f"{len(rooms)} rooms ({', '.join(r.name for r in rooms)}), "
                     f"{args.beacons} beacons; broker on 127.0.0.1:{args.port}\n")
    sys.stdout.flush()
    await stop.wait()
    tasks[-1].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks)
    await mosquitto.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance_sim.rooms", description=__doc__)
    parser.add_argument("--data-dir", default="var", help="the appliance's data_dir")
    parser.add_argument("--scanners", type=int, default=3, choices=range(1, len(ROOMS) + 1))
    parser.add_argument("--beacons", type=int, default=3)
    parser.add_argument("--port", type=int, default=11883, help="the broker's loopback port")
    parser.add_argument("--site", default="home")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(_main(args, *_prepare(args)))


if __name__ == "__main__":
    sys.exit(main())
