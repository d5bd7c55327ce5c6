"""One connection to the MQTT broker, kept up: reconnecting through the printer links' backoff.

The broker is the user's (mqtt_url, its password in mqtt_password_file) or the appliance's own
mosquitto (mqtt_embedded: loopback, the password broker.py wrote), or none. A session connects
(with a last-will when asked), subscribes, calls ``on_connect``, then hands every message to
``on_message`` until the connection drops; ``publish`` sends while connected and says when it
could not.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn
from urllib.parse import unquote, urlsplit

import aiomqtt

from appliance.clock import Clock
from appliance.printer.backoff import Backoff, run_with_backoff
from appliance.printer.health import LinkHealth
from appliance.printer.mqtt import serve_session
from appliance.settings import Settings
from appliance.settings_values import MQTT_SCHEMES

_LOGGER = logging.getLogger(__name__)

# Connect, TLS handshake, CONNACK and SUBACKs together.
CONNECT_TIMEOUT_S: Final = 15.0
# A scanner whose network died is declared gone by its last-will within 1.5 keepalives.
KEEPALIVE_S: Final = 20
PUBLISH_TIMEOUT_S: Final = 5.0
# Messages waiting to be handled: ten scanners at a few batches a second fill a tenth of it.
INCOMING_QUEUE: Final = 1000
# The embedded mosquitto's loopback listener (port: mqtt_embedded_port).
EMBEDDED_HOST: Final = "127.0.0.1"
# The user the main appliance logs in to its own broker as.
EMBEDDED_USER: Final = "appliance"
_AUTH_REFUSED: Final = frozenset({4, 5, 134, 135})


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    tls: bool
    username: str | None
    password_file: Path | None
    ca_file: str = ""

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def embedded_password_file(settings: Settings) -> Path:
    """The main appliance's own password to its embedded broker (broker.py writes it)."""
    return settings.data_dir / "mqtt" / "appliance-password"


def broker_of(settings: Settings) -> Broker | None:
    """The broker the settings name; None = no MQTT at all."""
    if settings.mqtt_url:
        parts = urlsplit(settings.mqtt_url)
        return Broker(
            parts.hostname or "", parts.port or MQTT_SCHEMES[parts.scheme], parts.scheme == "mqtts",
            unquote(parts.username) if parts.username else None,
            Path(settings.mqtt_password_file) if settings.mqtt_password_file else None,
            settings.mqtt_ca_file)
    if settings.mqtt_embedded and settings.role == "appliance":
        return Broker(EMBEDDED_HOST, settings.mqtt_embedded_port, False, EMBEDDED_USER,
                      embedded_password_file(settings))
    return None


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: str


class MqttClient:
    def __init__(
        self, broker: Broker, clock: Clock, *, client_id: str, name: str,
        subscriptions: tuple[str, ...] = (), will: Will | None = None,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        on_message: Callable[[aiomqtt.Message], Awaitable[None]] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.broker = broker
        self._clock = clock
        self._client_id = client_id
        self._name = name
        self._subscriptions = subscriptions
        self._will = will
        self._on_connect = on_connect
        self._on_message = on_message
        self._backoff = backoff or Backoff()
        self._client: aiomqtt.Client | None = None
        self.health = LinkHealth()

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def run(self) -> NoReturn:
        await run_with_backoff(
            self._session, name=self._name, clock=self._clock, backoff=self._backoff,
            health=self.health, describe=self._describe, on_change=lambda: None,
            closed=f"{self.broker} closed the connection")

    async def publish(self, topic: str, payload: str | bytes, *, retain: bool = False,
                      qos: int = 0) -> bool:
        """Send one message; False when there is no connection (the caller decides what then)."""
        client = self._client
        if client is None:
            return False
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await client.publish(topic, payload, qos=qos, retain=retain)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            _LOGGER.info("%s: publishing to %s failed: %s", self._name, topic, exc)
            return False
        return True

    def _password(self) -> str | None:
        path = self.broker.password_file
        return path.read_text(encoding="utf-8").strip() if path else None

    def _tls(self) -> ssl.SSLContext | None:
        if not self.broker.tls:
            return None
        return ssl.create_default_context(cafile=self.broker.ca_file or None)

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, aiomqtt.MqttCodeError) and getattr(exc.rc, "value", exc.rc) in _AUTH_REFUSED:
            return (f"{self.broker} refused user {self.broker.username!r}: check the password "
                    "file (revoked? `appliance scanner list` on the main appliance)")
        if isinstance(exc, FileNotFoundError):
            return f"no password file {exc.filename}"
        if isinstance(exc, TimeoutError):
            return f"no answer from {self.broker}"
        return f"{self.broker}: {exc}"

    async def _session(self) -> None:
        client = aiomqtt.Client(
            self.broker.host, self.broker.port, username=self.broker.username,
            password=self._password(), identifier=self._client_id, tls_context=self._tls(),
            will=aiomqtt.Will(self._will.topic, self._will.payload, qos=1, retain=True)
            if self._will else None,
            keepalive=KEEPALIVE_S, timeout=CONNECT_TIMEOUT_S,
            max_queued_incoming_messages=INCOMING_QUEUE, logger=_LOGGER,
        )
        try:
            await serve_session(client, self._subscriptions, started=self._started,
                                message=self._received)
        finally:
            self._client = None

    async def _started(self, client: aiomqtt.Client) -> None:
        self._client = client
        if self._on_connect:
            await self._on_connect()
        self.health.up(self._clock.monotonic())
        _LOGGER.info("%s connected to %s", self._name, self.broker)

    async def _received(self, message: aiomqtt.Message) -> None:
        if self._on_message:
            await self._on_message(message)
