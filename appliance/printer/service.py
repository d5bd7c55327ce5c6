"""The printer link as one service: owns the MQTT and camera tasks, holds the merged state.

- reports → merged state → ``printer2v`` subscribers, at most every PUSH_EVERY_S;
- the state's one-line summary → the relay's status (stored, ``status2v``) when the print's
  state changes, and otherwise at most every STATUS_EVERY_S: never per report;
- camera frames → the relay, as bytes, stored at most once per ``image_delay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from appliance.clock import Clock, wall_of
from appliance.files import write_atomic
from appliance.presence.model import Unsubscribe
from appliance.printer.backoff import Backoff
from appliance.printer.camera import CameraLink
from appliance.printer.errors import NO_PRINTER, PrinterError, read_access_code, write_access_code
from appliance.printer.health import LinkHealth
from appliance.printer.model import CHAMBER_LIGHT, PrinterState, merge_report, read_state
from appliance.printer.mqtt import MqttLink
from appliance.printer.trust import PrinterTrust
from appliance.relay.frames import RelayInputError, frame_from_bytes
from appliance.relay.service import RelayService
from appliance.settings import Settings
from appliance.settings_values import parse_printer_host, parse_printer_serial

_LOGGER = logging.getLogger(__name__)

# Browsers get the state at most this often (the A1 reports about once a second, in bursts).
PUSH_EVERY_S: Final = 0.25
# Progress and layer changes reach the status history at most this often; a change of the
# print's state (RUNNING → FINISH) goes at once. A 3-hour print writes a few hundred rows.
STATUS_EVERY_S: Final = 30.0
CAMERA: Final = "printer camera"

Listener = Callable[[dict[str, Any]], None]


def address_path(settings: Settings) -> Path:
    """The address saved on the Settings page; it wins over printer_host/printer_serial."""
    return settings.data_dir / "printer-address.json"


def read_address(settings: Settings) -> tuple[str, str]:
    """(host, serial): the Settings page's, else appliance.toml's."""
    path = address_path(settings)
    try:
        saved = json.loads(path.read_text())
        return parse_printer_host(saved["host"]), parse_printer_serial(saved["serial"])
    except FileNotFoundError:
        return settings.printer_host, settings.printer_serial
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _LOGGER.warning("Ignoring %s (%s); using printer_host and printer_serial", path, exc)
        return settings.printer_host, settings.printer_serial


def access_code_path(settings: Settings) -> Path:
    return Path(settings.printer_access_code_file) if settings.printer_access_code_file \
        else settings.data_dir / "printer-access-code"


class PrinterService:
    def __init__(self, settings: Settings, relay: RelayService, clock: Clock, *,
                 time_format: Callable[[datetime], str],
                 backoff: Callable[[], Backoff] = Backoff) -> None:
        self._settings = settings
        self._relay = relay
        self._clock = clock
        self._time_format = time_format  # the API's (appliance.schema.api_time)
        self._backoff = backoff
        self.host, self.serial = read_address(settings)
        self.trust = PrinterTrust(settings.printer_tls, settings.data_dir, self.serial)
        self._held: dict[str, Any] = {}
        self._last_seen: float | None = None
        self._listeners: list[Listener] = []
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_payload: dict[str, Any] | None = None
        self._last_line: str | None = None
        self._last_line_state: str | None = None
        self._line_at = float("-inf")
        self.mqtt, self.camera = self._links()

    def _links(self) -> tuple[MqttLink, CameraLink]:
        settings = self._settings
        mqtt = MqttLink(
            self.host, settings.printer_mqtt_port, self.serial, self._access_code,
            self.trust, self._on_report, self._clock, backoff=self._backoff(),
            on_change=self._changed.set)
        camera = CameraLink(
            self.host, settings.printer_camera_port, self._access_code, self.trust, self._on_frame,
            self._clock, max_bytes=settings.image_max_bytes, backoff=self._backoff(),
            on_change=self._changed.set)
        return mqtt, camera

    @property
    def configured(self) -> bool:
        return bool(self.host)

    # -- life ----------------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.configured:
            return
        self._tasks = [asyncio.create_task(self.mqtt.run(), name="printer-mqtt"),
                       asyncio.create_task(self.camera.run(), name="printer-camera"),
                       asyncio.create_task(self._pusher(), name="printer-push")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def set_address(self, host: str, serial: str) -> None:
        """Keep the printer's address (the Settings page) and connect to it at once; an empty
        host unlinks the printer. Another serial is another printer: its certificate is new."""
        try:
            host, serial = parse_printer_host(host), parse_printer_serial(serial)
        except ValueError as exc:
            raise PrinterError(str(exc), code="invalid", status=422) from None
        if host and not serial:
            msg = "set the printer's serial too (on its screen: Settings → Device)"
            raise PrinterError(msg, code="invalid", status=422)
        await self.stop()
        await asyncio.to_thread(write_atomic, address_path(self._settings),
                                json.dumps({"host": host, "serial": serial}) + "\n")
        if serial != self.serial:
            self.trust.forget(serial)
            self._held, self._last_seen, self._last_line = {}, None, None
        self.host, self.serial = host, serial
        _LOGGER.info("Printer address set to %s, serial %s (from the Settings page)",
                     host or "none", serial or "none")
        self.mqtt, self.camera = self._links()
        self._changed.set()
        await self.start()

    async def set_access_code(self, code: str) -> None:
        """Keep a new access code (mode 0600) and reconnect both links with it at once."""
        await asyncio.to_thread(write_access_code, access_code_path(self._settings), code)
        _LOGGER.info("Printer access code replaced (from the Settings page)")
        if self._tasks:
            await self.stop()
            await self.start()

    def subscribe(self, listener: Listener) -> Unsubscribe:
        """``listener(payload)`` with the GET /api/printer body whenever it changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -- state ---------------------------------------------------------------------------------
    def _access_code(self) -> str:
        return read_access_code(access_code_path(self._settings))

    def _on_report(self, report: dict[str, Any]) -> None:
        merge_report(self._held, report)
        self._last_seen = self._clock.monotonic()
        self._changed.set()

    @property
    def state(self) -> PrinterState:
        return read_state(
            self._held, connected=self.mqtt.health.connected,
            last_error=self.mqtt.health.last_error or self.camera.health.last_error,
            last_seen=wall_of(self._clock, self._last_seen) if self._last_seen is not None else None)

    def payload(self) -> dict[str, Any]:
        return self.state.as_payload(self._time_format)

    async def _pusher(self) -> None:
        while True:
            timeout = None
            if self._last_line is not None and self._pending_line() is not None:
                timeout = max(0.0, self._line_at + STATUS_EVERY_S - self._clock.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            self._changed.clear()
            try:
                await self._push()
            except Exception:
                _LOGGER.exception("Pushing the printer's state failed")
            await asyncio.sleep(PUSH_EVERY_S)  # a rate limit, not a synchronisation

    def _pending_line(self) -> str | None:
        line = self.state.status_line()
        return line if line != self._last_line else None

    async def _push(self) -> None:
        payload = self.payload()
        if payload != self._last_payload:
            self._last_payload = payload
            for listener in list(self._listeners):
                try:
                    listener(payload)
                except Exception:
                    _LOGGER.exception("Printer listener failed")
        state = self.state
        line = state.status_line()
        now = self._clock.monotonic()
        if line != self._last_line and (state.state != self._last_line_state
                                        or now - self._line_at >= STATUS_EVERY_S):
            self._last_line, self._last_line_state, self._line_at = line, state.state, now
            await self._relay.status(line)

    # -- frames --------------------------------------------------------------------------------
    async def _on_frame(self, data: bytes) -> None:
        try:
            frame = frame_from_bytes(data, self._settings.image_max_bytes)
        except RelayInputError as exc:
            self._relay.rejected(str(exc), CAMERA)
            return
        await self._relay.image(frame)  # the relay keeps one per image_delay on the SD card

    # -- commands ------------------------------------------------------------------------------
    async def set_light(self, on: bool) -> bool:
        """Switch the chamber light; True when the printer confirmed it."""
        if not self.configured:
            raise PrinterError(NO_PRINTER, code="no_printer", status=404)
        confirmed = await self.mqtt.command(
            "system", "ledctrl", led_node=CHAMBER_LIGHT, led_mode="on" if on else "off",
            led_on_time=500, led_off_time=500, loop_times=0, interval_time=0)
        if confirmed:
            self._on_report({"print": {"lights_report": [
                {"node": CHAMBER_LIGHT, "mode": "on" if on else "off"}]}})
        return confirmed

    # -- /status -------------------------------------------------------------------------------
    def _link(self, health: LinkHealth) -> dict[str, Any]:
        return {
            "connected": health.connected,
            "since": self._time_format(wall_of(self._clock, health.since)) if health.since else None,
            "lastError": health.last_error, "attempts": health.attempts,
            "failures": health.failures, "retryInS": health.retry_in_s,
        }

    def status(self) -> dict[str, Any]:
        if not self.configured:
            return {"configured": False,
                    "message": NO_PRINTER}
        return {
            "configured": True, "host": self.host, "serial": self.serial,
            "mqtt": {**self._link(self.mqtt.health), "oversized": self.mqtt.oversized},
            "camera": {**self._link(self.camera.health), "frames": self.camera.frames,
                       "oversized": self.camera.oversized, "truncated": self.camera.truncated},
            "tls": {"mode": self.trust.mode if self.trust.mode in ("pin", "insecure") else "ca",
                    "pinned": self.trust.pinned, "problem": self.trust.problem,
                    "offered": self.trust.offered},
        }
