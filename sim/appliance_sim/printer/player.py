"""The stand-in printer itself: reports on ``device/<serial>/report``, obeys requests.

It answers ``pushall`` with a full report and ``get_version`` with its modules, sends partial
reports as a print goes IDLE → PREPARE → RUNNING through the layers → FINISH, and obeys
``ledctrl`` (or refuses it, as firmware without Developer Mode does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from typing import Any, Final

import aiomqtt

_LOGGER = logging.getLogger(__name__)

PLAYER_USER: Final = "standin-printer"


class StandinPrinter:
    def __init__(self, port: int, serial: str, password: str, *, developer_mode: bool = True,
                 job: str = "stand-in benchy.3mf") -> None:
        self.port = port
        self.serial = serial
        self._password = password
        self.developer_mode = developer_mode
        self.state: dict[str, Any] = {
            "gcode_state": "IDLE", "mc_percent": 0, "mc_remaining_time": 0, "layer_num": 0,
            "total_layer_num": 0, "nozzle_temper": 24.0, "nozzle_target_temper": 0,
            "bed_temper": 23.0, "bed_target_temper": 0, "subtask_name": job,
            "lights_report": [{"node": "chamber_light", "mode": "off"}],
        }
        self.requests: list[dict[str, Any]] = []
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def report_topic(self) -> str:
        return f"device/{self.serial}/report"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(10):
            await self._ready.wait()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        self._ready.clear()

    async def _run(self) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        async with aiomqtt.Client("127.0.0.1", self.port, username=PLAYER_USER,
                                  password=self._password, tls_context=ctx, tls_insecure=True,
                                  identifier=f"standin-{self.serial}") as client:
            await client.subscribe(f"device/{self.serial}/request")
            self._client = client
            self._ready.set()
            async for message in client.messages:
                if isinstance(message.payload, (bytes, bytearray)):
                    await self._request(json.loads(message.payload))

    async def publish(self, report: dict[str, Any]) -> None:
        assert self._client is not None, "start() first"  # noqa: S101 - a stand-in's own misuse
        await self._client.publish(self.report_topic, json.dumps(report))

    async def partial(self, **fields: Any) -> None:
        """Change some print fields and report only those, as the printer does."""
        self.state.update(fields)
        await self.publish({"print": {"command": "push_status", "msg": 1, **fields}})

    async def _request(self, request: dict[str, Any]) -> None:
        self.requests.append(request)
        for section, body in request.items():
            if not isinstance(body, dict):
                continue
            command, sequence_id = body.get("command"), body.get("sequence_id")
            if command == "pushall":
                await self.publish({"print": {"command": "push_status", "msg": 0,
                                              "sequence_id": sequence_id, **self.state}})
            elif command == "get_version":
                await self.publish({"info": {"command": "get_version", "sequence_id": sequence_id,
                                             "result": "success", "module": [
                                                 {"name": "ota", "sw_ver": "01.04.00.00 stand-in"}]}})
            elif command == "ledctrl":
                if not self.developer_mode:
                    await self.publish({section: {**body, "result": "fail",
                                                  "reason": "LAN mode without developer mode"}})
                    continue
                mode = "on" if body.get("led_mode") == "on" else "off"
                await self.publish({section: {**body, "result": "success"}})
                await self.partial(lights_report=[{"node": body.get("led_node"), "mode": mode}])

    async def play_print(self, layers: int = 20, layer_s: float = 1.0) -> None:
        """One print, from IDLE to FINISH, in partial reports."""
        await self.partial(gcode_state="PREPARE", mc_percent=0, layer_num=0, total_layer_num=layers,
                           nozzle_target_temper=220, bed_target_temper=65,
                           mc_remaining_time=max(1, layers * round(layer_s) // 60))
        await asyncio.sleep(layer_s)
        await self.partial(nozzle_temper=220.0, bed_temper=65.0)
        for layer in range(1, layers + 1):
            await self.partial(gcode_state="RUNNING", layer_num=layer,
                               mc_percent=layer * 100 // layers,
                               mc_remaining_time=max(0, (layers - layer) * round(layer_s) // 60))
            await asyncio.sleep(layer_s)
        await self.partial(gcode_state="FINISH", mc_percent=100, mc_remaining_time=0,
                           nozzle_target_temper=0, bed_target_temper=0)
