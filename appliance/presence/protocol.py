"""The beacon protocol: the one definition shared by the appliance and the firmware.

The firmware's C++ header (firmware/beacon/protocol.h) is generated from this module by
``python -m appliance.presence.protocol --header`` and a test proves the committed header matches.
Test vectors at the bottom are checked against both the Python parser and the C++ builder.

Advertising data (legacy advertising, 31 bytes at most):

    flags                      3 bytes   02 01 06 (LE General Discoverable, BR/EDR not supported)
    complete 128-bit UUIDs    18 bytes   11 07 <SERVICE_UUID, little-endian>
    manufacturer specific     10 bytes   09 FF <company id LE> <payload, 6 bytes>
                              --------
                              31 bytes   the local name therefore travels in the scan response

Manufacturer payload (little-endian):

    offset 0  u8   protocol version (PROTOCOL_VERSION)
    offset 1  u16  beacon id, 1..65535 (0 = not provisioned)
    offset 3  u8   counter, +1 each time the advertising data is refreshed, wraps at 255
    offset 4  u16  uptime in minutes, saturates at 65535

Company id 0xFFFF is the Bluetooth SIG's value for "no assigned company" (test/internal use):
this project owns no company id, so the 128-bit service UUID is what identifies our beacons and
the manufacturer data only carries the payload. A beacon is recognised only when both are present.

Serial console (the board's USB CDC port, SERIAL_BAUD 8N1), one command a line:

    host -> beacon   a command (COMMAND_USAGES), at most MAX_COMMAND_LEN characters, ended by
                     CR, LF or CRLF (the beacon accepts all three; hosts send COMMAND_END);
                     words separated by spaces, ASCII case-insensitive; a blank line is ignored
    beacon -> host   exactly one reply per command: REPLY_OK + result ("ok id=7") or
                     REPLY_ERR + what went wrong and what to do ("err usage: id [1-65535]");
                     any other line is a log line ("BLE beacon active", "central connected")
                     printed whenever something happens. Every line ends in REPLY_END (println).

A line longer than MAX_COMMAND_LEN is answered "err line too long". The one client of this console
(flash.py, the HIL rig, the tests, the simulated beacon) is appliance/presence/beacon_serial.py.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from typing import Final

SERVICE_UUID: Final = "a0c83f43-fcb9-468b-80f9-91918022460b"
# GATT characteristics of the beacon service.
INFO_CHAR_UUID: Final = "a0c83f44-fcb9-468b-80f9-91918022460b"  # read: BeaconInfo, 8 bytes
IDENTIFY_CHAR_UUID: Final = "a0c83f45-fcb9-468b-80f9-91918022460b"  # write u8: blink N seconds
COMPANY_ID: Final = 0xFFFF
PROTOCOL_VERSION: Final = 1
PAYLOAD_LEN: Final = 6
INFO_LEN: Final = 8
LEGACY_ADV_MAX: Final = 31
DEFAULT_LOCAL_NAME: Final = "SG Beacon"
IDENTIFY_MAX_SECONDS: Final = 30

# -- the serial console -----------------------------------------------------------------------
# The sketch's Serial.begin(); USB CDC ignores the rate, but a terminal or a USB-UART needs it.
SERIAL_BAUD: Final = 115200
COMMAND_END: Final = "\n"
REPLY_END: Final = "\r\n"  # Arduino's println
# The firmware's line buffer (LineReader): longer than any valid command ("id 65535" is 8), short
# enough for the board's RAM; the rest of a longer line is dropped and the line refused.
MAX_COMMAND_LEN: Final = 40
REPLY_OK: Final = "ok "
REPLY_ERR: Final = "err "
VERB_HELP: Final = "help"
VERB_VERSION: Final = "version"
VERB_ID: Final = "id"  # alone: the id; with a number 1-65535: sets it until the next reset
VERB_STATUS: Final = "status"
VERB_ADV: Final = "adv"  # with ADV_ON or ADV_OFF
ADV_ON: Final = "on"
ADV_OFF: Final = "off"
# Every command, as `help` lists them.
COMMAND_USAGES: Final = (VERB_HELP, VERB_VERSION, VERB_ID, f"{VERB_ID} <1-65535>", VERB_STATUS,
                         f"{VERB_ADV} {ADV_ON}", f"{VERB_ADV} {ADV_OFF}")
# What `help` answers after REPLY_OK.
HELP_TEXT: Final = "commands: " + ", ".join(COMMAND_USAGES)

_PAYLOAD = struct.Struct("<BHBH")
# Info characteristic: protocol version, firmware major/minor/patch, beacon id (u16), reserved u16.
_INFO = struct.Struct("<BBBBHH")


class ProtocolError(ValueError):
    """Bytes that do not follow the beacon protocol."""


@dataclass(frozen=True, slots=True)
class BeaconPayload:
    beacon_id: int
    counter: int
    uptime_min: int
    version: int = PROTOCOL_VERSION

    def pack(self) -> bytes:
        return _PAYLOAD.pack(
            self.version, self.beacon_id, self.counter & 0xFF, min(self.uptime_min, 0xFFFF)
        )


@dataclass(frozen=True, slots=True)
class BeaconInfo:
    beacon_id: int
    firmware: str  # "major.minor.patch"
    version: int = PROTOCOL_VERSION

    def pack(self) -> bytes:
        major, minor, patch = (int(part) for part in self.firmware.split("."))
        return _INFO.pack(self.version, major, minor, patch, self.beacon_id, 0)


def parse_payload(data: bytes) -> BeaconPayload:
    """Parse the manufacturer payload (the bytes after the company id)."""
    if len(data) != PAYLOAD_LEN:
        msg = f"manufacturer payload is {len(data)} bytes, expected {PAYLOAD_LEN}"
        raise ProtocolError(msg)
    version, beacon_id, counter, uptime = _PAYLOAD.unpack(data)
    if version != PROTOCOL_VERSION:
        msg = f"protocol version {version}, this appliance speaks {PROTOCOL_VERSION}"
        raise ProtocolError(msg)
    return BeaconPayload(beacon_id=beacon_id, counter=counter, uptime_min=uptime, version=version)


def parse_info(data: bytes) -> BeaconInfo:
    """Parse the value of the info characteristic."""
    if len(data) != INFO_LEN:
        msg = f"info characteristic is {len(data)} bytes, expected {INFO_LEN}"
        raise ProtocolError(msg)
    version, major, minor, patch, beacon_id, _reserved = _INFO.unpack(data)
    return BeaconInfo(beacon_id=beacon_id, firmware=f"{major}.{minor}.{patch}", version=version)


def uuid_le_bytes(uuid: str) -> bytes:
    """A UUID as it appears in advertising data: 16 bytes, little-endian."""
    return bytes.fromhex(uuid.replace("-", ""))[::-1]


def advertising_data(payload: BeaconPayload, local_name: str | None = None) -> bytes:
    """The advertising data a beacon sends; the name is added only when it fits in 31 bytes."""
    data = bytes([2, 0x01, 0x06])
    data += bytes([17, 0x07]) + uuid_le_bytes(SERVICE_UUID)
    manufacturer = struct.pack("<H", COMPANY_ID) + payload.pack()
    data += bytes([len(manufacturer) + 1, 0xFF]) + manufacturer
    if local_name:
        name = local_name.encode()
        if len(data) + 2 + len(name) <= LEGACY_ADV_MAX:
            data += bytes([len(name) + 1, 0x09]) + name
    return data


def adv_command(*, on: bool) -> str:
    """The command that starts (``adv on``) or stops (``adv off``) advertising."""
    return f"{VERB_ADV} {ADV_ON if on else ADV_OFF}"


def set_id_command(beacon_id: int) -> str:
    """The command that sets the beacon id until the next reset (``id 7``)."""
    if not 1 <= beacon_id <= 0xFFFF:
        msg = f"beacon id {beacon_id}: a beacon id is 1-65535"
        raise ProtocolError(msg)
    return f"{VERB_ID} {beacon_id}"


def reply_fields(reply: str) -> dict[str, str]:
    """The ``key=value`` words of a reply: ``"ok id=7 adv=on"`` -> ``{"id": "7", "adv": "on"}``."""
    words = reply.removeprefix(REPLY_OK).split()
    return dict(word.split("=", 1) for word in words if "=" in word)


def scan_response_data(local_name: str) -> bytes:
    name = local_name.encode()[: LEGACY_ADV_MAX - 2]
    return bytes([len(name) + 1, 0x09]) + name


# Vectors shared with the firmware's unit tests: (beacon_id, counter, uptime_min) -> payload hex.
PAYLOAD_VECTORS: Final = (
    (1, 0, 0, "010100000000"),
    (42, 7, 90, "012a00075a00"),
    (0xBEEF, 255, 0xFFFF, "01efbeffffff"),
    (65535, 128, 1440, "01ffff80a005"),
)


def c_header() -> str:
    """The C++ header the firmware includes, generated from the constants above."""
    uuid_bytes = ", ".join(f"0x{b:02x}" for b in uuid_le_bytes(SERVICE_UUID))
    vectors = "\n".join(
        f'    {{{beacon_id}u, {counter}u, {uptime}u, "{hex_}"}},'
        for beacon_id, counter, uptime, hex_ in PAYLOAD_VECTORS
    )
    return f"""\
