"""One typed settings object: built-in defaults < TOML file < APPLIANCE_* environment variables.

Every key is flat (``radio = "bleak"`` in the TOML file, ``APPLIANCE_RADIO=bleak`` in the
environment) and validated at start-up; a bad value raises ConfigError naming the key, where it
came from and what is accepted.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from appliance.errors import ConfigError
from appliance.settings_values import (
    TOPIC_WORD_RE,
    parse_bool,
    parse_choice,
    parse_int,
    parse_list,
    parse_mqtt_url,
    parse_optional_word,
    parse_origins,
    parse_printer_host,
    parse_printer_serial,
    parse_printer_tls,
    parse_radio,
    parse_str,
    parse_timelapse_mode,
    parse_topic_word,
)

SYSTEM_CONFIG: Final = Path("/etc/appliance/appliance.toml")
ENV_PREFIX: Final = "APPLIANCE_"
VIRTUAL_BEACON_KINDS: Final = ("python", "sketch")
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
GIB: Final = 1024**3
# appliance: the whole app; scanner: only the radio, forwarding sightings to the broker.
ROLES: Final = ("appliance", "scanner")


@dataclass(frozen=True, slots=True)
class Settings:
    # Where the database, the session secret and other state live.
    data_dir: Path = Path("var")
    # bleak: the real adapter through BlueZ. Production is the default: a simulated radio
    # ("virtual", bumble beacons in this process) only where the simulation is installed and
    # make run, the tests or a rig ask for it.
    radio: str = "bleak"
    adapter: str = "hci0"
    # Passive scanning saves the beacons' batteries but needs bluetoothd --experimental.
    passive_scan: bool = False
    virtual_beacons: int = 3
    # python: bumble beacons in Python; sketch: the firmware built for the host
    # (make -C firmware sim), one process and one serial pty per beacon.
    virtual_beacon_kind: str = "python"
    # The beacon-sim binary for kind "sketch"; empty = the checkout's firmware/build/sim/beacon-sim.
    virtual_beacon_sim: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    # A unix socket path replaces host/port (the image: nginx proxies to it).
    unix_socket: str = ""
    log_level: str = "INFO"
    # A paired beacon missing for this long is away (it advertises every ~100 ms when present).
    away_after_s: int = 30
    # Away for longer than this means someone must press Reconnect (the reference's 30 minutes).
    reconnect_window_s: int = 1800
    # Last-seen/RSSI reach the SD card at most this often per beacon.
    last_seen_write_s: int = 60
    # Unpaired beacons not heard for this long leave the device list.
    forget_after_s: int = 600
    # Peers whose X-Forwarded-For/-Proto headers are believed ("unix" = the unix socket).
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1", "unix")
    # Origins (scheme://host[:port]) browsers may call from, besides the request's own host.
    public_origins: tuple[str, ...] = ()
    login_max_failures: int = 5
    login_failure_window_s: int = 300
    # A login session unused this long ends (the cookie itself lasts 30 days at most).
    session_idle_timeout_s: int = 7 * 24 * 3600
    image_max_bytes: int = 2 * 1024 * 1024
    readings_retention_days: int = 365
    status_retention_days: int = 30
    # Room kept on the card for logins and deletes when it fills up (appliance/store/space.py).
    storage_reserve_mib: int = 8
    # The Cloudflare tunnel, for /status and the dashboard (the app only checks they exist).
    cloudflared_bin: str = "/usr/bin/cloudflared"
    tunnel_token_file: str = "/etc/cloudflared/token"  # noqa: S105 - a path, not a secret
    # What `appliance firstboot` applied and what it could not (shown on the dashboard).
    firstboot_status_file: str = "/var/lib/appliance/firstboot.json"
    # The Bambu Lab printer on the LAN (README, "The printer"); empty host = no printer.
    printer_host: str = ""
    printer_serial: str = ""
    # The LAN access code, in a file only the appliance can read (mode 0600);
    # empty = printer-access-code in data_dir.
    printer_access_code_file: str = ""
    printer_mqtt_port: int = 8883
    printer_camera_port: int = 6000
    # pin: trust the certificate seen first (its SHA-256 is kept in data_dir); insecure: any;
    # or the path of a CA file (Bambu's CA) that must have signed it.
    printer_tls: str = "pin"
    # Timelapse videos (README, "Timelapse videos"): a frame per layer change or per interval.
    timelapse_mode: str = ""
    timelapse_interval_s: int = 10
    timelapse_fps: int = 30
    # Keep a recording's frames after its video is rendered (they take ~10 times its space).
    timelapse_keep_frames: bool = False
    # All recordings together (videos, posters, frames) stay under this: the oldest go first.
    # 4 GiB is a quarter of a 16 GB card: some 200 one-hour prints at 1280x720.
    timelapse_max_bytes: int = 4 * GIB
    # Recording pauses when the data partition has less free than this, so the database (users,
    # pairings, readings) always has room; 1 GiB also leaves the system its updates and logs.
    timelapse_min_free_bytes: int = 1 * GIB
    # MQTT (README, "More rooms, Home Assistant"): the user's broker, e.g.
    # mqtts://appliance@broker.lan:8883; empty with mqtt_embedded = the appliance's own mosquitto;
    # neither = no MQTT at all.
    mqtt_url: str = ""
    # The broker password, in a file only the appliance can read (mode 0600).
    mqtt_password_file: str = ""
    # A CA file for an mqtts:// broker whose certificate the system does not trust (the main
    # appliance's own, for a scanner); empty = the system's CAs.
    mqtt_ca_file: str = ""
    mqtt_embedded: bool = False
    # The embedded mosquitto's loopback listener (its TLS listener for scanners is ansible's).
    mqtt_embedded_port: int = 1883
    mqtt_homeassistant: bool = False
    role: str = "appliance"
    # The topics' root: appliance/<site>/...; one per makerspace sharing a broker.
    site: str = "home"
    # A scanner's id (its MQTT user name, from `appliance scanner add`); empty = the user of mqtt_url.
    scanner_id: str = ""
    # The area the local radio hears (the appliance's own room), shown beside each beacon.
    area: str = "main"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "appliance.db"


_PARSERS: Final[dict[str, Callable[[object], Any]]] = {
    "data_dir": lambda raw: Path(parse_str(raw)).expanduser(),
    "radio": parse_radio,
    "adapter": parse_str,
    "passive_scan": parse_bool,
    "virtual_beacons": parse_int(0, 32),
    "virtual_beacon_kind": parse_choice(VIRTUAL_BEACON_KINDS),
    "virtual_beacon_sim": parse_str,
    "host": parse_str,
    "port": parse_int(1, 65535),
    "unix_socket": parse_str,
    "log_level": parse_choice(LOG_LEVELS, upper=True),
    "away_after_s": parse_int(5, 3600),
    "reconnect_window_s": parse_int(10, 7 * 24 * 3600),
    "last_seen_write_s": parse_int(1, 3600),
    "forget_after_s": parse_int(30, 7 * 24 * 3600),
    "trusted_proxies": parse_list,
    "public_origins": parse_origins,
    "login_max_failures": parse_int(1, 1000),
    "login_failure_window_s": parse_int(1, 24 * 3600),
    "session_idle_timeout_s": parse_int(300, 30 * 24 * 3600),
    "image_max_bytes": parse_int(1024, 64 * 1024 * 1024),
    "readings_retention_days": parse_int(1, 36500),
    "status_retention_days": parse_int(1, 36500),
    "storage_reserve_mib": parse_int(0, 1024),
    "cloudflared_bin": parse_str,
    "tunnel_token_file": parse_str,
    "firstboot_status_file": parse_str,
    "printer_host": parse_printer_host,
    "printer_serial": parse_printer_serial,
    "printer_access_code_file": parse_str,
    "printer_mqtt_port": parse_int(1, 65535),
    "printer_camera_port": parse_int(1, 65535),
    "printer_tls": parse_printer_tls,
    "timelapse_mode": parse_timelapse_mode,
    "timelapse_interval_s": parse_int(1, 24 * 3600),
    "timelapse_fps": parse_int(1, 120),
    "timelapse_keep_frames": parse_bool,
    "timelapse_max_bytes": parse_int(1024**2, 1024 * GIB),
    "timelapse_min_free_bytes": parse_int(1024**2, 1024 * GIB),
    "mqtt_url": parse_mqtt_url,
    "mqtt_password_file": parse_str,
    "mqtt_ca_file": parse_str,
    "mqtt_embedded": parse_bool,
    "mqtt_embedded_port": parse_int(1, 65535),
    "mqtt_homeassistant": parse_bool,
    "role": parse_choice(ROLES),
    "site": parse_topic_word,
    "scanner_id": parse_optional_word,
    "area": parse_topic_word,
}
assert set(_PARSERS) == {f.name for f in dataclasses.fields(Settings)}  # noqa: S101


def _config_path(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        return explicit
    if env.get(f"{ENV_PREFIX}CONFIG"):
        return Path(env[f"{ENV_PREFIX}CONFIG"])
    return SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None


def load_settings(
    config: Path | None = None, env: Mapping[str, str] | None = None, **overrides: object
) -> Settings:
    """Build the settings. ``overrides`` (command-line options) win over everything."""
    env = os.environ if env is None else env
    raw: dict[str, tuple[object, str]] = {}
    path = _config_path(config, env)
    if path is not None:
        try:
            with path.open("rb") as fh:
                table = tomllib.load(fh)
        except FileNotFoundError:
            msg = f"config file {path} does not exist; fix --config or APPLIANCE_CONFIG"
            raise ConfigError(msg) from None
        except tomllib.TOMLDecodeError as exc:
            msg = f"config file {path} is not valid TOML: {exc}"
            raise ConfigError(msg) from None
        for key, value in table.items():
            if key not in _PARSERS:
                msg = f"unknown setting {key!r} in {path}; known: {', '.join(sorted(_PARSERS))}"
                raise ConfigError(msg)
            raw[key] = (value, str(path))
    for key in _PARSERS:
        name = f"{ENV_PREFIX}{key.upper()}"
        if name in env:
            raw[key] = (env[name], name)
    for key, value in overrides.items():
        if value is not None:
            raw[key] = (value, "the command line")
    values: dict[str, Any] = {}
    for key, (value, source) in raw.items():
        try:
            values[key] = _PARSERS[key](value)
        except ValueError as exc:
            msg = f"bad setting {key}={value!r} (from {source}): {exc}"
            raise ConfigError(msg) from None
    settings = Settings(**values)
    if settings.printer_host and not settings.printer_serial:
        msg = ("bad setting printer_host: set printer_serial too (the printer's serial, on its "
               "screen: Settings → Device)")
        raise ConfigError(msg)
    _check_mqtt(settings)
    if settings.away_after_s >= settings.reconnect_window_s:
        msg = (
            f"bad setting away_after_s={settings.away_after_s}: it must be shorter than "
            f"reconnect_window_s={settings.reconnect_window_s}"
        )
        raise ConfigError(msg)
    return settings


def mqtt_user(settings: Settings) -> str:
    """The MQTT user name in mqtt_url ("" when it has none)."""
    return unquote(urlsplit(settings.mqtt_url).username or "")


def scanner_id(settings: Settings) -> str:
    """A scanner's id: scanner_id, else the user name it logs in to the broker with."""
    return settings.scanner_id or mqtt_user(settings)


