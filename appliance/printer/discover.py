"""Bambu printers announce themselves on the LAN: SSDP NOTIFY datagrams to UDP port 2021,
the serial in ``USN``, the address in ``Location``, the model in ``DevModel.bambu.com``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from typing import Final

SSDP_PORT: Final = 2021
# Printers announce every few seconds; ten seconds catches each at least once.
LISTEN_S: Final = 10.0
DATAGRAM_MAX: Final = 4096


@dataclass(frozen=True, slots=True)
class Announcement:
    serial: str
    host: str
    model: str | None
    name: str | None


def parse_notify(data: bytes, sender: str) -> Announcement | None:
    """One datagram; None unless it is a Bambu printer's NOTIFY."""
    try:
        lines = data[:DATAGRAM_MAX].decode("utf-8", errors="replace").splitlines()
    except ValueError:
        return None
    if not lines or not lines[0].upper().startswith("NOTIFY"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    serial = headers.get("usn", "")
    if not serial.isalnum() or "devmodel.bambu.com" not in headers:
        return None
    host = headers.get("location", "").removeprefix("http://").split("/")[0].split(":")[0] or sender
    return Announcement(serial, host, headers.get("devmodel.bambu.com") or None,
                        headers.get("devname.bambu.com") or None)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.found: dict[str, Announcement] = {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        announcement = parse_notify(data, addr[0])
        if announcement:
            self.found[announcement.serial] = announcement


async def discover(seconds: float = LISTEN_S, port: int = SSDP_PORT,
                   bind: str = "0.0.0.0") -> list[Announcement]:  # noqa: S104 - LAN broadcasts
    """Every printer heard within ``seconds``, by serial."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with contextlib.suppress(AttributeError, OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # beside Bambu Studio
    sock.bind((bind, port))
    transport, listener = await loop.create_datagram_endpoint(_Listener, sock=sock)
    try:
        await asyncio.sleep(seconds)  # listening is the whole job
    finally:
        transport.close()
    return sorted(listener.found.values(), key=lambda a: a.serial)
