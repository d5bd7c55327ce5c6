"""First boot: apply `appliance.toml` from the boot partition, once, then remove its secrets.

The file is flat TOML, one `key = value` per line. Every line that is applied becomes a comment;
secrets are blanked and a note says where they went. A bad value stays in the file with an
`# ERROR:` line above it, is reported in the journal and in a status file the dashboard shows,
and everything else is applied anyway: the appliance always boots.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from appliance.auth.policy import PolicyError, check_login_name, check_password
from appliance.errors import ConfigError
from appliance.files import write_atomic
from appliance.settings import Settings, load_settings
from appliance.settings_values import parse_printer_host, parse_printer_serial

KEYS: Final = (
    "hostname", "timezone", "admin_user", "admin_password", "admin_password_hash",
    "wifi_country", "wifi_ssid", "wifi_passphrase", "ssh_authorized_key",
    "cloudflare_tunnel_token", "printer_host", "printer_serial", "printer_access_code",
)
SECRETS: Final = frozenset({"admin_password", "admin_password_hash", "wifi_passphrase",
                            "cloudflare_tunnel_token", "printer_access_code"})
PRINTER_KEYS: Final = ("printer_host", "printer_serial", "printer_access_code")
# The same rules, and messages, as appliance.toml and the Settings page.
PRINTER_CHECKS: Final = {"printer_host": parse_printer_host, "printer_serial": parse_printer_serial}
HOSTNAME_RE: Final = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
SSH_KEY_RE: Final = re.compile(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|"
                               r"sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]{40,}( [^\n]*)?$")
TOKEN_RE: Final = re.compile(r"^[A-Za-z0-9+/=_.-]{20,4096}$")
LINE_RE: Final = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")

_LOGGER = logging.getLogger(__name__)

Runner = Callable[[Sequence[str]], None]


def run_command(argv: Sequence[str]) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=60)  # noqa: S603


@dataclass
class Result:
    applied: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """Where to apply: `/` on the appliance, a temporary tree in tests."""

    root: Path = Path("/")
    appliance_user: str = "appliance"
    app_config: Path = Path("/etc/appliance/appliance.toml")

    def path(self, absolute: str | Path) -> Path:
        return self.root / str(absolute).lstrip("/")

    def settings(self) -> Settings:
        """The app's settings as it will read them (its file under ``root``, or the defaults), so
        first boot writes where the app looks: the tunnel token, the printer's code, the status."""
        config = self.path(self.app_config)
        return load_settings(config, env={}) if config.exists() else Settings()

    @property
    def token_file(self) -> Path:
        return Path(self._paths().tunnel_token_file)

    @property
    def status_file(self) -> Path:
        return Path(self._paths().firstboot_status_file)

    def _paths(self) -> Settings:
        try:
            return self.settings()
        except ConfigError:  # first boot still writes and reports; the app names its bad file
            return Settings()


