"""Which printer certificate to trust: ``pin`` (the first one seen), ``insecure`` or a CA file.

Bambu printers present a certificate signed by Bambu's own CA with the serial as its common
name, and are reached by IP address, so ordinary host-name checking does not apply:

- ``pin`` (the default): the SHA-256 of the first certificate seen is kept in the data dir; a
  different one is refused before anything (the access code above all) is sent, and ``/status``
  says so until an admin trusts the new one.
- a CA file path: the chain must verify against it and the common name must be the serial.
- ``insecure``: anything is accepted (a lab bench, never the default).

The check runs inside the TLS handshake (``SSLContext.sslsocket_class``), so paho-mqtt cannot
send its CONNECT with the password to a certificate we refuse.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
from pathlib import Path
from typing import Any, Final

from appliance.errors import ApplianceError
from appliance.files import write_atomic
from appliance.printer.errors import PrinterError

_LOGGER = logging.getLogger(__name__)

PIN_FILE: Final = "printer-cert.sha256"
PIN: Final = "pin"
INSECURE: Final = "insecure"


class CertificateRefused(ApplianceError, ssl.SSLError):
    """The printer's certificate is not the one trusted; ``/status`` names what to do."""


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _common_name(cert: dict[str, Any]) -> str | None:
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class PrinterTrust:
    """One policy for both links. ``problem`` holds the last refusal in words, for /status."""

    def __init__(self, mode: str, data_dir: Path, serial: str) -> None:
        self.mode = mode
        self.serial = serial
        self._pin_path = data_dir / PIN_FILE
        self.problem: str | None = None
        self.offered: str | None = None  # the refused certificate's fingerprint
        # The MQTT link checks inside paho's handshake, in an executor thread, while the camera
        # link checks on the event loop: one at a time reads and writes the pin.
        self._lock = threading.Lock()

    @property
    def pinned(self) -> str | None:
        try:
            return self._pin_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def check(self, der: bytes | None, verified: dict[str, Any] | None = None) -> None:
        """Raise CertificateRefused unless the handshake's certificate is trusted."""
        if self.mode == INSECURE:
            return
        if der is None:
            self._refuse("the printer sent no certificate", None)
        seen = fingerprint(der or b"")
        if self.mode == PIN:
            with self._lock:
                pinned = self.pinned
                if pinned is None:
                    self._pin(seen)
            if pinned is not None and pinned != seen:
                self._refuse(
                    f"certificate changed: the printer now shows {seen[:16]}…, trusted is "
                    f"{pinned[:16]}…; if you replaced the printer or reset it, trust the new "
                    "certificate on the Settings page", seen)
        else:  # a CA file: OpenSSL verified the chain; the name must be the serial
            name = _common_name(verified or {})
            if name != self.serial:
                self._refuse(f"certificate is for {name!r}, not the printer {self.serial!r}: "
                             "check printer_serial", seen)
        self.problem = None
        self.offered = None

    def trust_offered(self, seen: str) -> None:
        """The admin's "trust the new certificate": pin the refused one (if it is still that)."""
        if self.mode != PIN or self.offered is None or seen != self.offered:
            msg = "no refused certificate with that fingerprint; reload the page and try again"
            raise PrinterError(msg, code="nothing_to_trust", status=409)
        with self._lock:
            self._pin(seen)
        self.problem = None
        self.offered = None

    def forget(self, serial: str) -> None:
        """Another printer: trust the certificate it shows first, as for the first one."""
        with self._lock:
            self.serial = serial
            self._pin_path.unlink(missing_ok=True)
            self.problem = self.offered = None

    def _pin(self, seen: str) -> None:
        write_atomic(self._pin_path, seen + "\n")
        _LOGGER.info("Trusting the printer's certificate %s (first seen)", seen)

    def _refuse(self, problem: str, seen: str | None) -> None:
        self.problem = problem
        self.offered = seen
        raise CertificateRefused(problem)

    def context(self) -> ssl.SSLContext:
        """A client context whose sockets check this policy when their handshake completes."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # reached by IP; the name is checked against the serial instead
        if self.mode in (PIN, INSECURE):
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=self.mode)
        trust = self

        class _CheckedSocket(ssl.SSLSocket):
            def do_handshake(self, block: bool = False) -> None:
                super().do_handshake(block)
                trust.check(self.getpeercert(binary_form=True),
                            self.getpeercert() if trust.mode not in (PIN, INSECURE) else None)

        ctx.sslsocket_class = _CheckedSocket
        return ctx
