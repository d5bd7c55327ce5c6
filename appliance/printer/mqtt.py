"""The printer's MQTT broker: reports in (merged by the service), commands out.

aiomqtt rather than bare paho-mqtt 2: it is paho-mqtt 2 underneath (the protocol code Home
Assistant's Bambu integration relies on) but drives it from our event loop, so connecting,
subscribing, publishing and reading are awaitables that sit under ``asyncio.timeout`` like every
other network call here, with no paho network thread and no callbacks to marshal back onto the
loop. Its only blocking step (paho's ``connect``) runs in an executor with paho's own timeout.

One connection at a time; when it drops, the next attempt waits a bounded, jittered delay.
Reading needs no Developer Mode. Newer firmware refuses commands without it: a refused command
is reported to the caller once and never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, NoReturn

import aiomqtt

from appliance.clock import Clock
from appliance.printer.backoff import Backoff, run_with_backoff
from appliance.printer.errors import AccessCodeRefused, PrinterError, describe_os_error
from appliance.printer.health import LinkHealth
from appliance.printer.trust import PrinterTrust

_LOGGER = logging.getLogger(__name__)

USERNAME: Final = "bblp"
BROKER_NAME: Final = "printer's MQTT broker"
# Connect, TLS handshake, CONNACK and SUBACK together; paho's socket timeout is inside this.
CONNECT_TIMEOUT_S: Final = 15.0
# A printer that vanished (power cut, Wi-Fi gone) is noticed within 1.5 keepalives.
KEEPALIVE_S: Final = 20
# A command's answer (a report with the same sequence_id) comes within a second when it comes.
COMMAND_TIMEOUT_S: Final = 5.0
PUBLISH_TIMEOUT_S: Final = 5.0
# A full report is ~10 kB; anything far larger is not a report.
REPORT_MAX_BYTES: Final = 512 * 1024
# Reports waiting to be merged; the printer sends about one a second.
INCOMING_QUEUE: Final = 200
# Refusal codes of CONNACK: 4/5 in MQTT 3.1.1, 134/135 as paho's reason codes.
_AUTH_REFUSED: Final = frozenset({4, 5, 134, 135})


async def serve_session(client: aiomqtt.Client, topics: Iterable[str], *,
                        started: Callable[[aiomqtt.Client], Awaitable[None]],
                        message: Callable[[aiomqtt.Message], Awaitable[None]]) -> None:
    """One MQTT session, for the printer's broker and the appliance's (mqtt/client.py): connect,
    subscribe to ``topics`` and ``started(client)`` (its first publishes), all within
    CONNECT_TIMEOUT_S; then every message to ``message`` until the connection ends."""
    async with contextlib.AsyncExitStack() as stack:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await stack.enter_async_context(client)
            for topic in topics:
                await client.subscribe(topic, qos=0, timeout=CONNECT_TIMEOUT_S)
            await started(client)
        async for received in client.messages:
            await message(received)


class MqttLink:
    def __init__(self, host: str, port: int, serial: str, access_code: Callable[[], str],
                 trust: PrinterTrust, on_report: Callable[[dict[str, Any]], None],
                 clock: Clock, *, backoff: Backoff | None = None,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self._host, self._port, self._serial = host, port, serial
        self._access_code = access_code
        self._trust = trust
        self._on_report = on_report
        self._on_change = on_change
        self._clock = clock
        self._backoff = backoff or Backoff()
        self.health = LinkHealth()
        self.oversized = 0
        self._client: aiomqtt.Client | None = None
        self._sequence = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    @property
    def report_topic(self) -> str:
        return f"device/{self._serial}/report"

    @property
    def request_topic(self) -> str:
        return f"device/{self._serial}/request"

    async def run(self) -> NoReturn:
        """Connect, read, reconnect, until cancelled."""
        await run_with_backoff(
            self._session, name="Printer MQTT", clock=self._clock, backoff=self._backoff,
            health=self.health, describe=self._describe, on_change=self._on_change,
            closed=f"{self._host}:{self._port} closed the connection")

    def _describe(self, exc: Exception) -> str:
        if self._trust.problem:
            return self._trust.problem
        if isinstance(exc, PrinterError):
            return str(exc)
        if isinstance(exc, aiomqtt.MqttCodeError):
            rc = getattr(exc.rc, "value", exc.rc)
            if rc in _AUTH_REFUSED:
                return str(AccessCodeRefused(BROKER_NAME))
        if isinstance(exc, aiomqtt.MqttError) and "disconnected" in str(exc).lower():
            return f"{self._host}:{self._port} closed the connection (printer switched off?)"
        if isinstance(exc, TimeoutError):
            return f"no answer from {self._host}:{self._port}: is the printer on and on this network?"
        return describe_os_error(exc, self._host, self._port)

    async def _session(self) -> None:
        client = aiomqtt.Client(
            self._host, self._port, username=USERNAME, password=self._access_code(),
            tls_context=self._trust.context(), tls_insecure=True,  # the trust policy checks names
            keepalive=KEEPALIVE_S, timeout=CONNECT_TIMEOUT_S,
            max_queued_incoming_messages=INCOMING_QUEUE, logger=_LOGGER,
        )
        try:
            await serve_session(client, [self.report_topic], started=self._started,
                                message=self._received)
        finally:  # commands waiting for an answer get none from this connection
            self._client = None
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()

    async def _started(self, client: aiomqtt.Client) -> None:
        self._client = client
        await self._publish({"info": {"sequence_id": self._next_id(), "command": "get_version"}})
        await self._publish({"pushing": {"sequence_id": self._next_id(), "command": "pushall",
                                         "version": 1, "push_target": 1}})
        self.health.up(self._clock.monotonic())
        self._on_change()
        _LOGGER.info("Printer MQTT connected to %s:%s", self._host, self._port)

    async def _received(self, message: aiomqtt.Message) -> None:
        self._handle(message.payload)

    def _handle(self, payload: Any) -> None:
        if not isinstance(payload, (bytes, bytearray)) or len(payload) > REPORT_MAX_BYTES:
            self.oversized += 1
            return
        try:
            report = json.loads(payload)
        except ValueError:
            _LOGGER.info("Printer MQTT: a report that is not JSON was ignored")
            return
        if not isinstance(report, dict):
            return
        for section in report.values():
            if isinstance(section, dict) and "result" in section:
                future = self._pending.pop(str(section.get("sequence_id")), None)
                if future and not future.done():
                    future.set_result(section)
        self._on_report(report)

    def _next_id(self) -> str:
        return str(next(self._sequence))

    async def _publish(self, body: dict[str, Any]) -> None:
        client = self._client
        if client is None:
            msg = f"the printer is not connected ({self.health.last_error or 'connecting'})"
            raise PrinterError(msg, code="printer_offline", status=503)
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            await client.publish(self.request_topic, json.dumps(body), qos=1)

    async def command(self, section: str, command: str, **params: Any) -> bool:
        """Send one command; True when the printer confirmed it, False when it did not answer.

        A refusal raises PrinterError once; the caller decides whether to ask again.
        """
        sequence_id = self._next_id()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[sequence_id] = future
        try:
            await self._publish({section: {"sequence_id": sequence_id, "command": command, **params}})
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                answer = await future
        except TimeoutError:
            _LOGGER.info("Printer MQTT: no answer to %s within %s s", command, COMMAND_TIMEOUT_S)
            return False
        except asyncio.CancelledError:
            if future.cancelled():  # the connection dropped while we waited
                msg = f"the printer's connection dropped before it answered {command}"
                raise PrinterError(msg, code="printer_offline", status=503) from None
            raise
        finally:
            self._pending.pop(sequence_id, None)
        if str(answer.get("result", "")).lower() != "success":
            reason = answer.get("reason") or answer.get("result")
            msg = (f"the printer refused {command} ({reason}); newer firmware obeys LAN commands "
                   "only with Developer Mode on (Settings → LAN Only on the printer)")
            raise PrinterError(msg, code="command_refused", status=409)
        return True
