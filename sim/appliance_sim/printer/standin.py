"""The whole stand-in printer: TLS material, broker, the printer player and its camera."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Final

from appliance_sim.printer.broker import StandinBroker, free_port
from appliance_sim.printer.camera import StandinCamera
from appliance_sim.printer.certs import CertFiles, make_certs
from appliance_sim.printer.player import PLAYER_USER, StandinPrinter

SERIAL: Final = "03919A3A2200009"  # a made-up serial in the A1's format
USERNAME: Final = "bblp"


class Standin:
    def __init__(self, directory: Path, access_code: str, *, serial: str = SERIAL,
                 mqtt_port: int | None = None, camera_port: int = 0, frame_interval_s: float = 1.0,
                 developer_mode: bool = True) -> None:
        self.directory = directory
        self.serial = serial
        self.access_code = access_code
        self.certs: CertFiles = make_certs(directory, serial)
        player_password = secrets.token_urlsafe(16)
        self.broker = StandinBroker(directory, self.certs,
                                    {USERNAME: access_code, PLAYER_USER: player_password},
                                    port=mqtt_port)
        self.printer = StandinPrinter(self.broker.port, serial, player_password,
                                      developer_mode=developer_mode)
        self.camera = StandinCamera(self.certs, access_code, interval_s=frame_interval_s,
                                    scene=self._scene, port=camera_port or free_port())

    def _scene(self) -> tuple[str, float]:
        state = self.printer.state
        total = state.get("total_layer_num") or 0
        text = f"{state['gcode_state']}  layer {state['layer_num']}/{total}  {state['mc_percent']}%"
        return text, (state.get("mc_percent") or 0) / 100

    @property
    def mqtt_port(self) -> int:
        return self.broker.port

    async def start(self) -> None:
        await self.broker.start()
        await self.printer.start()
        await self.camera.start()

    async def stop(self) -> None:
        await self.camera.stop()
        await self.printer.stop()
        await self.broker.stop()

    async def away(self) -> None:
        """The printer is switched off: broker and camera gone."""
        await self.camera.stop()
        await self.printer.stop()
        await self.broker.stop()

    async def back(self) -> None:
        await self.broker.start()
        await self.printer.start()
        await self.camera.start()

    def replace_certificate(self) -> None:
        """A new certificate (as after a printer swap); takes effect at the next back()."""
        fresh = make_certs(self.directory, self.serial, prefix="new-")
        for old, new in ((self.certs.ca, fresh.ca), (self.certs.cert, fresh.cert),
                         (self.certs.key, fresh.key)):
            old.write_bytes(new.read_bytes())
