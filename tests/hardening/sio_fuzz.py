"""A Socket.IO fuzzer for the relay's every event: before the Socket.IO connect, refused, as a
browser and as a publisher. Payloads come from hypothesis (JSON of every kind, bytes, and the
events' own shapes with hostile values); what must hold is in ``Findings``."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

EVENTS_IN = ("image", "temphum", "status")
ACK_TIMEOUT_S = 15.0

_numbers = (st.integers() | st.floats() | st.just(10**400) | st.just(-(10**40))
            | st.sampled_from([float("inf"), float("nan"), True, 1e308]))
_text = st.text(max_size=300) | st.sampled_from(["\u202e", "\x7f", "a\u2028b", "\ud800", "%00"])
_json = st.recursive(st.none() | st.booleans() | _numbers | _text,
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(_text, inner, max_size=4), max_leaves=12)
PAYLOADS = {
    "image": st.binary(max_size=2048) | st.builds(lambda b: b"\xff\xd8\xff" + b, st.binary())
    | st.fixed_dictionaries({"image": st.binary() | _text | _json}) | _json,
    "temphum": st.fixed_dictionaries({"temperature": _numbers | _json,
                                      "humidity": _numbers | _json}) | _json,
    "status": st.fixed_dictionaries({"status": _text | _json}) | _json,
}
AUTHS = st.none() | _json | st.fixed_dictionaries({"token": _text | _json})


def examples(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """``count`` values drawn the way a property test draws them (shrinking off)."""
    drawn: list[Any] = []

    @settings(max_examples=count, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=["generate"])
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


@dataclass
class Findings:
    sent: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text[:300])


def _good_ack(ack: Any) -> bool:
    if not isinstance(ack, dict) or not isinstance(ack.get("ok"), bool):
        return False
    return ack["ok"] or (isinstance(ack.get("error"), str) and isinstance(ack.get("message"), str))


async def _raw(url: str, messages: list[str | bytes], found: Findings) -> None:
    """Engine.IO opened, then ``messages`` (before or instead of a proper Socket.IO connect),
    then a connect without credentials, which must still be answered (refused)."""
    try:
        async with ws_connect(url, max_size=None, open_timeout=10) as ws:
            await asyncio.wait_for(ws.recv(), 10)  # Engine.IO open
            for message in messages:
                found.sent += 1
                await ws.send(message)
            await ws.send("40")
            while True:
                answer = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(answer, str) and answer.startswith("40"):
                    found.problem(f"a connect was accepted after {str(messages)[:200]}")
                if isinstance(answer, str) and answer.startswith("44"):
                    break  # refused, as it must be
    except ConnectionClosed:
        pass  # closing a hostile connection is an answer too
    except TimeoutError:
        found.problem(f"no answer after raw messages {str(messages)[:200]}")


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True, default=lambda b: b.hex())


async def before_connect(base: str, count: int, found: Findings) -> None:
    url = base.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    for event in EVENTS_IN:
        for payload in examples(PAYLOADS[event], count // 4):
            await _raw(url, [f'42{_dumps([event, payload])}', f'421{_dumps([event, payload])}'],
                       found)
    for auth in examples(AUTHS, count // 2):
        await _raw(url, ["40" + _dumps(auth)], found)
    for junk in examples(st.text(max_size=200) | st.binary(max_size=200), count // 2):
        await _raw(url, [junk], found)


async def as_client(base: str, *, count: int, found: Findings, auth: dict[str, str] | None,
                    headers: dict[str, str], publisher: bool) -> None:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(base, auth=auth, headers=headers, transports=["websocket"],
                         wait_timeout=10)
    try:
        for event in EVENTS_IN:
            for payload in examples(PAYLOADS[event], count):
                if not client.connected:
                    found.problem(f"connection dropped before {event} {str(payload)[:100]}")
                    return
                found.sent += 1
                try:
                    ack = await client.call(event, payload, timeout=ACK_TIMEOUT_S)
                except socketio.exceptions.TimeoutError:
                    found.problem(f"no ack for {event} {str(payload)[:150]}")
                    continue
                except (TypeError, ValueError):
                    continue  # the client library itself cannot encode it (e.g. a lone surrogate)
                if not _good_ack(ack):
                    found.problem(f"bad ack {ack!r} for {event}")
                elif not publisher and ack.get("error") != "forbidden":
                    found.problem(f"a browser's {event} was not refused: {ack!r}")
        # Events the relay does not know: no ack is due, the connection must stay.
        for name in examples(st.text(min_size=1, max_size=40), count // 4):
            found.sent += 1
            await client.emit(name, {"x": 1})
        await asyncio.sleep(0)
        if not client.connected:
            found.problem("unknown event names dropped the connection")
    finally:
        await client.disconnect()


async def fuzz(base: str, *, cookie: str, token: str, count: int) -> Findings:
    found = Findings()
    await before_connect(base, count, found)
    for auth in examples(AUTHS, count // 2):
        found.sent += 1
        client = socketio.AsyncClient(reconnection=False)
        try:
            await client.connect(base, auth=auth, transports=["websocket"], wait_timeout=10)
        except socketio.exceptions.ConnectionError:
            continue
        except (TypeError, ValueError):
            continue  # not encodable by the client library
        if auth == {"token": token}:
            await client.disconnect()
            continue
        found.problem(f"connected with auth {str(auth)[:120]}")
        await client.disconnect()
    await as_client(base, count=count, found=found, auth=None, publisher=False,
                    headers={"Cookie": cookie, "Origin": base})
    await as_client(base, count=count, found=found, auth={"token": token}, publisher=True,
                    headers={})
    return found