// Generated by `python -m appliance.presence.protocol --header` from
// appliance/presence/protocol.py. Do not edit: change the Python module and regenerate.
#pragma once
#include <stdint.h>

namespace protocol {{

static const char SERVICE_UUID[] = "{SERVICE_UUID}";
static const char INFO_CHAR_UUID[] = "{INFO_CHAR_UUID}";
static const char IDENTIFY_CHAR_UUID[] = "{IDENTIFY_CHAR_UUID}";
static const uint8_t SERVICE_UUID_LE[16] = {{{uuid_bytes}}};
static const uint16_t COMPANY_ID = 0x{COMPANY_ID:04X};
static const uint8_t PROTOCOL_VERSION = {PROTOCOL_VERSION};
static const uint8_t PAYLOAD_LEN = {PAYLOAD_LEN};
static const uint8_t INFO_LEN = {INFO_LEN};
static const uint8_t LEGACY_ADV_MAX = {LEGACY_ADV_MAX};
static const char DEFAULT_LOCAL_NAME[] = "{DEFAULT_LOCAL_NAME}";
static const uint8_t IDENTIFY_MAX_SECONDS = {IDENTIFY_MAX_SECONDS};

// The serial console: one command a line, one reply each ("ok ..." or "err ..."); see protocol.py.
static const uint32_t SERIAL_BAUD = {SERIAL_BAUD}u;
static const uint8_t MAX_COMMAND_LEN = {MAX_COMMAND_LEN};
static const char REPLY_OK[] = "{REPLY_OK}";
static const char REPLY_ERR[] = "{REPLY_ERR}";
static const char VERB_HELP[] = "{VERB_HELP}";
static const char VERB_VERSION[] = "{VERB_VERSION}";
static const char VERB_ID[] = "{VERB_ID}";
static const char VERB_STATUS[] = "{VERB_STATUS}";
static const char VERB_ADV[] = "{VERB_ADV}";
static const char ADV_ON[] = "{ADV_ON}";
static const char ADV_OFF[] = "{ADV_OFF}";
static const char HELP_TEXT[] = "{HELP_TEXT}";

struct PayloadVector {{
    uint16_t beacon_id;
    uint8_t counter;
    uint16_t uptime_min;
    const char* hex;
}};

static const PayloadVector PAYLOAD_VECTORS[] = {{
{vectors}
}};

}}  // namespace protocol
"""


if __name__ == "__main__":
    if sys.argv[1:] != ["--header"]:
        sys.exit("usage: python -m appliance.presence.protocol --header > firmware/beacon/protocol.h")
    sys.stdout.write(c_header())
