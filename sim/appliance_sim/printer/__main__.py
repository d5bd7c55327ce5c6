"""`python -m appliance_sim.printer`: the stand-in printer for `make run PRINTER=standin`.

It writes the access code file the app reads and prints the settings to start the app with,
then plays one print after another until stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from appliance_sim.printer.standin import Standin


def _prepare(args: argparse.Namespace) -> tuple[Path, Path, str]:
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    code_file = Path(args.access_code_file).resolve()
    code = secrets.token_hex(4)  # 8 characters, like the printer's
    code_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(code_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(code + "\n")
    return directory, code_file, code


async def _main(args: argparse.Namespace) -> int:
    directory, code_file, code = _prepare(args)
    standin = Standin(directory, code, mqtt_port=args.mqtt_port, camera_port=args.camera_port)
    await standin.start()
    sys.stdout.write(f"Stand-in printer {standin.serial}: MQTT 127.0.0.1:{standin.mqtt_port}, "
                     f"camera 127.0.0.1:{standin.camera.port}; access code in {code_file}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def prints() -> None:
        while True:
            await asyncio.sleep(args.idle_s)
            await standin.printer.play_print(layers=args.layers, layer_s=args.layer_s)
            await asyncio.sleep(args.idle_s)
            await standin.printer.partial(gcode_state="IDLE", mc_percent=0, layer_num=0)

    task = asyncio.create_task(prints())
    await stop.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await standin.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance_sim.printer", description=__doc__)
    parser.add_argument("--dir", default="var/standin-printer", help="certificates, broker files")
    parser.add_argument("--access-code-file", default="var/printer-access-code")
    parser.add_argument("--mqtt-port", type=int, default=8883)
    parser.add_argument("--camera-port", type=int, default=6000)
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--layer-s", type=float, default=2.0)
    parser.add_argument("--idle-s", type=float, default=10.0)
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
