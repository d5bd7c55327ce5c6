"""A satellite scanner for HIL scenario 10: the appliance's own Scanner (what `role = "scanner"`
runs) on a virtual radio whose one beacon the twin's radio does not have.

A process of its own, so the scenario can kill it the way a scanner dies (its plug pulled): the
broker then sends its last-will. The password is read from a file (mode 0600), never an argument.

    python -m tests.hil.satellite --port P --user hall --password-file F --beacon 9
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from pathlib import Path

from appliance.clock import SystemClock
from appliance.mqtt.client import Broker
from appliance.mqtt.scanner import Scanner
from appliance.settings import Settings
from appliance_sim.radio import VirtualRadio


async def _main(args: argparse.Namespace) -> int:
    radio = VirtualRadio(0)
    radio.air.declare(args.beacon)
    settings = dataclasses.replace(Settings(), role="scanner", scanner_id=args.user, site=args.site)
    broker = Broker("127.0.0.1", args.port, False, args.user, Path(args.password_file))
    scanner = Scanner(settings, broker, radio, SystemClock())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await scanner.run(stop)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hil.satellite", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="the broker's loopback port")
    parser.add_argument("--user", required=True, help="the scanner's id and MQTT user")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--beacon", type=int, required=True, help="the one beacon id it hears")
    parser.add_argument("--site", default="home")
    return asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
