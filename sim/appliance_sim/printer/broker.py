"""The stand-in printer's MQTT broker: Debian's mosquitto with a TLS listener on loopback.

The password file is written here (mosquitto's PBKDF2-SHA512 format), so neither the access
code nor any other password is ever a process argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import random
import shutil
import socket
from pathlib import Path
from typing import Final

from appliance.auth.scanners import mosquitto_hash
from appliance_sim.printer.certs import CertFiles

MOSQUITTO: Final = "/usr/sbin/mosquitto"
START_TIMEOUT_S: Final = 10.0


def password_line(user: str, password: str) -> str:
    return f"{user}:{mosquitto_hash(password)}\n"


def free_port() -> int:
    """A loopback port free now, for a stand-in that is stopped and started again on it (a
    printer switched off and on). Below the kernel's ephemeral range: a port in that range can
    be taken while the stand-in is away, by any client's connect() picking it as its own source
    port, and the stand-in could not come back (EADDRINUSE; seen once in CI)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.SystemRandom()
    for _ in range(100):
        port = rng.randrange(max(1024, low - 10_000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    msg = f"no free loopback port below {low} after 100 tries"
    raise RuntimeError(msg)


class StandinBroker:
    """mosquitto for one stand-in printer; ``users`` maps user names to passwords.

    The scanners' tests use it plain (``certs`` None) with the password file, ACL and pid file
    the appliance writes (``password_file``, ``extra``)."""

    def __init__(self, directory: Path, certs: CertFiles | None, users: dict[str, str],
                 port: int | None = None, *, password_file: Path | None = None,
                 extra: str = "") -> None:
        if not Path(MOSQUITTO).exists() and not shutil.which("mosquitto"):
            msg = "mosquitto is missing: sudo apt-get install mosquitto"
            raise RuntimeError(msg)
        self.directory = directory
        self.certs = certs
        self.users = users
        self.port = port or free_port()
        self.log = directory / "mosquitto.log"
        self.password_file = password_file
        self.extra = extra
        self._process: asyncio.subprocess.Process | None = None

    def _write_config(self) -> Path:
        passwd = self.password_file or self.directory / "passwd"
        if self.password_file is None:
            fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.writelines(password_line(user, pw) for user, pw in self.users.items())
        tls = (f"cafile {self.certs.ca}\ncertfile {self.certs.cert}\nkeyfile {self.certs.key}\n"
               if self.certs else "")
        config = self.directory / "mosquitto.conf"
        config.write_text(
            "# The stand-in printer's broker (appliance_sim/printer/broker.py)\n"
            f"user {getpass.getuser()}\n"  # as root, mosquitto would drop to a user that cannot read the key
            "per_listener_settings false\nallow_anonymous false\npersistence false\n"
            f"password_file {passwd}\n"
            f"log_dest file {self.log}\nlog_type error\nlog_type warning\nlog_type notice\n"
            "connection_messages true\n"
            f"{self.extra}listener {self.port} 127.0.0.1\n{tls}")
        return config

    async def start(self) -> None:
        config = self._write_config()
        self._process = await asyncio.create_subprocess_exec(
            shutil.which("mosquitto") or MOSQUITTO, "-c", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                if self._process.returncode is not None:
                    msg = f"mosquitto exited with {self._process.returncode}; see {self.log}"
                    raise RuntimeError(msg)
                with contextlib.suppress(OSError):
                    _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.close()
                    return
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