def _check_mqtt(settings: Settings) -> None:
    if settings.mqtt_password_file:
        path = Path(settings.mqtt_password_file)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            msg = (f"bad setting mqtt_password_file: {path} does not exist; write the broker "
                   f"password there (mode 0600)")
            raise ConfigError(msg) from None
        if mode & 0o077:
            msg = (f"bad setting mqtt_password_file: {path} can be read by other users (mode "
                   f"{mode:o}); run chmod 600 {path}")
            raise ConfigError(msg)
    if settings.mqtt_ca_file and not Path(settings.mqtt_ca_file).is_file():
        msg = f"bad setting mqtt_ca_file: {settings.mqtt_ca_file} is not a file"
        raise ConfigError(msg)
    if settings.role == "scanner":
        if not settings.mqtt_url:
            msg = ("bad setting role=scanner: a scanner needs mqtt_url (the main appliance's "
                   "broker, e.g. mqtts://workshop@appliance.local:8883)")
            raise ConfigError(msg)
        if not TOPIC_WORD_RE.match(scanner_id(settings)):
            msg = ("bad setting role=scanner: set scanner_id, or a user in mqtt_url, to the name "
                   "`appliance scanner add NAME` printed")
            raise ConfigError(msg)
        if not settings.mqtt_password_file:
            msg = ("bad setting role=scanner: set mqtt_password_file to the file holding the "
                   "password `appliance scanner add NAME` printed (mode 0600)")
            raise ConfigError(msg)


__all__ = ["Settings", "load_settings"]
