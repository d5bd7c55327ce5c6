"""cloudflared-install and cloudflared-run (ansible/roles/cloudflared/files) on loopback: Cloudflare's
repository unreachable, its key checked against the pin, and the runner installing a missing
cloudflared once a token is there. Cloudflare's repository is played by an HTTPS server on
127.0.0.1 with a certificate made here; apt by a stand-in that records its arguments."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import ipaddress
import os
import shlex
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FILES = Path(__file__).parent.parent / "ansible" / "roles" / "cloudflared" / "files"
KEY = b"stand-in for Cloudflare's repository key\n"
KEY_SHA256 = hashlib.sha256(KEY).hexdigest()
# apt's STAND-IN: records each call; `install` leaves an executable where cloudflared would be.
APT_STANDIN = """#!/bin/sh
echo "$*" >>"{log}"
case "$*" in *install*) printf '#!/bin/sh\\necho stand-in\\n' >"{bin}"; chmod 0755 "{bin}" ;; esac
"""


def _loopback_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (an IP subjectAltName, which curl checks)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Cloudflare's repository on loopback: the key at /cloudflare-main.gpg over HTTPS."""
    cert, key = _loopback_cert(tmp_path_factory.mktemp("tls"))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/cloudflare-main.gpg"
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(KEY) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(KEY)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _setup(tmp_path: Path, key_url: str, key_sha256: str = "") -> Path:
    """The role's settings file, with every path under tmp_path and apt's stand-in."""
    apt = tmp_path / "apt"
    apt.write_text(APT_STANDIN.format(log=tmp_path / "apt.log", bin=tmp_path / "cloudflared"))
    apt.chmod(0o755)
    values = {"key_url": key_url, "key_sha256": key_sha256, "repo_url": "https://127.0.0.1:1/cloudflared",
              "suite": "trixie", "keyring": tmp_path / "cloudflare-main.gpg",
              "sources": tmp_path / "cloudflared.list", "apt": apt}
    conf = tmp_path / "repo.conf"
    conf.write_text("".join(f"{name}={shlex.quote(str(value))}\n" for name, value in values.items()))
    return conf


def _run(argv: list[str], cert: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **({"CURL_CA_BUNDLE": str(cert)} if cert else {}), **env})


def test_unreachable_repository_is_one_line_and_installs_nothing(tmp_path: Path) -> None:
    conf = _setup(tmp_path, f"https://127.0.0.1:{_closed_port()}/cloudflare-main.gpg")
    result = _run([str(FILES / "cloudflared-install"), str(conf)])
    assert result.returncode == 3, result.stderr
    (line,) = result.stdout.splitlines()
    assert "Cloudflare's repository is unreachable" in line and "going on without cloudflared" in line
    assert not (tmp_path / "cloudflare-main.gpg").exists() and not (tmp_path / "apt.log").exists()


def test_plain_http_is_refused(tmp_path: Path) -> None:
    conf = _setup(tmp_path, f"http://127.0.0.1:{_closed_port()}/cloudflare-main.gpg")
    result = _run([str(FILES / "cloudflared-install"), str(conf)])
    assert result.returncode == 3 and "http" in result.stdout
    assert not (tmp_path / "apt.log").exists()


def test_a_key_that_does_not_match_its_pin_is_not_trusted(tmp_path: Path,
                                                          repository: tuple[str, Path]) -> None:
    url, cert = repository
    conf = _setup(tmp_path, f"{url}/cloudflare-main.gpg", key_sha256="0" * 64)
    result = _run([str(FILES / "cloudflared-install"), str(conf)], cert)
    assert result.returncode == 1
    assert f"has sha256 {KEY_SHA256}, not the pinned {'0' * 64}" in result.stderr
    assert not (tmp_path / "cloudflare-main.gpg").exists() and not (tmp_path / "apt.log").exists()


@pytest.mark.parametrize("pinned", [True, False])
def test_the_key_is_printed_trusted_and_cloudflared_installed(tmp_path: Path, repository: tuple[str, Path],
                                                              pinned: bool) -> None:
    url, cert = repository
    conf = _setup(tmp_path, f"{url}/cloudflare-main.gpg", key_sha256=KEY_SHA256 if pinned else "")
    result = _run([str(FILES / "cloudflared-install"), str(conf)], cert)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"has sha256 {KEY_SHA256}" in result.stdout
    assert ("the pinned one" in result.stdout) is pinned
    assert (tmp_path / "cloudflare-main.gpg").read_bytes() == KEY
    keyring = tmp_path / "cloudflare-main.gpg"
    assert (tmp_path / "cloudflared.list").read_text() == (
        f"deb [signed-by={keyring}] https://127.0.0.1:1/cloudflared trixie main\n")
    update, install = (tmp_path / "apt.log").read_text().splitlines()
    # Only Cloudflare's source is refreshed; Debian's lists are left alone.
    assert f"Dir::Etc::sourcelist={tmp_path}/cloudflared.list" in update and update.endswith("update")
    assert install.endswith("install cloudflared")


def test_runner_installs_a_missing_cloudflared_once_a_token_is_there(tmp_path: Path,
                                                                     repository: tuple[str, Path]) -> None:
    url, cert = repository
    token = tmp_path / "token"
    runner = [str(FILES / "cloudflared-run"), str(tmp_path / "cloudflared"), str(token)]
    unreachable = _setup(tmp_path, f"https://127.0.0.1:{_closed_port()}/cloudflare-main.gpg")

    no_token = _run(runner, CLOUDFLARED_REPO_CONF=str(unreachable))
    assert no_token.returncode == 0 and "no tunnel token" in no_token.stdout
    token.write_text("eyJhIjoiYiJ9.standin-token\n")
    # Unreachable: exit 1 (supervisor starts it again) after the wait, here none.
    offline = _run(runner, CLOUDFLARED_REPO_CONF=str(unreachable), CLOUDFLARED_RETRY_S="0")
    assert offline.returncode == 1 and "unreachable" in offline.stdout

    online = _setup(tmp_path, f"{url}/cloudflare-main.gpg", key_sha256=KEY_SHA256)
    result = _run(runner, cert, CLOUDFLARED_REPO_CONF=str(online))
    # apt's stand-in left a cloudflared that does not know the tunnel's arguments: the runner ran it.
    assert "cloudflared: installed" in result.stdout
    assert "stand-in" in result.stdout.splitlines()[-1]
    assert result.returncode == 0


def test_runner_without_the_repository_settings_explains_and_stops(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("eyJhIjoiYiJ9.standin-token\n")
    result = _run([str(FILES / "cloudflared-run"), str(tmp_path / "cloudflared"), str(token)],
                  CLOUDFLARED_REPO_CONF=str(tmp_path / "none.conf"))
    assert result.returncode == 0 and "cloudflared_repo_enabled" in result.stdout
