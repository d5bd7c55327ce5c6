"""The parsers of single setting values (settings.py puts them together): each takes what TOML
or the environment gave, returns the typed value, or raises ValueError saying what is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

# Radios besides bleak come from the appliance.radios entry points of other packages: the
# simulation registers "virtual" (make setup installs it; the image does not).
RADIO_ENTRY_POINTS: Final = "appliance.radios"
PRINTER_TLS_MODES: Final = ("pin", "insecure")
# Empty = layer when a printer is linked, else interval.
TIMELAPSE_MODES: Final = ("", "layer", "interval")
MQTT_SCHEMES: Final = {"mqtt": 1883, "mqtts": 8883}
# Site, scanner id and area names appear in MQTT topics: no '/', '+', '#' or spaces there.
TOPIC_WORD_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return raw.lower() in ("1", "true", "yes", "on")
    msg = "expected true or false"
    raise ValueError(msg)


def parse_int(low: int, high: int) -> Callable[[object], int]:
    def parse(raw: object) -> int:
        msg = f"expected a whole number from {low} to {high}"
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.strip().removeprefix("-").isdigit():
            value = int(raw)
        else:
            raise ValueError(msg)
        if not low <= value <= high:
            raise ValueError(msg)
        return value

    return parse


def parse_choice(choices: tuple[str, ...], *, upper: bool = False) -> Callable[[object], str]:
    def parse(raw: object) -> str:
        value = str(raw).upper() if upper else str(raw)
        if value not in choices:
            msg = f"expected one of {', '.join(choices)}"
            raise ValueError(msg)
        return value

    return parse


def parse_radio(raw: object) -> str:
    value = parse_str(raw)
    if value == "bleak":
        return value
    if entry_points(group=RADIO_ENTRY_POINTS, name=value):
        return value
    known = ", ".join(["bleak", *sorted(ep.name for ep in entry_points(group=RADIO_ENTRY_POINTS))])
    msg = f"expected one of {known}"
    if value == "virtual":
        msg += " (virtual is the simulation: make setup installs it in a checkout; a Pi has none)"
    raise ValueError(msg)


def parse_str(raw: object) -> str:
    if not isinstance(raw, str):
        msg = "expected a string"
        raise ValueError(msg)
    return raw


def parse_list(raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return tuple(raw)
    msg = "expected a list of strings (comma-separated in the environment)"
    raise ValueError(msg)


def parse_origins(raw: object) -> tuple[str, ...]:
    origins = parse_list(raw)
    for origin in origins:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            msg = "expected origins like https://printer.example.com (scheme and host, no path)"
            raise ValueError(msg)
    return origins


def parse_printer_host(raw: object) -> str:
    value = parse_str(raw).strip()
    if value and not (len(value) <= 253 and all(ch.isascii() and (ch.isalnum() or ch in ".-:_")
                                                for ch in value)):
        msg = "expected the printer's IP address or host name, like 192.168.1.40"
        raise ValueError(msg)
    return value


def parse_printer_serial(raw: object) -> str:
    value = parse_str(raw).strip().upper()
    if value and not (value.isalnum() and 8 <= len(value) <= 32):
        msg = "expected the printer's serial (letters and digits, on its screen: Settings → Device)"
        raise ValueError(msg)
    return value


def parse_printer_tls(raw: object) -> str:
    value = parse_str(raw).strip()
    if value in PRINTER_TLS_MODES:
        return value
    if value.startswith("/") and Path(value).is_file():
        return value
    msg = "expected pin, insecure or the absolute path of an existing CA file"
    raise ValueError(msg)


def parse_timelapse_mode(raw: object) -> str:
    value = parse_str(raw).strip().lower()
    if value not in TIMELAPSE_MODES:
        msg = "expected layer, interval, or empty (layer when a printer is linked, else interval)"
        raise ValueError(msg)
    return value


def parse_mqtt_url(raw: object) -> str:
    value = parse_str(raw).strip()
    if not value:
        return value
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (parts.scheme not in MQTT_SCHEMES or not parts.hostname or port == -1
            or parts.path not in ("", "/") or parts.query or parts.fragment or parts.password):
        msg = ("expected mqtt://host[:port] or mqtts://user@host[:port] (no password: it goes in "
               "mqtt_password_file)")
        raise ValueError(msg)
    return value


def parse_topic_word(raw: object) -> str:
    value = parse_str(raw).strip()
    if not TOPIC_WORD_RE.match(value):
        msg = "expected 1-32 lower-case letters, digits, '_' or '-', starting with a letter or digit"
        raise ValueError(msg)
    return value


def parse_optional_word(raw: object) -> str:
    return parse_topic_word(raw) if parse_str(raw).strip() else ""
