"""The Host check against DNS rebinding (issue 13, finding 8): the real app on loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest
from conftest import Env
from websockets.asyncio.client import connect as ws_connect

from appliance.web.hosts import host_name

OWN = socket.gethostname().lower()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]:8000", "192.168.1.40:80",
                                  "[fd00::5]", OWN, f"{OWN}.local", f"{OWN.upper()}.LOCAL:8000"])
async def test_the_appliances_own_names_and_addresses_are_served(logged_in: Env,
                                                                 host: str) -> None:
    answer = await logged_in.client.get(f"{logged_in.base}/devices", headers={"Host": host})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                                  f"{OWN}.evil.example", "localhost.evil.example", ""])
async def test_other_names_get_421_with_what_to_use(logged_in: Env, host: str) -> None:
    for path in ("/devices", "/health", "/login", "/socket.io/?EIO=4&transport=polling"):
        answer = await logged_in.client.get(f"{logged_in.base}{path}", headers={"Host": host})
        assert answer.status_code == 421, (path, answer.text)
        body = answer.json()
        assert body["error"] == "unknown_host" and f"{OWN}.local" in body["message"]
        assert "public_origins" in body["message"]


async def test_a_websocket_under_another_name_is_refused(logged_in: Env) -> None:
    url = logged_in.base.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with ws_connect(url, additional_headers={"Cookie": logged_in.cookie}) as ws:
        assert str(await ws.recv()).startswith("0")  # the own address: Engine.IO opens
    # The same upgrade under another name (written by hand: clients take Host from the URL).
    port = int(logged_in.base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: evil.example\r\n"
                 b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: "
                 + logged_in.cookie.encode() + b"\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 421") and b"unknown_host" in answer, answer


TUNNEL = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}  # as nginx says


async def test_with_no_public_name_set_the_tunnel_is_served_whatever_its_name(
        logged_in: Env) -> None:
    answer = await logged_in.client.get(f"{logged_in.base}/devices",
                                        headers={**TUNNEL, "Host": "printer.example.com"})
    assert answer.status_code == 200, answer.text
    plain = await logged_in.client.get(f"{logged_in.base}/devices",
                                       headers={"Host": "printer.example.com"})
    assert plain.status_code == 421  # the same name over plain http: a LAN page, refused


@pytest.mark.parametrize("app_env", [{"public_origins": ("https://printer.example.com",)}],
                         indirect=True)
async def test_once_a_public_name_is_set_only_it_is_served_through_the_tunnel(
        logged_in: Env) -> None:
    for headers in (TUNNEL, {}):
        answer = await logged_in.client.get(f"{logged_in.base}/devices",
                                            headers={**headers, "Host": "printer.example.com"})
        assert answer.status_code == 200, answer.text
    other = await logged_in.client.get(f"{logged_in.base}/devices",
                                       headers={**TUNNEL, "Host": "other.example.com"})
    assert other.status_code == 421


def test_host_names_lose_their_port_and_brackets() -> None:
    assert host_name("Printer.Example.com:443") == "printer.example.com"
    assert host_name("[fe80::1]:80") == "fe80::1" and host_name("fe80::1") == "fe80::1"