def validate(values: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Split the file's values into good ones (as strings) and errors, both by key."""
    good: dict[str, str] = {}
    errors: dict[str, str] = {}
    for key, value in values.items():
        if key not in KEYS:
            errors[key] = f"unknown key; the keys are {', '.join(KEYS)}"
            continue
        if not isinstance(value, str):
            errors[key] = "write the value in double quotes"
            continue
        problem = _problem(key, value, values)
        if problem:
            errors[key] = problem
        else:
            good[key] = value
    return good, errors


def _problem(key: str, value: str, values: dict[str, Any]) -> str | None:
    if key == "hostname" and not HOSTNAME_RE.match(value):
        return "a host name is 1-63 lower-case letters, digits or '-', not starting or ending with '-'"
    if key == "admin_user":
        return _policy_problem(check_login_name, value)
    if key == "admin_password" and (problem := _policy_problem(check_password, value)):
        return problem
    if key == "admin_password_hash" and not value.startswith(("scrypt:", "pbkdf2:")):
        return "a password hash comes from werkzeug (scrypt:... or pbkdf2:...)"
    if key in ("admin_password", "admin_password_hash") and not values.get("admin_user"):
        return "set admin_user too"
    if key == "wifi_country" and not re.match(r"^[A-Z]{2}$", value):
        return "the Wi-Fi country is two capital letters, like FI or DE"
    if key == "wifi_ssid" and not 1 <= len(value.encode()) <= 32:
        return "an SSID is 1-32 bytes"
    if key == "wifi_passphrase" and not 8 <= len(value) <= 63:
        return "a WPA passphrase is 8-63 characters"
    if key == "wifi_passphrase" and not values.get("wifi_ssid"):
        return "set wifi_ssid too"
    if key == "ssh_authorized_key" and not SSH_KEY_RE.match(value):
        return "paste one public key line, like 'ssh-ed25519 AAAA... you@laptop'"
    if key == "ssh_authorized_key" and not values.get("admin_user"):
        return "set admin_user too (the key is for that login)"
    if key == "cloudflare_tunnel_token" and not TOKEN_RE.match(value):
        return "paste the tunnel token from the Cloudflare dashboard (one long line)"
    if key in PRINTER_CHECKS:
        try:
            PRINTER_CHECKS[key](value)
        except ValueError as exc:
            return str(exc)
    if key == "printer_access_code" and not (1 <= len(value.encode()) <= 32 and value.isprintable()):
        return "the printer's LAN access code: 8 characters on its screen (Settings → WLAN)"
    if key in PRINTER_KEYS and not all(values.get(k) for k in PRINTER_KEYS):
        return "set printer_host, printer_serial and printer_access_code together"
    if key == "timezone" and (".." in value or not re.match(r"^[A-Za-z0-9_+/-]{1,64}$", value)):
        return "a timezone is like Europe/Helsinki or Etc/UTC"
    return None


def _policy_problem(check: Callable[[str], str], value: str) -> str | None:
    try:
        check(value)
    except PolicyError as exc:
        return str(exc)
    return None


class Applier:
    def __init__(self, target: Target, run: Runner = run_command) -> None:
        self.target = target
        self.run = run

    def hostname(self, name: str) -> None:
        write_atomic(self.target.path("/etc/hostname"), name + "\n", mode=0o644)
        hosts = self.target.path("/etc/hosts")
        lines = hosts.read_text().splitlines() if hosts.exists() else ["127.0.0.1\tlocalhost"]
        lines = [line for line in lines if not line.startswith("127.0.1.1")]
        write_atomic(hosts, "\n".join([*lines, f"127.0.1.1\t{name}"]) + "\n", mode=0o644)
        self.run(["hostname", name])

    def timezone(self, zone: str) -> None:
        zoneinfo = Path("/usr/share/zoneinfo") / zone
        if not self.target.path(zoneinfo).is_file():
            msg = f"no timezone {zone!r} in /usr/share/zoneinfo"
            raise ValueError(msg)
        localtime = self.target.path("/etc/localtime")
        localtime.unlink(missing_ok=True)
        localtime.symlink_to(zoneinfo)
        write_atomic(self.target.path("/etc/timezone"), zone + "\n", mode=0o644)

    def login_user(self, name: str, key: str) -> None:
        passwd = self.target.path("/etc/passwd")
        known = passwd.exists() and any(
            line.split(":", 1)[0] == name for line in passwd.read_text().splitlines())
        if not known:
            self.run(["useradd", "--create-home", "--groups", "sudo", "--shell", "/bin/bash", name])
        ssh_dir = self.target.path(f"/home/{name}/.ssh")
        ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys = ssh_dir / "authorized_keys"
        existing = keys.read_text().splitlines() if keys.exists() else []
        if key not in existing:
            write_atomic(keys, "\n".join([*existing, key]) + "\n", mode=0o600)
        self.run(["chown", "-R", f"{name}:{name}", f"/home/{name}/.ssh"])
        # The account has no password (SSH is key-only), so sudo must not ask for one: as Raspberry
        # Pi OS does for its first user. Without this the admin could never become root.
        write_atomic(self.target.path(f"/etc/sudoers.d/010-appliance-{name}"),
               f"# Written by the appliance's first boot: the admin logs in with an SSH key only.\n"
               f"{name} ALL=(ALL) NOPASSWD: ALL\n", mode=0o440)

    def wifi(self, country: str | None, ssid: str | None, passphrase: str | None) -> None:
        if country:
            write_atomic(self.target.path("/etc/modprobe.d/appliance-wifi.conf"),
                   f"options cfg80211 ieee80211_regdom={country}\n", mode=0o644)
        if ssid:
            security = (f"\n[wifi-security]\nkey-mgmt=wpa-psk\npsk={passphrase}\n"
                        if passphrase else "")
            write_atomic(self.target.path("/etc/NetworkManager/system-connections/appliance-wifi.nmconnection"),
                   f"[connection]\nid=appliance-wifi\ntype=wifi\nautoconnect=true\n\n"
                   f"[wifi]\nmode=infrastructure\nssid={ssid}\n{security}\n"
                   f"[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n", mode=0o600)

    def tunnel_token(self, token: str) -> None:
        write_atomic(self.target.path(self.target.token_file), token + "\n", mode=0o600)

    def printer(self, host: str, serial: str, access_code: str) -> None:
        """Host and serial into the app's settings file, the code into its 0600 file."""
        from appliance.printer.errors import write_access_code
        from appliance.printer.service import access_code_path, address_path

        config = self.target.path(self.target.app_config)
        lines = config.read_text().splitlines() if config.exists() else []
        lines = [line for line in lines
                 if (m := LINE_RE.match(line)) is None or m.group(1) not in PRINTER_KEYS]
        lines += [f"printer_host = {json.dumps(host)}", f"printer_serial = {json.dumps(serial)}"]
        write_atomic(config, "\n".join(lines) + "\n", mode=0o644)
        settings = self.target.settings()
        # An address saved on the Settings page would win over the file: the boot file is newer.
        self.target.path(address_path(settings)).unlink(missing_ok=True)
        code_file = self.target.path(access_code_path(settings))
        write_access_code(code_file, access_code)
        self.run(["chown", f"{self.target.appliance_user}:{self.target.appliance_user}",
                  str(access_code_path(settings))])

    def admin(self, name: str, password: str | None, password_hash: str | None) -> None:
        asyncio.run(self._admin(name, password, password_hash))

    async def _admin(self, name: str, password: str | None, password_hash: str | None) -> None:
        from appliance.auth import accounts
        from appliance.auth.passwords import hash_password
        from appliance.store.db import Database

        settings = self.target.settings()
        data_dir = self.target.path(settings.data_dir) if settings.data_dir.is_absolute() \
            else settings.data_dir
        db = await Database.open(data_dir / "appliance.db")
        try:
            hashed = password_hash or await hash_password(password or "")
            await accounts.put_user(db, name, hashed, now=datetime.now(UTC))
        finally:
            await db.close()
        self.run(["chown", "-R", f"{self.target.appliance_user}:{self.target.appliance_user}",
                  str(settings.data_dir)])


def apply_file(source: Path, target: Target, run: Runner = run_command,
                     now: datetime | None = None) -> Result:
    """Apply the first-boot file; rewrite it; write the status file. Never raises for bad input."""
    now = now or datetime.now(UTC)
    result = Result()
    text = source.read_text(encoding="utf-8", errors="replace")
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        result.errors["file"] = f"{source} is not valid TOML ({exc}); nothing was applied"
        _log(result)
        _status(target, result, now, run)
        return result
    good, result.errors = validate(values)
    applier = Applier(target, run)
    user = good.get("admin_user")
    password, password_hash = good.get("admin_password"), good.get("admin_password_hash")
    # (keys the step applies, whether it runs, the step)
    steps: list[tuple[tuple[str, ...], bool, Callable[[], Any]]] = [
        (("hostname",), "hostname" in good, lambda: applier.hostname(good["hostname"])),
        (("timezone",), "timezone" in good, lambda: applier.timezone(good["timezone"])),
        (("wifi_country", "wifi_ssid", "wifi_passphrase"),
         bool({"wifi_country", "wifi_ssid"} & set(good)),
         lambda: applier.wifi(good.get("wifi_country"), good.get("wifi_ssid"),
                              good.get("wifi_passphrase"))),
        (("admin_user", "ssh_authorized_key"), bool(user) and "ssh_authorized_key" in good,
         lambda: applier.login_user(str(user), good["ssh_authorized_key"])),
        (("cloudflare_tunnel_token",), "cloudflare_tunnel_token" in good,
         lambda: applier.tunnel_token(good["cloudflare_tunnel_token"])),
        (PRINTER_KEYS, all(k in good for k in PRINTER_KEYS),
         lambda: applier.printer(good["printer_host"], good["printer_serial"],
                                 good["printer_access_code"])),
        (("admin_user", "admin_password", "admin_password_hash"),
         bool(user) and bool(password or password_hash),
         lambda: applier.admin(str(user), password, password_hash)),
    ]
    for keys, wanted, step in steps:
        if not wanted:
            continue
        present = [key for key in keys if key in good]
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - one failed step must not stop the others
            for key in present:
                result.errors[key] = f"could not apply: {exc}"
            continue
        result.applied += [key for key in present if key not in result.applied]
    for key in good:  # valid, but needed something else that was missing or wrong
        if key not in result.applied and key not in result.errors:
            result.errors[key] = "not applied: a value it needs is missing or wrong"
    source.write_text(_rewrite(text, result, now, target.token_file), encoding="utf-8")
    _status(target, result, now, run)
    _log(result)
    return result


def _log(result: Result) -> None:
    """One line per outcome on stderr: systemd puts it in the journal."""
    for key in result.applied:
        _LOGGER.info("first boot: applied %s", key)
    for key, message in result.errors.items():
        _LOGGER.error("first boot: %s: %s", key, message)


def _rewrite(text: str, result: Result, now: datetime, token_file: Path) -> str:
    stamp = now.strftime("%Y-%m-%d %H:%M UTC")
    out: list[str] = []
    for line in text.splitlines():
        match = LINE_RE.match(line)
        key = match.group(1) if match else None
        if line.startswith("# ERROR: "):
            continue  # the previous boot's notes; current ones are written below
        if key in result.errors:
            out += [f"# ERROR: {key}: {result.errors[key]}", line]
        elif key in result.applied:
            shown = f'{key} = ""' if key in SECRETS else line.strip()
            out.append(f"# {shown}    # applied {stamp}")
        else:
            out.append(line)
    secrets = [key for key in result.applied if key in SECRETS]
    if secrets:
        out += ["", f"# Applied {stamp}. Secrets were removed from this file: the admin password is "
                "kept hashed in the appliance's database,",
                "# the Wi-Fi passphrase in /etc/NetworkManager/system-connections (root only), the "
                f"tunnel token in {token_file} (root only), the printer's access code in "
                "the appliance's data dir (mode 0600).",
                "# To change a value, write it here again (without the #) and reboot."]
    return "\n".join(out) + "\n"


def _status(target: Target, result: Result, now: datetime, run: Runner) -> None:
    status = {"at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
              "applied": result.applied,
              "errors": [{"key": k, "message": m} for k, m in result.errors.items()]}
    path = target.path(target.status_file)
    write_atomic(path, json.dumps(status, indent=1) + "\n", mode=0o600)
    try:
        run(["chown", f"{target.appliance_user}:{target.appliance_user}", str(target.status_file)])
    except (OSError, subprocess.SubprocessError):
        pass  # the appliance user may not exist on a developer's machine
