"""The printer link's errors, and the words /status uses for what went wrong."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Final

from appliance.errors import RequestError
from appliance.files import write_atomic

ACCESS_CODE_MAX: Final = 32  # the camera's auth packet has 32 bytes for it


class PrinterError(RequestError):
    def __init__(self, message: str, *, code: str = "printer_error", status: int = 409) -> None:
        super().__init__(message, code=code, status=status)


class AccessCodeRefused(PrinterError):
    def __init__(self, what: str) -> None:
        super().__init__(f"access code refused by the {what}: copy it again from the printer's "
                         "screen (Settings → LAN Only / WLAN)", code="access_code_refused")


NO_PRINTER: Final = ("no printer is set up: enter its address, serial and LAN access code on the "
                     "Settings page (or printer_host, printer_serial in appliance.toml)")


def read_access_code(path: Path) -> str:
    """The LAN access code from its file, which only the appliance may read (mode 0600)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        msg = (f"no access code: write it to {path} (mode 0600), or enter it on the Settings page")
        raise PrinterError(msg, code="no_access_code") from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        msg = (f"{path} can be read by other users (mode {stat.S_IMODE(info.st_mode):o}): "
               f"run chmod 600 {path}")
        raise PrinterError(msg, code="access_code_file_mode")
    code = path.read_text(encoding="utf-8", errors="replace").strip()
    if not code or len(code.encode()) > ACCESS_CODE_MAX or not code.isprintable():
        msg = f"{path} does not hold an access code (8 characters on the printer's screen)"
        raise PrinterError(msg, code="bad_access_code")
    return code


def write_access_code(path: Path, code: str) -> None:
    write_atomic(path, code + "\n")


def describe_os_error(exc: BaseException, host: str, port: int) -> str:
    """A network failure in words a maker can act on."""
    text = str(exc).lower()
    if isinstance(exc, TimeoutError) or "timed out" in text:
        return f"no answer from {host}:{port}: is the printer on and on this network?"
    if isinstance(exc, ConnectionRefusedError) or "refused" in text:
        return (f"{host}:{port} refused the connection: is LAN mode on "
                "(Settings → LAN Only on the printer)?")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)) or "reset" in text:
        return f"{host}:{port} closed the connection"
    if "name or service not known" in text or "nodename" in text:
        return f"cannot find {host}: check printer_host"
    if "unreachable" in text:
        return f"{host} is unreachable from the appliance's network"
    return f"cannot talk to {host}:{port}: {exc}"
