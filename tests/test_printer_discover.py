"""`appliance printer discover`: SSDP NOTIFY datagrams as Bambu printers send them."""

from __future__ import annotations

import asyncio
import socket

from helpers import wait_for

from appliance.printer.discover import discover, parse_notify

NOTIFY = (b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1990\r\nServer: UPnP/1.0\r\n"
          b"Location: 192.168.1.40\r\nNT: urn:bambulab-com:device:3dprinter:1\r\n"
          b"USN: 03919A3A2200009\r\nCache-Control: max-age=1800\r\n"
          b"DevModel.bambu.com: N2S\r\nDevName.bambu.com: Workshop A1\r\n"
          b"DevConnect.bambu.com: lan\r\n\r\n")


def test_a_bambu_notify_names_serial_host_and_model() -> None:
    found = parse_notify(NOTIFY, "192.168.1.99")
    assert found is not None
    assert (found.serial, found.host, found.model, found.name) == (
        "03919A3A2200009", "192.168.1.40", "N2S", "Workshop A1")
    assert parse_notify(b"M-SEARCH * HTTP/1.1\r\nUSN: X\r\n\r\n", "1.2.3.4") is None
    assert parse_notify(b"NOTIFY * HTTP/1.1\r\nUSN: uuid:abc\r\n\r\n", "1.2.3.4") is None


def _bound(port: int) -> bool:
    """Something listens on UDP ``port`` (binding it again, without SO_REUSEADDR, fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


async def test_discover_hears_printers_on_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = asyncio.create_task(discover(seconds=1.0, port=port, bind="127.0.0.1"))
    await wait_for(lambda: _bound(port), what="discover listening")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(NOTIFY, ("127.0.0.1", port))
        sender.sendto(NOTIFY.replace(b"03919A3A2200009", b"01P00A000000001"), ("127.0.0.1", port))
    found = await task
    assert [a.serial for a in found] == ["01P00A000000001", "03919A3A2200009"]
